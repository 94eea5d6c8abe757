"""Conferences that Asterisk mixes: one mixing bridge ``cbc-<conference id>`` per conference.

An Asterisk call that joins moves its caller channel from its own call bridge into the
conference bridge (ARI's ``addChannel`` departs the old bridge first, leaving the agent's
ExternalMedia channel alone there); the agent's side ends once its queued audio has played, as
after a blind transfer, so the conference's audio never passes through callbridge. Asterisk's
softmix sends each participant the mix of the others. A member who hangs up is reported to
:attr:`AriConferences.on_left` (the control plane marks its participant left,
:meth:`control.conferences.Conferences.asterisk_member_left`). The bridge goes when its last
caller leaves (or :meth:`AriConferences.end`); a callbridge that restarted finds it still there
(its members talk on) and uses it, and at the end hangs up whom Asterisk lists in it. Calls of
other legs join conferences in the media core's own bridges (control/conferences.py); this
module is the native path for a conference whose calls are all Asterisk's, which the API
chooses with ``mixer: "asterisk"`` at creation (:attr:`control.conferences.Conferences.asterisk`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sip.ari import requests as rq
from sip.ari.client import AriUnavailable
from sip.ari.events import parse_bridge
from sip.ari.reconcile import CONFERENCE_BRIDGE_PREFIX

if TYPE_CHECKING:
    from sip.ari.app import AriApp
    from sip.ari.state import AriCall

log = logging.getLogger(__name__)

MemberLeft = Callable[[str, str], Awaitable[None]]  # (conference id, call id)


class NotAnAsteriskCall(LookupError):
    """The call is not (or no longer) one that callbridge holds through ARI."""


class AriConferences:
    def __init__(self, app: AriApp) -> None:
        self.app = app
        self.members: dict[str, set[str]] = {}  # conference bridge id -> caller channel ids
        self.on_left: MemberLeft | None = None  # told of each member who leaves on its own

    def bridge_id(self, conference_id: str) -> str:
        return CONFERENCE_BRIDGE_PREFIX + conference_id

    async def join(self, call_id: str, conference_id: str) -> str:
        """Move the call's caller into the conference's bridge; returns the bridge id. Raises
        :class:`NotAnAsteriskCall`, or the ARI error when Asterisk refuses."""
        app = self.app
        call = app.calls.by_call_id(call_id)
        if call is None or call.gone or call.handed_off:
            raise NotAnAsteriskCall(f"call {call_id} is not a live Asterisk call")
        bridge_id = self.bridge_id(conference_id)
        if bridge_id not in self.members:
            found = await self._open(bridge_id, conference_id)
            self.members.setdefault(bridge_id, set()).update(found)
        call.handed_off = True  # its StasisEnd or hangup is the conference's business now
        try:
            await app.client.call(rq.add_channels(bridge_id, call.caller.id))
        except BaseException:
            call.handed_off = False
            raise
        self.members[bridge_id].add(call.caller.id)
        call.conference_bridge = bridge_id
        app.event(call, "conference_joined", {"conference_id": conference_id})
        app.end_call(call, f"joined conference {conference_id}")
        return bridge_id

    async def _open(self, bridge_id: str, conference_id: str) -> set[str]:
        """Create the conference's bridge; returns who is in it already: when Asterisk has it
        (callbridge restarted while its members talked on), those channels."""
        app = self.app
        try:
            await app.client.call(rq.create_bridge(bridge_id, f"conference {conference_id}"))
        except rq.AriRequestError as exc:
            if exc.status != 409:  # (409: a bridge with that id exists)
                raise
            return await self._in_bridge(bridge_id)
        if app.cfg.record_dir:
            app.recordings.start(bridge_id, f"conference-{conference_id}")
        return set()

    async def _in_bridge(self, bridge_id: str) -> set[str]:
        """The channels Asterisk has in the bridge (none if it has no such bridge)."""
        try:
            return set(parse_bridge(await self.app.client.call(rq.get_bridge(bridge_id))).channels)
        except rq.AriRequestError as exc:
            if exc.status != 404:
                raise
            return set()

    def left(self, call: AriCall) -> None:
        """A member's channel is gone: :attr:`on_left` is told (through the job queue); the
        last one out takes the bridge with it."""
        bridge_id = call.conference_bridge
        members = self.members.get(bridge_id)
        if members is None or call.caller.id not in members:
            return  # (the conference ended: its end marks everyone left)
        members.discard(call.caller.id)
        on_left, call_id = self.on_left, call.call_id
        if on_left is not None and call_id:
            conference_id = bridge_id.removeprefix(CONFERENCE_BRIDGE_PREFIX)
            self.app.submit("conference member left", lambda: on_left(conference_id, call_id))
        if not members:
            del self.members[bridge_id]
            self.app.request("destroy conference", rq.destroy_bridge(bridge_id))

    async def end(self, conference_id: str) -> None:
        """Hang up every member and destroy the bridge."""
        bridge_id = self.bridge_id(conference_id)
        members = self.members.pop(bridge_id, None)
        if members is None:  # none joined since callbridge started: Asterisk knows who is in it
            try:
                members = await self._in_bridge(bridge_id)
            except (rq.AriRequestError, AriUnavailable) as exc:
                log.warning(
                    "conference members unknown", extra={"id": bridge_id, "error": str(exc)}
                )
                members = set()
        for channel_id in members:
            self.app.request("hangup conference member", rq.hangup(channel_id))
        self.app.request("destroy conference", rq.destroy_bridge(bridge_id))
