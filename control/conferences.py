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
directly by the request that caused it. A call lives on one node, and a conference's bridge on
one node, its holder (:mod:`control.conference_links`): a call held by another node is added by
that node (a conference command), which links it to the holder's bridge
(:class:`media.bridge_link.RemoteBridge`); mutes, kicks and the end run on the holder
(:meth:`Conferences.execute`), wherever the request came. Without Redis (one node) every bridge
is here, and a call another process holds cannot join (409 ``call_on_another_node``).

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
from typing import Any, Literal, Protocol

import trio

from control.call_commands import CallCommands, Holder, HolderUnavailable, Reply
from control.conference_end import end_conference_once, public_conference, update_if
from control.conference_end import public_participant as public_participant
from control.conference_links import (
    LINK_CONNECT_S,
    LINK_PATH,
    Tickets,
    claim_holder,
    holder_of,
)
from control.db.base import now_ts
from control.events import EventBus
from control.store import Store
from media.bridge import Bridge
from media.bridge_core import BridgeEnded, BridgeEvent, BridgeFull, KeyPressed, Left, Talking
from media.bridge_link import (
    ClientFrames,
    LinkClosed,
    LinkedParticipant,
    MessageFrames,
    RemoteBridge,
)
from media.bridge_recording import mix_path, record_bridge
from media.hooks import CallHandle, LegCannotDo
from media.message_socket import MessageSocket
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
    links: dict[str, LinkedParticipant] = field(default_factory=dict)  # calls on other nodes


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
        # Across nodes (control/conference_links.py): set by the control plane with Redis
        self.me = Holder("")
        self.commands: CallCommands | None = None  # conference commands between holders
        self.link_base = ""  # ws://host:port other nodes open this node's links at
        self.tickets = Tickets()

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
        settings = {
            "mute_send": mute_send,
            "mute_hear": mute_hear,
            "talk_volume_pct": talk_volume_pct,
            "listen_volume_pct": listen_volume_pct,
            "moderator": moderator,
        }
        handle = handle or self.calls.get(call_id)
        if handle is None and call["status"] == "hangup":
            raise ConferenceError(409, "call_not_live", "the call has ended")
        if handle is None:  # the call's own node moves its audio
            return await self._add_on_call_holder(conference, call, settings)
        if handle.bridge_id is not None:
            raise ConferenceError(409, "call_in_bridge", f"the call is in {handle.bridge_id}")
        if conference.get("mixer") == "asterisk":
            return await self._add_to_asterisk(conference, handle)
        holder = await self._holder_for_join(conference)
        live = self._live_for(conference) if holder is None else None
        if live is not None and 0 < live.max_participants <= len(live.participants):
            raise ConferenceError(409, "conference_full", "the conference is full")
        values = {k: int(v) for k, v in settings.items()}
        row = await self.store.insert("participants", {**_joining(conference, call_id), **values})
        try:
            if live is not None:
                self._join(live, handle, row, after_agent_reply)
            else:
                assert holder is not None
                await self._join_remote(conference, holder, handle, row, after_agent_reply)
        except ConferenceError:
            await self.store.delete("participants", row["id"], conference["customer_id"])
            raise
        return await self._added(row)

    async def _holder_for_join(self, conference: dict[str, Any]) -> Holder | None:
        """Another node holding the conference's bridge; None: this one (it may just have
        claimed it: the first join's node holds it)."""
        if self.commands is None:  # one node (no Redis): every bridge is here
            return None
        holder = await claim_holder(self.store, conference, self.me)
        return None if holder == self.me else holder

    async def _add_on_call_holder(
        self, conference: dict[str, Any], call: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        """The call lives on another node: that node moves its audio (a conference command)."""
        holder = holder_of(call)
        if self.commands is None or holder is None:
            raise ConferenceError(409, "call_on_another_node", "the call is held by another node")
        if holder == self.me:  # the row says here, but the call is no longer live here
            raise ConferenceError(409, "call_not_live", "the call has ended")
        args = {"conference_id": conference["id"], **settings}
        return (await self._ask(holder, call["id"], "add", args)).body

    async def _join_remote(
        self,
        conference: dict[str, Any],
        holder: Holder,
        handle: CallHandle,
        row: dict[str, Any],
        after_reply: bool,
    ) -> None:
        """Into the bridge another node holds: it admits the call, the call's audio goes over
        a link to it (:class:`media.bridge_link.RemoteBridge`)."""
        assert self._nursery is not None
        conference_id = conference["id"]
        args = {"call_id": handle.call_id, "participant_id": row["id"]}
        url = str((await self._ask(holder, conference_id, "admit", args)).body["url"])
        try:
            frames = await ClientFrames.connect(url, LINK_CONNECT_S)
        except LinkClosed as exc:
            raise ConferenceError(503, "conference_unreachable", str(exc)) from None
        remote = RemoteBridge(
            conference_id,
            frames,
            str(conference.get("on_leave") or "agent"),
            on_gone=lambda then: handle.leave_bridge("hangup" if then == "hangup" else "agent"),
            on_event=lambda event: self._remote_event(remote, row, event),
        )
        await self._nursery.start(self._carry, remote)
        with trio.move_on_after(LINK_CONNECT_S):  # (a refusal settles it at once: no 3 s wait)
            await remote.settled.wait()
        if not remote.linked.is_set() or remote.lost:  # (e.g. the ticket expired)
            remote.close()
            raise ConferenceError(
                503, "conference_unreachable", "the node holding the conference refused the link"
            )
        try:
            handle.join_bridge(remote, after_reply=after_reply)
        except (LegCannotDo, BridgeEnded, BridgeFull) as exc:
            remote.close()
            raise ConferenceError(409, "cannot_join", str(exc)) from None

    @staticmethod
    async def _carry(
        remote: RemoteBridge, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """One call's link, in this service's nursery: a failure ends that link only."""
        try:
            await remote.run(task_status)
        except Exception:
            log.exception("conference link failed", extra={"id": remote.bridge_id})

    def _remote_event(self, remote: RemoteBridge, row: dict[str, Any], event: BridgeEvent) -> None:
        if isinstance(event, Left) and self._nursery is not None:
            self._nursery.start_soon(self._remote_left, remote, row)

    async def _remote_left(self, remote: RemoteBridge, row: dict[str, Any]) -> None:
        """A call here left a bridge on another node. Its holder marks the seat too (whoever
        is first); a holder that is gone cannot, nor end the conference its loss emptied."""
        await self._mark_left(row["id"], row["customer_id"])
        conference_id = row["conference_id"]
        if remote.lost and not await self._joined(conference_id):
            ended = await end_conference_once(self.store, conference_id)
            if ended is not None:
                await self.bus.publish(
                    row["customer_id"], "conference_ended", conference_id, public_conference(ended)
                )

    async def _ask(self, holder: Holder, target_id: str, op: str, args: dict[str, Any]) -> Reply:
        assert self.commands is not None
        try:
            reply = await self.commands.run(holder, target_id, op, args)
        except HolderUnavailable as exc:
            raise ConferenceError(503, "holder_unavailable", str(exc)) from None
        if reply.status != 200:
            body = reply.body
            raise ConferenceError(reply.status, str(body.get("code")), str(body.get("message")))
        return reply

    async def _on_holder(self, conference_id: str, op: str, args: dict[str, Any]) -> None:
        """Run ``op`` where the conference's bridge is: here, or on its holder."""
        row = await self.store.get("conferences", conference_id, None)
        holder = holder_of(row) if row is not None else None
        if holder is None or holder == self.me or self.commands is None:
            await self._run_op(conference_id, op, args)
        else:
            await self._ask(holder, conference_id, op, args)

    # ---- conference commands: what another node asks of this one --------------------------

    async def execute(self, target_id: str, op: str, args: dict[str, Any]) -> Reply:
        """A conference command (:class:`control.call_commands.CallCommands`' executor)."""
        try:
            return Reply(200, await self._run_op(target_id, op, args))
        except ConferenceError as exc:
            return Reply(exc.status, {"code": exc.code, "message": str(exc)})
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"code": "invalid_request", "message": f"bad arguments: {exc}"})

    async def _run_op(self, target_id: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if op == "add":  # target: a call of this node
            conference = await self.store.get("conferences", str(args["conference_id"]), None)
            if conference is None:
                raise ConferenceError(404, "not_found", "conference not found")
            return await self.add_call(
                conference,
                target_id,
                mute_send=bool(args["mute_send"]),
                mute_hear=bool(args["mute_hear"]),
                talk_volume_pct=int(args["talk_volume_pct"]),
                listen_volume_pct=int(args["listen_volume_pct"]),
                moderator=bool(args["moderator"]),
            )
        if op == "admit":  # target: a conference this node holds
            return await self.admit(target_id, str(args["call_id"]), str(args["participant_id"]))
        if op == "take_out":
            self._take_out(target_id, str(args["call_id"]), args.get("then"))
        elif op == "apply":
            await self._apply_stored(target_id, str(args["participant_id"]))
        elif op == "end":
            await self._end_here(target_id)
        else:
            raise ConferenceError(400, "invalid_request", f"no conference command {op!r}")
        return {}

    async def admit(self, conference_id: str, call_id: str, participant_id: str) -> dict[str, Any]:
        """A call of another node joins this node's bridge: a one-use ticket for its link."""
        conference = await self.store.get("conferences", conference_id, None)
        participant = await self.store.get("participants", participant_id, None)
        if conference is None or participant is None:
            raise ConferenceError(404, "not_found", "conference not found")
        if conference["status"] == "ended":
            raise ConferenceError(409, "conference_ended", "the conference has ended")
        live = self._live_for(conference)
        taken = len(live.participants) + self.tickets.pending(conference_id)
        if live.max_participants and taken >= live.max_participants:
            raise ConferenceError(409, "conference_full", "the conference is full")
        self._apply(live, participant)
        moderator = bool(participant["moderator"])
        ticket = self.tickets.mint(conference_id, call_id, participant_id, moderator)
        return {"url": f"{self.link_base}{LINK_PATH}?ticket={ticket}"}

    async def serve_link(self, ticket: str, socket: MessageSocket) -> None:
        """The link of an admitted call: it is a participant for as long as the link lasts."""
        grant = self.tickets.claim(ticket)
        live = self._live.get(grant.conference_id) if grant is not None else None
        if grant is None or live is None:
            await socket.close(4401, "unauthorized: no such conference link")
            return
        call_id = grant.call_id
        live.participants[call_id] = grant.participant_id
        if grant.moderator:
            live.moderators.add(call_id)
        linked = live.links[call_id] = LinkedParticipant(
            live.bridge, call_id, MessageFrames(socket)
        )
        try:
            await linked.serve()
        except (BridgeFull, BridgeEnded):  # its node sees the link close: the call leaves
            live.participants.pop(call_id, None)
        finally:
            if live.links.get(call_id) is linked:
                del live.links[call_id]

    async def _apply_stored(self, conference_id: str, participant_id: str) -> None:
        live = self._live.get(conference_id)
        row = await self.store.get("participants", participant_id, None)
        if live is not None and row is not None and row["call_id"] in live.participants:
            self._apply(live, row)

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
        await self._on_holder(row["conference_id"], "apply", {"participant_id": row["id"]})
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
        args = {"call_id": participant["call_id"], "then": then}
        await self._on_holder(participant["conference_id"], "take_out", args)
        return await self._mark_left(participant["id"], participant["customer_id"]) or participant

    def _take_out(self, conference_id: str, call_id: str, then: str | None) -> None:
        """The bridge's part of a removal, on its holder: the call goes back to its agent or
        hangs up, wherever it lives."""
        live = self._live.get(conference_id)
        if live is None or call_id not in live.participants:
            return
        if not self._move_out(live, call_id, then or live.on_leave):
            live.bridge.leave(call_id)

    def _move_out(self, live: _Live, call_id: str, then: str) -> bool:
        """The call leaves for its agent or hangs up (``then``); False: no call to move."""
        go: Literal["agent", "hangup"] = "hangup" if then == "hangup" else "agent"
        linked = live.links.get(call_id)
        handle = self.calls.get(call_id)
        if linked is not None:  # its node moves it, told over the link
            linked.take_out(go)
        elif handle is not None and handle.bridge_id == live.bridge.bridge_id:
            handle.leave_bridge(go)
        else:
            return False
        return True

    async def end(self, conference_id: str) -> None:
        """Everyone leaves (by ``on_leave``); the bridge stops, on whichever node holds it.
        (Asterisk's: hung up.)"""
        if await self._mixed_by_asterisk(conference_id):
            if self.asterisk is not None:
                await self.asterisk.end(conference_id)
            for row in await self._joined(conference_id):
                await self._mark_left(row["id"], row["customer_id"])
        try:
            await self._on_holder(conference_id, "end", {})
        except ConferenceError as exc:  # its holder is gone, and its bridge went with it
            log.warning("conference end not carried", extra={"id": conference_id, "why": str(exc)})

    async def _end_here(self, conference_id: str) -> None:
        live = self._live.pop(conference_id, None)
        if live is None:
            return
        for call_id, participant_id in list(live.participants.items()):
            self._move_out(live, call_id, live.on_leave)
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
            # (conditional: the holder of a bridge and the node of a call in it may both see it)
            row = await update_if(
                self.store, "participants", participant_id, values, "status = ?", "joined"
            )
            if row is None:
                return await self.store.get("participants", participant_id, customer_id)
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
