"""Conferences with audio: one media bridge (:mod:`media.bridge`) per live conference.

Adding a call (REST or the agent's ``join_conference``) moves that call's audio from its agent
into the conference's bridge (:meth:`media.hooks.CallHandle.join_bridge`, the agent link parked);
removing it returns the call to its agent or hangs it up, by the conference's ``on_leave``; ending
the conference does that for everyone. Participant rows carry the state (joined/left, mutes,
volumes, moderator); talking is live state only (an event on each change, not a row write).
With a record directory (``serve --record-dir``) each conference's mix is recorded there as a
mono 16 kHz WAV (:mod:`media.bridge_recording`), served at ``/v1.0/conferences/<id>/recording``.

Bridges tick in this service's nursery. Their events come through a bounded channel to one
writer task, which updates rows and publishes (database first, then the event); a full channel
drops talking events (counted in the log), never a participant's leaving, which is also written
directly by the request that caused it. A call lives on one node: a call another node holds cannot
join here (409 ``call_on_another_node``).

A conference created with ``mixer: "asterisk"`` is mixed by Asterisk instead (``serve --ari``:
:class:`sip.ari.conference.AriConferences`, set as :attr:`Conferences.asterisk`): only Asterisk
calls join it (422 ``not_an_asterisk_call`` for others), each caller's channel moves into one
Asterisk mixing bridge and its agent leaves, so the audio never passes through callbridge.
Mutes, volumes, moderators and removing one participant do not apply there (422); a member who
hangs up has left (:meth:`Conferences.asterisk_member_left`); ending the conference hangs every
member up. Which conferences Asterisk mixes is the row's ``mixer`` (stored: a restarted serve
still knows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from control.conference_end import end_conference_once, public_conference
from control.conference_end import public_participant as public_participant
from control.db.base import now_ts
from control.events import EventBus
from control.store import Store
from media.bridge import Bridge
from media.bridge_core import BridgeEnded, BridgeEvent, BridgeFull, KeyPressed, Left, Talking
from media.bridge_recording import mix_path, record_bridge
from media.hooks import CallHandle, LegCannotDo
from media.registry import CallRegistry

log = logging.getLogger(__name__)

EVENT_QUEUE = 512  # bridge events waiting for the writer; talking events beyond it are dropped


class ConferenceError(Exception):
    """A conference action cannot be done; carries the HTTP status and an error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _joining(conference: dict[str, Any], call_id: str) -> dict[str, Any]:
    """A participant row's first values, whoever mixes the conference."""
    return {
        "customer_id": conference["customer_id"],
        "conference_id": conference["id"],
        "call_id": call_id,
        "status": "joined",
        "tm_leave": None,
    }


class AsteriskMixing(Protocol):
    """Conferences that Asterisk mixes (:class:`sip.ari.conference.AriConferences`)."""

    async def join(self, call_id: str, conference_id: str) -> str:
        """Move the Asterisk call into the conference's bridge; raises when it cannot."""
        ...

    async def end(self, conference_id: str) -> None:
        """Hang up every member and drop the bridge."""
        ...

    # and it tells ``Conferences.asterisk_member_left`` of each member who hangs up


@dataclass(slots=True)
class _Live:
    conference_id: str
    customer_id: str
    bridge: Bridge
    on_leave: str
    max_participants: int
    participants: dict[str, str] = field(default_factory=dict)  # call id -> participant id
    moderators: set[str] = field(default_factory=set)  # call ids


