"""What to do after the events WebSocket (re)connects, sans-I/O: a pure function of what
callbridge holds and what ``GET /channels`` and ``GET /bridges`` say Asterisk holds.

While the socket was down, events were lost: callers may have hung up (their calls must end
here), and after a restart of callbridge, callers may still sit in our Stasis application with
no agent (they must get one again: no call that is still up is lost). Ids tell what is ours:
callbridge names every bridge and helper channel it creates with the prefixes below.
"""

from __future__ import annotations

from dataclasses import dataclass

from sip.ari.events import Bridge, Channel

MEDIA_PREFIX = "cbm-"  # ExternalMedia channels to our AudioSocket listener
TARGET_PREFIX = "cbt-"  # transfer targets we originated
CALL_BRIDGE_PREFIX = "cbb-"  # one mixing bridge per call: caller + media (+ target)
CONFERENCE_BRIDGE_PREFIX = "cbc-"  # one mixing bridge per conference
HELPER_PREFIXES = (MEDIA_PREFIX, TARGET_PREFIX)


@dataclass(frozen=True, slots=True)
class Held:
    """One call callbridge holds (set up or running): its Asterisk channels and bridge."""

    caller_id: str
    media_id: str
    bridge_id: str


@dataclass(frozen=True, slots=True)
class Adopt:
    """A caller in our Stasis app that no call serves: give it an agent again, in its bridge
    when it still has one (``bridge_id``), else in a new one."""

    channel: Channel
    bridge_id: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    gone: tuple[str, ...] = ()  # caller channel ids of held calls that Asterisk no longer has
    adopt: tuple[Adopt, ...] = ()
    hangup: tuple[str, ...] = ()  # our helper channels that no held call owns
    destroy: tuple[str, ...] = ()  # our call bridges left with no caller


def stasis_app_of(channel: Channel) -> str:
    """The Stasis application a channel's dialplan runs, or ""."""
    if channel.app_name.lower() != "stasis":
        return ""
    return channel.app_data.split(",", 1)[0].strip()


def stasis_args_of(channel: Channel) -> tuple[str, ...]:
    """``Stasis(NAME,agent=42)``'s arguments after NAME, as StasisStart would list them."""
    _, _, rest = channel.app_data.partition(",")
    return tuple(a.strip() for a in rest.split(",") if a.strip()) if rest else ()


def plan(app: str, held: list[Held], channels: list[Channel], bridges: list[Bridge]) -> Plan:
    live = {c.id for c in channels}
    owned_channels = {h.caller_id for h in held} | {h.media_id for h in held}
    owned_bridges = {h.bridge_id for h in held}
    gone = tuple(h.caller_id for h in held if h.caller_id not in live)
    bridge_of: dict[str, Bridge] = {}
    for bridge in bridges:
        for channel_id in bridge.channels:
            bridge_of[channel_id] = bridge
    adopt = []
    for channel in channels:
        if channel.id in owned_channels or channel.id.startswith(HELPER_PREFIXES):
            continue
        if stasis_app_of(channel) != app:
            continue
        in_bridge = bridge_of.get(channel.id)
        if in_bridge is None:
            adopt.append(Adopt(channel))
        elif _agent_may_return(in_bridge, owned_bridges):
            adopt.append(Adopt(channel, in_bridge.id))
    hangup = tuple(
        c.id for c in channels if c.id.startswith(MEDIA_PREFIX) and c.id not in owned_channels
    )
    destroy = tuple(
        b.id
        for b in bridges
        if b.id.startswith(CALL_BRIDGE_PREFIX)
        and b.id not in owned_bridges
        and all(c.startswith(HELPER_PREFIXES) for c in b.channels)
    )
    return Plan(gone, tuple(adopt), hangup, destroy)


def _agent_may_return(bridge: Bridge, owned_bridges: set[str]) -> bool:
    """A caller's own call bridge, with no transfer target in it (the agent had handed the
    caller over) and no call of ours serving it; never a conference or someone else's bridge."""
    if not bridge.id.startswith(CALL_BRIDGE_PREFIX) or bridge.id in owned_bridges:
        return False
    return not any(c.startswith(TARGET_PREFIX) for c in bridge.channels)
