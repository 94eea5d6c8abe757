"""What the Stasis application holds per call, and the small rules over it (no I/O).

One :class:`AriCall` per caller channel in our app, from StasisStart until Asterisk and the
media core are both done with it. Its channels and bridge are indexed by id so that any event
(about the caller, our ExternalMedia channel or a transfer target) finds its call.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import trio

from sip.ari.events import Channel, parse_stasis_args
from sip.ari.leg import AriLeg
from sip.ari.reconcile import CALL_BRIDGE_PREFIX, MEDIA_PREFIX, Held


@dataclass(eq=False)
class AriCall:
    call_uuid: str  # the AudioSocket UUID Asterisk sends us first (dashed)
    caller: Channel
    bridge_id: str
    media_id: str
    params: dict[str, str]
    claimed: trio.Event = field(default_factory=trio.Event)  # our AudioSocket connected
    bridged: trio.Event = field(default_factory=trio.Event)  # ...and in the caller's bridge
    media_in_app: trio.Event = field(default_factory=trio.Event)  # our ExternalMedia's StasisStart
    setup_scope: trio.CancelScope | None = None
    call_id: str = ""  # callbridge's call id, once claimed
    leg: AriLeg | None = None
    running: bool = False  # the media core runs the call (claimed, not yet released)
    gone: bool = False  # the caller's channel has left (hangup, Stasis end)
    handed_off: bool = False  # transferred: the caller is someone else's now
    target_id: str = ""  # a transfer target we originated
    conference_bridge: str = ""  # the conference it joined (its caller is there now)
    media_left: bool = False  # our ExternalMedia channel left the bridge (blind transfer)
    target_answered: bool = False
    target_failure: str = ""
    target_done: trio.Event = field(default_factory=trio.Event)  # answered or failed

    @classmethod
    def new(cls, caller: Channel, args: tuple[str, ...], bridge_id: str = "") -> AriCall:
        call_uuid = str(uuid.uuid4())
        return cls(
            call_uuid=call_uuid,
            caller=caller,
            bridge_id=bridge_id or CALL_BRIDGE_PREFIX + call_uuid,
            media_id=MEDIA_PREFIX + call_uuid,
            params=parse_stasis_args(args),
        )

    def media_hears_caller(self) -> bool:
        """The media core runs the call and our ExternalMedia channel is in the caller's bridge
        (so it gets the caller's audio and keys)."""
        return self.running and not self.conference_bridge and not self.media_left

    def held(self) -> Held:
        return Held(self.caller.id, self.media_id, self.bridge_id)


class CallTable:
    """Calls by AudioSocket UUID and by every channel id they own."""

    def __init__(self) -> None:
        self._by_uuid: dict[str, AriCall] = {}
        self._by_channel: dict[str, AriCall] = {}

    def add(self, call: AriCall) -> None:
        self._by_uuid[call.call_uuid] = call
        self._by_channel[call.caller.id] = call
        self._by_channel[call.media_id] = call

    def add_target(self, call: AriCall, target_id: str) -> None:
        call.target_id = target_id
        self._by_channel[target_id] = call

    def forget_target(self, call: AriCall) -> None:
        if self._by_channel.get(call.target_id) is call:
            del self._by_channel[call.target_id]
        call.target_id = ""

    def forget(self, call: AriCall) -> None:
        self._by_uuid.pop(call.call_uuid, None)
        for channel_id in (call.caller.id, call.media_id, call.target_id):
            if self._by_channel.get(channel_id) is call:
                del self._by_channel[channel_id]

    def by_uuid(self, call_uuid: str) -> AriCall | None:
        return self._by_uuid.get(call_uuid)

    def by_channel(self, channel_id: str) -> AriCall | None:
        return self._by_channel.get(channel_id)

    def by_call_id(self, call_id: str) -> AriCall | None:
        return next((c for c in self._by_uuid.values() if c.call_id == call_id), None)

    def held(self) -> list[Held]:
        return [c.held() for c in self._by_uuid.values()]

    def __len__(self) -> int:
        return len(self._by_uuid)
