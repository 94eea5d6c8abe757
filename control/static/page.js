// The page: sign-in, the call button, the live transcript (events socket), the calls list, the
// call history (history.js) and the live conference view (conferences.js).
//
// Credentials: `callbridge serve` logs a page link whose fragment holds a page token (a JWT of the
// default customer, role agent_user, 12 h). The fragment never reaches the server or its logs;
// the page moves it to sessionStorage (this tab only) and clears the address bar. An access key
// works too. Media sockets get their own short-lived media token (POST /v1.0/media-tokens).

import { Conferences } from "./conferences.js";
import { History } from "./history.js";
import { Talk } from "./talk.js";

const $ = (id) => document.getElementById(id);
const STORE_KEY = "callbridge.authorization";
const stats = {
  state: "idle", callId: "", playedMs: 0, transcripts: [], tools: [], history: {}, conference: {},
};
window.callbridge = stats; // read by the browser test; handy in the console too

let authorization = "";
let customerId = "";
let talk = null;
let callStarted = 0;
const calls = new Map(); // id -> row, live calls only
const CALL_ROW_EVENTS = new Set(["call_created", "call_answered", "call_hungup"]);
let callHistory = null;
let conferences = null;

// ---- credentials -------------------------------------------------------------------------

function credentialFrom(text) {
  const value = text.trim();
  const match = value.match(/#token=([\w.-]+)/);
  if (match) return `Bearer ${match[1]}`;
  if (value.startsWith("ak_")) return `AccessKey ${value}`;
  if (/^[\w-]+\.[\w-]+\.[\w-]+$/.test(value)) return `Bearer ${value}`;
  return "";
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: authorization, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    throw Object.assign(new Error(data.message || resp.statusText), { status: resp.status, code: data.error });
  }
  return data;
}

async function signIn(credential) {
  authorization = credential;
  const minted = await api("POST", "/v1.0/media-tokens"); // proves the credential, names the customer
  customerId = minted.customer_id;
  sessionStorage.setItem(STORE_KEY, credential);
  $("signin").hidden = true;
  $("app").hidden = false;
  $("events-pill").hidden = false;
  $("signout-wrap").hidden = false;
  callHistory = new History({ api, authorization: () => authorization, stats: stats.history });
  conferences = new Conferences({ api, stats: stats.conference });
  $("history-refresh").onclick = () => callHistory.refresh();
  connectEvents();
  loadAgents();
  refreshCalls();
  callHistory.refresh().catch(() => {});
  conferences.refresh().catch(() => {});
  setInterval(refreshCalls, 5000);
  setInterval(tick, 500);
}

function showSignIn(message) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
}

async function loadAgents() {
  // Which agent answers: the call's ?agent_id= (one of this customer's agents).
  const select = $("agent-select");
  const wanted = new URLSearchParams(location.search).get("agent_id") || "";
  try {
    const listing = await api("GET", "/v1.0/agents?page_size=100");
    for (const agent of listing.result) {
      if (agent.is_default) select.options[0].text = `${agent.name} (default)`;
      else select.append(new Option(agent.name, agent.id));
    }
    if ([...select.options].some((o) => o.value === wanted)) select.value = wanted;
  } catch {
    select.disabled = true; // the credential may not read agents: the default agent answers
  }
}

// ---- events --------------------------------------------------------------------------------

