// Live conference view: one conference's participants, who is talking, mute and kick.
//
// Participants come from GET /v1.0/conferences/<id>/participants and change with the events the
// page subscribes to (customer_id:<id>:conference:*): added, removed, updated, talking. Mute is
// PATCH mute_send (the others stop hearing them) or mute_hear (they stop hearing the others);
// kick is DELETE, which sends the call back to its agent (or hangs it up: the conference's
// on_leave). Changing a conference needs a customer_manager credential; the page link is an
// agent_user one, so the view says that instead of failing silently.

import { el, shortTime } from "./dom.js";

const $ = (id) => document.getElementById(id);
const REFRESH_EVENTS = new Set([
  "conference_participant_added", "conference_participant_removed",
  "conference_participant_updated", "conference_ended", "conference_created",
]);

export class Conferences {
  constructor({ api, stats }) {
    this.api = api;
    this.stats = stats; // window.callbridge.conference, read by the browser tests
    this.selected = "";
    this.participants = new Map(); // participant id -> row (joined only)
    $("conference-select").onchange = () => this.select($("conference-select").value);
    $("conference-end").onclick = () => this.act("DELETE", `/v1.0/conferences/${this.selected}`);
  }

  async refresh() {
    const listing = await this.api("GET", "/v1.0/conferences?page_size=50");
    const live = listing.result.filter((c) => c.status !== "ended");
    const select = $("conference-select");
    select.replaceChildren(el("option", { value: "" }, live.length ? "choose a conference" : "no live conference"),
      ...live.map((c) => el("option", { value: c.id }, `${c.name} · ${c.id.slice(0, 8)}`)));
    if (!live.some((c) => c.id === this.selected)) this.selected = live.length === 1 ? live[0].id : "";
    select.value = this.selected;
    await this.loadParticipants();
  }

  async select(conferenceId) {
    this.selected = conferenceId;
    await this.loadParticipants();
  }

  async loadParticipants() {
    this.stats.id = this.selected;
    $("conference-end").hidden = !this.selected;
    this.participants.clear();
    if (this.selected) {
      const listing = await this.api("GET", `/v1.0/conferences/${this.selected}/participants?page_size=100`);
      for (const p of listing.result) if (p.status === "joined") this.participants.set(p.id, p);
    }
    this.render();
  }

  onEvent(event) {
    if (event.resource_id !== this.selected && event.type !== "conference_created") return;
    const data = event.data || {};
    if (event.type === "conference_participant_talking") {
      const row = this.participants.get(data.participant_id);
      if (!row) return;
      row.talking = data.talking;
      if (data.talking) this.stats.talkingSeen = true;
      this.render();
    } else if (REFRESH_EVENTS.has(event.type)) {
      this.refresh().catch(() => {});
    }
  }

  async act(method, path, body) {
    $("conference-error").textContent = "";
    try {
      await this.api(method, path, body);
    } catch (err) {
      const why = err.status === 403
        ? "Your sign-in may only watch: changing a conference needs a customer_manager access key."
        : `Not done: ${err.message}`;
      $("conference-error").textContent = why;
      this.stats.error = why;
    }
    await this.refresh();
  }

  render() {
    const rows = [...this.participants.values()];
    this.stats.participants = rows.map((p) => ({
      id: p.id, call_id: p.call_id, talking: !!p.talking, mute_send: p.mute_send, mute_hear: p.mute_hear,
    }));
    $("conference-count").textContent = this.selected ? `${rows.length} in the conference` : "–";
    const body = $("conference-body");
    if (!rows.length) {
      const text = this.selected ? "Nobody is in this conference." : "Pick a live conference to watch it.";
      body.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: 5 }, text)));
      return;
    }
    body.replaceChildren(...rows.map((p) => this.row(p)));
  }

  row(p) {
    const path = `/v1.0/conferences/${this.selected}/participants/${p.id}`;
    const toggle = (field, on, off) => {
      const b = el("button", { className: `btn small${p[field] ? " on" : ""}` }, p[field] ? on : off);
      b.dataset.action = field;
      b.onclick = () => this.act("PATCH", path, { [field]: !p[field] });
      return b;
    };
    const kick = el("button", { className: "btn small danger", dataset: { action: "kick" } }, "Kick");
    kick.onclick = () => this.act("DELETE", path);
    const talking = el("span", { className: `talking${p.talking ? " on" : ""}`, title: "talking" });
    return el("tr", { dataset: { participantId: p.id, callId: p.call_id } },
      el("td", {}, talking, p.call_id.slice(0, 8), p.moderator ? " · moderator" : ""),
      el("td", {}, shortTime(p.tm_create)),
      el("td", {}, toggle("mute_send", "Unmute", "Mute")),
      el("td", {}, toggle("mute_hear", "Let hear", "Deafen")),
      el("td", {}, kick));
  }
}
