// Call history: the customer's recent calls, and one call's record on demand.
//
// An ended call shows its summary (GET /v1.0/calls/<id>/summary, written a moment after the
// hang-up): the written summary and how it was made, the transcript, every tool call with its
// arguments and result, the turn-latency figures the summary holds, and the recording. A live
// call shows its transcript so far. The recording is fetched with the page's credential (an
// <audio> element cannot send an Authorization header) and played from a blob.

import { el, shortTime } from "./dom.js";

const $ = (id) => document.getElementById(id);
const SUMMARY_RETRIES = 8; // the summary follows the hang-up by about a second
const SUMMARY_RETRY_MS = 1000;

export class History {
  constructor({ api, authorization, stats }) {
    this.api = api;
    this.authorization = authorization; // () -> the page's Authorization header value
    this.stats = stats; // window.callbridge.history, read by the browser tests
    this.shown = "";
    this.recordingUrl = "";
  }

  async refresh() {
    const listing = await this.api("GET", "/v1.0/calls?page_size=20");
    const body = $("history-body");
    if (!listing.result.length) {
      body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 7 }, "No calls yet.")));
      return;
    }
    body.replaceChildren(...listing.result.map((row) => this.row(row)));
    this.stats.rows = listing.result.map((row) => row.id);
  }

  row(call) {
    const open = el("button", { className: "btn small" }, "Details");
    open.onclick = () => this.show(call.id);
    const tr = el("tr", { dataset: { callId: call.id } },
      el("td", {}, el("span", { className: `leg-badge ${call.leg}` }, call.leg.replace("_", " "))),
      el("td", {}, call.source || "–"),
      el("td", {}, call.destination || "–"),
      el("td", { className: `status ${call.status}` }, call.status),
      el("td", {}, shortTime(call.tm_create)),
      el("td", {}, call.status === "hangup" ? `${(call.duration_ms / 1000).toFixed(1)} s` : "live"),
      el("td", {}, open));
    if (call.id === this.shown) tr.className = "mine";
    return tr;
  }

  async show(callId) {
    this.shown = callId;
    this.stats.shown = callId;
    this.stats.summary = null;
    const panel = $("history-detail");
    panel.hidden = false;
    panel.replaceChildren(el("p", { className: "muted" }, "Loading…"));
    for (const tr of $("history-body").children) tr.classList.toggle("mine", tr.dataset.callId === callId);
    const call = await this.api("GET", `/v1.0/calls/${callId}`);
    if (call.status !== "hangup") return this.showLive(call);
    for (let attempt = 0; attempt < SUMMARY_RETRIES; attempt += 1) {
      try {
        const summary = await this.api("GET", `/v1.0/calls/${callId}/summary`);
        if (this.shown === callId) this.showSummary(summary);
        return;
      } catch (err) {
        if (err.code !== "summary_pending") throw err;
        panel.replaceChildren(el("p", { className: "muted" }, "The call's summary is being written…"));
        await new Promise((done) => setTimeout(done, SUMMARY_RETRY_MS));
      }
    }
    panel.replaceChildren(el("p", { className: "error" }, "No summary was written for this call."));
  }

  async showLive(call) {
    const listing = await this.api("GET", `/v1.0/calls/${call.id}/transcripts?page_size=100`);
    const turns = [...listing.result].reverse(); // newest first from the API
    $("history-detail").replaceChildren(
      el("h3", {}, `Call ${call.id.slice(0, 8)} · live`),
      el("p", { className: "muted" }, "The summary is written when the call ends; this is its transcript so far."),
      transcript(turns));
  }

  showSummary(s) {
    this.stats.summary = s;
    const hangup = s.hangup.by ? `${s.hangup.by}${s.hangup.reason ? ` (${s.hangup.reason})` : ""}` : "–";
    const facts = el("dl", { className: "facts" },
      fact("Agent", s.agent.name || s.agent.id || "–"),
      fact("Leg", s.leg),
      fact("From → to", `${s.source || "–"} → ${s.destination || "–"}`),
      fact("Duration", `${(s.duration_ms / 1000).toFixed(1)} s`),
      fact("Hung up by", hangup),
      fact("Disposition", s.disposition));
    const written = el("div", { className: "written" },
      el("p", {}, s.text),
      el("p", { className: "muted" }, s.note || `Written by the agent's language model (${s.method}).`));
    $("history-detail").replaceChildren(
      el("h3", {}, `Call ${s.call_id.slice(0, 8)}`), facts, written,
      el("h4", {}, "Transcript"), transcript(s.transcript),
      el("h4", {}, "Tool calls"), tools(s.tools),
      el("h4", {}, "Turn latency"), latency(s.latency),
      el("h4", {}, "Recording"), this.recording(s));
  }

  recording(s) {
    if (!s.recording) return el("p", { className: "muted" }, "No recording: `serve --record-dir DIR` records calls.");
    const audio = el("audio", { controls: true, id: "history-audio", preload: "auto" });
    const load = el("button", { className: "btn small" }, "Load recording");
    const status = el("span", { className: "muted" });
    load.onclick = async () => {
      load.disabled = true;
      status.textContent = "loading…";
      try {
        const resp = await fetch(s.recording.url, { headers: { Authorization: this.authorization() } });
        if (!resp.ok) throw new Error(`${resp.status} ${resp.statusText}`);
        const blob = await resp.blob();
        if (this.recordingUrl) URL.revokeObjectURL(this.recordingUrl);
        this.recordingUrl = URL.createObjectURL(blob);
        audio.src = this.recordingUrl;
        audio.onloadedmetadata = () => {
          this.stats.recordingSeconds = audio.duration;
          status.textContent = `${audio.duration.toFixed(1)} s, ${(blob.size / 1024).toFixed(0)} KiB`;
        };
      } catch (err) {
        status.textContent = `could not load it: ${err.message}`;
        load.disabled = false;
      }
    };
    return el("div", { className: "recording" }, load, audio, status);
  }
}

function fact(term, value) {
  return el("div", {}, el("dt", {}, term), el("dd", {}, String(value)));
}

function transcript(turns) {
  if (!turns.length) return el("p", { className: "muted" }, "Nobody said anything the agent heard.");
  return el("ol", { className: "bubbles history-transcript" }, ...turns.map((t) =>
    el("li", { className: `bubble ${t.role === "caller" ? "caller" : "agent"}`, dataset: { role: t.role } },
      el("span", { className: "who" }, t.role === "caller" ? "Caller" : "Agent"), t.text)));
}

function tools(calls) {
  if (!calls.length) return el("p", { className: "muted" }, "The agent used no tools.");
  return el("ol", { className: "history-tools" }, ...calls.map((t) =>
    el("li", { className: `tool${t.is_error ? " error" : ""}` },
      el("span", { className: "tag" }, t.is_error ? "failed" : "ok"),
      el("b", {}, t.name),
      el("code", {}, JSON.stringify(t.arguments)),
      el("span", { className: "arrow" }, "→"),
      el("code", {}, JSON.stringify(t.result)))));
}

function latency(figures) {
  if (!figures || !Object.keys(figures).length) {
    return el("p", { className: "muted" }, "No turn-latency figures were recorded for this call.");
  }
  // Figures named *_ms are milliseconds; anything else (a count, what they measure) as it is.
  const shown = (k, v) => (k.endsWith("_ms") && typeof v === "number" ? `${Math.round(v)} ms` : String(v));
  return el("dl", { className: "facts latency" },
    ...Object.entries(figures).map(([k, v]) => fact(k.replace(/_ms$/, "").replace(/_/g, " "), shown(k, v))));
}