function connectEvents() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/v1.0/ws`);
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "auth", authorization }));
    const topics = [`customer_id:${customerId}:call:*`, `customer_id:${customerId}:conference:*`];
    ws.send(JSON.stringify({ type: "subscribe", topics }));
  };
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    else if (msg.type === "subscribed") setPill(true);
    else if (msg.type === "event") onEvent(msg.event);
  };
  ws.onclose = () => {
    setPill(false);
    setTimeout(connectEvents, 3000);
  };
}

function setPill(on) {
  $("events-pill").dataset.state = on ? "on" : "off";
  $("events-label").textContent = on ? "events live" : "events offline";
}

function onEvent(event) {
  const data = event.data || {};
  if (event.type.startsWith("conference_")) {
    conferences.onEvent(event);
    return;
  }
  if (event.type === "call_hungup" || event.type === "call_created") callHistory.refresh().catch(() => {});
  // Only these carry the call's row; call_summary, call_transferred... carry other things.
  if (CALL_ROW_EVENTS.has(event.type)) {
    if (talk && data.leg_ref === talk.channelId) {
      stats.callId = data.id;
      $("fact-call").textContent = data.id.slice(0, 8);
      $("transcript-call").textContent = `call ${data.id.slice(0, 8)} · ${data.leg}`;
    }
    if (data.status === "hangup") calls.delete(data.id);
    else calls.set(data.id, data);
    renderCalls();
    return;
  }
  if (event.resource_id !== stats.callId) return;
  if (event.type === "transcript_created") addBubble(data.role, data.text);
  else if (event.type === "tool_called") addTool(data);
}

// ---- transcript ------------------------------------------------------------------------------

function clearTranscript() {
  $("transcript").replaceChildren();
}

function append(li) {
  const list = $("transcript");
  list.querySelector(".empty")?.remove();
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function addBubble(role, text) {
  stats.transcripts.push({ role, text });
  const li = document.createElement("li");
  li.className = `bubble ${role === "caller" ? "caller" : "agent"}`;
  li.dataset.role = role;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "caller" ? "You" : "Agent";
  li.append(who, document.createTextNode(text));
  append(li);
}

function addTool(data) {
  stats.tools.push(data);
  const li = document.createElement("li");
  li.className = `tool${data.is_error ? " error" : ""}`;
  const name = document.createElement("b");
  name.textContent = data.name;
  const args = document.createElement("span");
  args.textContent = JSON.stringify(data.arguments || {});
  const tag = document.createElement("span");
  tag.className = "tag";
  tag.textContent = data.is_error ? "tool failed" : "tool call";
  li.append(tag, name, args);
  append(li);
}

function addNote(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = text;
  append(li);
}

// ---- calls list --------------------------------------------------------------------------------

async function refreshCalls() {
  try {
    const listing = await api("GET", "/v1.0/calls?page_size=50");
    calls.clear();
    for (const row of listing.result) if (row.status !== "hangup") calls.set(row.id, row);
    renderCalls();
  } catch (err) {
    if (err.status === 401) showSignIn("Your page link has expired: open the one `callbridge serve` printed last.");
  }
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function renderCalls() {
  const body = $("calls-body");
  const rows = [...calls.values()].sort((a, b) => (a.tm_create < b.tm_create ? 1 : -1));
  $("calls-count").textContent = rows.length === 1 ? "1 call" : `${rows.length} calls`;
  if (!rows.length) {
    body.innerHTML = '<tr class="empty"><td colspan="7">No calls right now.</td></tr>';
    return;
  }
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    if (row.id === stats.callId) tr.className = "mine";
    const leg = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = `leg-badge ${row.leg}`;
    badge.textContent = row.leg.replace("_", " ");
    leg.append(badge);
    const status = cell(row.status, `status ${row.status}`);
    const started = cell(new Date(row.tm_create.replace(" ", "T") + "Z").toLocaleTimeString());
    const action = document.createElement("td");
    const hang = document.createElement("button");
    hang.className = "btn small danger";
    hang.textContent = "Hang up";
    hang.onclick = () => api("POST", `/v1.0/calls/${row.id}/hangup`).catch(() => refreshCalls());
    action.append(hang);
    tr.append(leg, cell(row.source || "–"), cell(row.destination || "–"), status, started,
      cell(row.id.slice(0, 8), "id"), action);
    return tr;
  }));
}

// ---- the call button ---------------------------------------------------------------------------

function setCallState(state, detail) {
  stats.state = state;
  const button = $("call-button");
  button.dataset.state = state;
  button.disabled = state === "connecting";
  $("agent-select").disabled = state === "connecting" || state === "live";
  for (const key of $("keypad").children) key.disabled = state !== "live";
  $("call-label").textContent = state === "live" ? "Hang up" : state === "connecting" ? "Connecting…" : "Start a call";
  const status = $("call-status");
  status.textContent = detail;
  status.classList.toggle("error", state === "error");
  if (state === "live" && !callStarted) callStarted = Date.now();
  if (state === "ended" || state === "error") {
    addNote(detail);
    talk = null;
    callStarted = 0;
    button.dataset.state = "idle";
    $("call-label").textContent = "Start a call";
    button.disabled = false;
    levels(0, 0, stats.playedMs);
  }
}

function levels(mic, agent, playedMs) {
  $("meter-mic").style.width = `${Math.min(100, Math.sqrt(mic) * 140)}%`;
  $("meter-agent").style.width = `${Math.min(100, Math.sqrt(agent) * 140)}%`;
  stats.playedMs = playedMs;
  $("fact-played").textContent = `${(playedMs / 1000).toFixed(1)} s`;
}

function tick() {
  if (!callStarted) return;
  const s = Math.floor((Date.now() - callStarted) / 1000);
  $("fact-time").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

async function toggleCall() {
  if (talk) {
    talk.stop();
    return;
  }
  clearTranscript();
  stats.callId = "";
  stats.transcripts = [];
  stats.tools = [];
  $("fact-call").textContent = "–";
  $("fact-time").textContent = "0:00";
  talk = new Talk({ state: setCallState, levels });
  try {
    const minted = await api("POST", "/v1.0/media-tokens");
    await talk.start(minted.token, $("agent-select").value);
  } catch (err) {
    const why = err.name === "NotAllowedError" ? "Microphone access was refused." : `Could not start: ${err.message}`;
    if (talk) talk.finish(0, "");
    setCallState("error", why);
  }
}

// ---- start -------------------------------------------------------------------------------------

async function main() {
  $("call-button").onclick = toggleCall;
  for (const key of $("keypad").children) {
    key.disabled = true;
    key.onclick = () => talk && talk.pressKey(key.textContent);
  }
  $("signout").onclick = (e) => {
    e.preventDefault();
    sessionStorage.removeItem(STORE_KEY);
    location.replace("/");
  };
  $("signin-form").onsubmit = async (e) => {
    e.preventDefault();
    const credential = credentialFrom($("signin-input").value);
    if (!credential) return showSignIn("That is neither a page link nor an access key.");
    try {
      await signIn(credential);
    } catch (err) {
      showSignIn(`Not accepted: ${err.message}`);
    }
  };
  const fromLink = credentialFrom(location.hash);
  if (fromLink) history.replaceState(null, "", location.pathname + location.search);
  const credential = fromLink || sessionStorage.getItem(STORE_KEY) || "";
  if (!credential) return showSignIn("");
  try {
    await signIn(credential);
  } catch (err) {
    sessionStorage.removeItem(STORE_KEY);
    showSignIn(`That link no longer works (${err.message}): open the one \`callbridge serve\` printed last.`);
  }
}

main();