class Conferences:
    def __init__(
        self, store: Store, bus: EventBus, calls: CallRegistry, record_dir: str | None = None
    ) -> None:
        self.store = store
        self.bus = bus
        self.calls = calls
        self.record_dir = record_dir  # set: each conference's mix is recorded there
        self.dropped_events = 0
        self._live: dict[str, _Live] = {}
        self.asterisk: AsteriskMixing | None = None  # serve --ari: mixer "asterisk" conferences
        self._marking: dict[str, trio.Event] = {}  # participant ids being marked left now
        self._nursery: trio.Nursery | None = None
        self._events_send, self._events_recv = trio.open_memory_channel[tuple[str, BridgeEvent]](
            EVENT_QUEUE
        )

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the bridges and the event writer until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._write_events)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                for live in self._live.values():
                    live.bridge.close()

    def talking(self, conference_id: str, call_id: str) -> bool:
        live = self._live.get(conference_id)
        return live is not None and call_id in live.bridge.core.talking

    # ---- participants ---------------------------------------------------------------------

    async def add_call(
        self,
        conference: dict[str, Any],
        call_id: str,
        *,
        handle: CallHandle | None = None,
        mute_send: bool = False,
        mute_hear: bool = False,
        talk_volume_pct: int = 100,
        listen_volume_pct: int = 100,
        moderator: bool = False,
        after_agent_reply: bool = False,
    ) -> dict[str, Any]:
        """Move live call ``call_id`` (``handle``: the agent's own call, for its tool) into
        ``conference``'s bridge; returns the participant. ``after_agent_reply``: the audio
        moves once the agent has answered the tool's result ("putting you in now")."""
        if conference["status"] == "ended":
            raise ConferenceError(409, "conference_ended", "the conference has ended")
        call = await self.store.get("calls", call_id, conference["customer_id"])
        if call is None:  # (another customer's call is not found either)
            raise ConferenceError(404, "not_found", "call not found")
        handle = handle or self.calls.get(call_id)
        if handle is None and call["status"] == "hangup":
            raise ConferenceError(409, "call_not_live", "the call has ended")
        if handle is None:
            raise ConferenceError(409, "call_on_another_node", "the call is held by another node")
        if handle.bridge_id is not None:
            raise ConferenceError(409, "call_in_bridge", f"the call is in {handle.bridge_id}")
        if conference.get("mixer") == "asterisk":
            return await self._add_to_asterisk(conference, handle)
        live = self._live_for(conference)
        if live.max_participants and len(live.participants) >= live.max_participants:
            raise ConferenceError(409, "conference_full", "the conference is full")
        row = await self.store.insert(
            "participants",
            {
                **_joining(conference, call_id),
                "mute_send": int(mute_send),
                "mute_hear": int(mute_hear),
                "talk_volume_pct": talk_volume_pct,
                "listen_volume_pct": listen_volume_pct,
                "moderator": int(moderator),
            },
        )
        try:
            self._join(live, handle, row, after_agent_reply)
        except ConferenceError:
            await self.store.delete("participants", row["id"], live.customer_id)
            raise
        return await self._added(row)

    async def _added(self, row: dict[str, Any]) -> dict[str, Any]:
        await self.bus.publish(
            row["customer_id"],
            "conference_participant_added",
            row["conference_id"],
            public_participant(row),
        )
        return row

    async def _add_to_asterisk(
        self, conference: dict[str, Any], handle: CallHandle
    ) -> dict[str, Any]:
        """The call's caller moves into the conference's Asterisk bridge; its agent leaves."""
        if handle.leg != "asterisk":
            raise ConferenceError(
                422,
                "not_an_asterisk_call",
                f"this conference is mixed by Asterisk: it takes Asterisk calls only, "
                f"not a {handle.leg} call",
            )
        if self.asterisk is None:
            raise ConferenceError(422, "no_asterisk", "no Asterisk to mix it (serve --ari)")
        conference_id, customer_id = conference["id"], conference["customer_id"]
        most = int(conference.get("max_participants") or 0)
        if most and len(await self._joined(conference_id)) >= most:
            raise ConferenceError(409, "conference_full", "the conference is full")
        # (mutes, volumes and moderators do not apply: an Asterisk bridge mixes all alike)
        plain = {"mute_send": 0, "mute_hear": 0, "moderator": 0}
        volumes = {"talk_volume_pct": 100, "listen_volume_pct": 100}
        values = {**_joining(conference, handle.call_id), **plain, **volumes}
        row = await self.store.insert("participants", values)
        try:
            await self.asterisk.join(handle.call_id, conference_id)
        except Exception as exc:  # not (or no longer) Asterisk's, or Asterisk refused
            await self.store.delete("participants", row["id"], customer_id)
            raise ConferenceError(409, "cannot_join", str(exc)) from None
        return await self._added(row)

    async def _joined(self, conference_id: str) -> list[dict[str, Any]]:
        return await self.store.find("participants", conference_id=conference_id, status="joined")

    async def _mixed_by_asterisk(self, conference_id: str) -> bool:
        """From the conference's row (``mixer``, stored): true after a restart too."""
        row = await self.store.get("conferences", conference_id, None)
        return row is not None and row.get("mixer") == "asterisk"

    async def _not_in_asterisk(self, conference_id: str) -> None:
        if await self._mixed_by_asterisk(conference_id):
            raise ConferenceError(
                422,
                "mixed_by_asterisk",
                "an Asterisk-mixed conference has no per-participant controls: its members "
                "leave by hanging up, or all together when the conference ends",
            )

    async def asterisk_member_left(self, conference_id: str, call_id: str) -> None:
        """A member of an Asterisk-mixed conference hung up (:class:`AsteriskMixing`'s
        ``on_left``): its participant has left, as when a call leaves our bridge."""
        for row in await self._joined(conference_id):
            if row["call_id"] != call_id:
                continue
            await self._mark_left(row["id"], row["customer_id"])
            if row["moderator"]:  # (none today: an Asterisk bridge has no moderators)
                await self._conference_over(conference_id, row["customer_id"])

    def _join(
        self, live: _Live, handle: CallHandle, row: dict[str, Any], after_reply: bool
    ) -> None:
        self._apply(live, row)  # (kept for the join, where it waits for the agent's reply)
        try:
            handle.join_bridge(live.bridge, after_reply=after_reply)
        except BridgeFull as exc:  # (the count above raced another request)
            raise ConferenceError(409, "conference_full", str(exc)) from None
        except (LegCannotDo, BridgeEnded) as exc:
            raise ConferenceError(409, "cannot_join", str(exc)) from None
        live.participants[handle.call_id] = row["id"]
        if row["moderator"]:
            live.moderators.add(handle.call_id)

    @staticmethod
    def _apply(live: _Live, row: dict[str, Any]) -> None:
        live.bridge.core.configure(
            row["call_id"],
            bool(row["mute_send"]),
            bool(row["mute_hear"]),
            row["talk_volume_pct"] / 100,
            row["listen_volume_pct"] / 100,
        )

    async def update(self, participant: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Mutes and volumes of a joined participant, in the row and in the bridge at once."""
        if participant["status"] != "joined":
            raise ConferenceError(409, "participant_left", "the participant has left")
        await self._not_in_asterisk(participant["conference_id"])
        values = {k: int(v) for k, v in changes.items() if v is not None}
        row = await self.store.update(
            "participants", participant["id"], participant["customer_id"], values
        )
        if row is None:
            raise ConferenceError(404, "not_found", "participant not found")
        live = self._live.get(row["conference_id"])
        if live is not None and row["call_id"] in live.participants:
            self._apply(live, row)
        await self.bus.publish(
            row["customer_id"],
            "conference_participant_updated",
            row["conference_id"],
            public_participant(row, self.talking(row["conference_id"], row["call_id"])),
        )
        return row

    async def remove(self, participant: dict[str, Any], then: str | None = None) -> dict[str, Any]:
        """Take the participant out: its call goes back to its agent or is hung up (``then``,
        else the conference's ``on_leave``)."""
        await self._not_in_asterisk(participant["conference_id"])
        live = self._live.get(participant["conference_id"])
        call_id = participant["call_id"]
        if live is not None and call_id in live.participants:
            handle = self.calls.get(call_id)
            if handle is not None and handle.bridge_id == live.bridge.bridge_id:
                handle.leave_bridge("hangup" if (then or live.on_leave) == "hangup" else "agent")
            else:
                live.bridge.leave(call_id)
        return await self._mark_left(participant["id"], participant["customer_id"]) or participant

    async def end(self, conference_id: str) -> None:
        """Everyone leaves (by ``on_leave``); the bridge stops. (Asterisk's: hung up.)"""
        if await self._mixed_by_asterisk(conference_id):
            if self.asterisk is not None:
                await self.asterisk.end(conference_id)
            for row in await self._joined(conference_id):
                await self._mark_left(row["id"], row["customer_id"])
        live = self._live.pop(conference_id, None)
        if live is None:
            return
        for call_id, participant_id in list(live.participants.items()):
            handle = self.calls.get(call_id)
            if handle is not None and handle.bridge_id == live.bridge.bridge_id:
                handle.leave_bridge("hangup" if live.on_leave == "hangup" else "agent")
            await self._mark_left(participant_id, live.customer_id)
        live.bridge.close()

    # ---- bridges and their events ---------------------------------------------------------

    def _live_for(self, conference: dict[str, Any]) -> _Live:
        live = self._live.get(conference["id"])
        if live is not None:
            return live
        if self._nursery is None:
            raise ConferenceError(503, "unavailable", "conference bridges are not running")
        conference_id = conference["id"]
        bridge = Bridge(
            conference_id,
            tones=bool(conference.get("tones", 1)),
            max_participants=int(conference.get("max_participants") or 0) or None,
            on_event=lambda event: self._on_event(conference_id, event),
        )
        live = _Live(
            conference_id,
            conference["customer_id"],
            bridge,
            str(conference.get("on_leave") or "agent"),
            int(conference.get("max_participants") or 0),
        )
        self._live[conference_id] = live
        self._nursery.start_soon(bridge.run)
        if self.record_dir:
            path = mix_path(self.record_dir, bridge.bridge_id)
            self._nursery.start_soon(record_bridge, bridge, path)
        return live

    def recording(self, conference_id: str) -> Path | None:
        """The conference's recorded mix, if it has one (streamed: valid while it grows)."""
        path = mix_path(self.record_dir, conference_id) if self.record_dir else None
        return path if path is not None and path.is_file() else None

    def _on_event(self, conference_id: str, event: BridgeEvent) -> None:
        try:
            self._events_send.send_nowait((conference_id, event))
        except trio.WouldBlock:
            self.dropped_events += 1  # a Left is also written by whoever caused it
            log.warning("conference event dropped", extra={"conference_id": conference_id})

    async def _write_events(self) -> None:
        async for conference_id, event in self._events_recv:
            live = self._live.get(conference_id)
            if live is None:
                continue
            try:
                await self._write_event(live, event)
            except Exception:  # a storage outage must not stop later events
                log.exception("conference event not recorded", extra={"id": conference_id})

    async def _write_event(self, live: _Live, event: BridgeEvent) -> None:
        participant_id = live.participants.get(event.participant_id)
        if participant_id is None:
            return
        if isinstance(event, Left):
            del live.participants[event.participant_id]
            await self._mark_left(participant_id, live.customer_id)
            if event.participant_id in live.moderators:
                await self._moderator_left(live)
            return
        data: dict[str, Any] = {"participant_id": participant_id, "call_id": event.participant_id}
        if isinstance(event, Talking):
            data["talking"] = event.talking
            kind = "conference_participant_talking"
        elif isinstance(event, KeyPressed):
            data["digit"] = event.digit
            kind = "conference_participant_dtmf"
        await self.bus.publish(live.customer_id, kind, live.conference_id, data)

    async def _moderator_left(self, live: _Live) -> None:
        await self._conference_over(live.conference_id, live.customer_id)

    async def _conference_over(self, conference_id: str, customer_id: str) -> None:
        """Its moderator left: the conference ends, for everyone."""
        row = await end_conference_once(self.store, conference_id)
        await self.end(conference_id)
        if row is not None:  # else ended already (a survivor reaped it while this node paused)
            await self.bus.publish(
                customer_id, "conference_ended", conference_id, public_conference(row)
            )

    async def _mark_left(self, participant_id: str, customer_id: str) -> dict[str, Any] | None:
        """Record the leaving once (whoever sees it first: the request, or the bridge; the
        other one, while the first is still writing, waits for it and reads the result)."""
        marking = self._marking.get(participant_id)
        if marking is not None:
            await marking.wait()
            return await self.store.get("participants", participant_id, customer_id)
        self._marking[participant_id] = done = trio.Event()
        try:
            row = await self.store.get("participants", participant_id, customer_id)
            if row is None or row["status"] == "left":
                return row
            values = {"status": "left", "tm_leave": now_ts()}
            row = await self.store.update("participants", participant_id, customer_id, values)
            if row is not None:
                await self.bus.publish(
                    customer_id,
                    "conference_participant_removed",
                    row["conference_id"],
                    public_participant(row),
                )
            return row
        finally:
            del self._marking[participant_id]
            done.set()
