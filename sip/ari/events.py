"""ARI events, sans-I/O: one JSON text message of the events WebSocket in, one typed event out.

Shapes follow Asterisk's ``rest-api/api-docs/events.json`` and ``channels.json`` (``Channel``,
``Bridge``, ``LiveRecording``). Only the fields callbridge acts on are kept; every event also
keeps its ``type``. Unknown event types become :class:`Other` (newer Asterisk versions add
events), but a message that is not a JSON object with a ``type`` is an :class:`AriProtocolError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeAlias


class AriProtocolError(ValueError):
    """Asterisk sent something that is not an ARI event or resource as documented."""


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str = ""
    state: str = ""  # Down, Ring, Ringing, Up...
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""  # the dialplan location it was at (the DNIS is ``exten``)
    exten: str = ""
    app_name: str = ""  # the dialplan application it runs: "Stasis" while in an ARI app
    app_data: str = ""  # its arguments: "callbridge,agent=42"
    channelvars: dict[str, str] = field(default_factory=dict)  # ari.conf ``channelvars``


@dataclass(frozen=True, slots=True)
class Bridge:
    id: str
    bridge_type: str = ""
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Recording:
    name: str
    state: str = ""  # queued, recording, paused, done, failed, canceled
    target_uri: str = ""  # bridge:<id> or channel:<id>
    duration_s: int = 0
    cause: str = ""


@dataclass(frozen=True, slots=True)
class StasisStart:
    channel: Channel
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StasisEnd:
    channel: Channel


@dataclass(frozen=True, slots=True)
class ChannelDestroyed:
    channel: Channel
    cause: int = 0  # Q.850 cause code
    cause_txt: str = ""


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest:
    channel: Channel
    cause: int = 0


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived:
    channel: Channel
    digit: str
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChannelEnteredBridge:
    bridge: Bridge
    channel: Channel


@dataclass(frozen=True, slots=True)
class ChannelLeftBridge:
    bridge: Bridge
    channel: Channel


@dataclass(frozen=True, slots=True)
class BridgeDestroyed:
    bridge: Bridge


@dataclass(frozen=True, slots=True)
class RecordingEvent:
    """RecordingStarted, RecordingFinished or RecordingFailed (``type`` tells which)."""

    type: str
    recording: Recording


@dataclass(frozen=True, slots=True)
class Other:
    """An event callbridge does not act on (ChannelVarset, ChannelStateChange, Dial...)."""

    type: str
    channel_id: str = ""


AriEvent: TypeAlias = (
    StasisStart
    | StasisEnd
    | ChannelDestroyed
    | ChannelHangupRequest
    | ChannelDtmfReceived
    | ChannelEnteredBridge
    | ChannelLeftBridge
    | BridgeDestroyed
    | RecordingEvent
    | Other
)


def _obj(raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise AriProtocolError(f"{what}: expected an object, got {type(raw).__name__}")
    return raw


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key, "")
    return value if isinstance(value, str) else str(value)


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sub(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _list(raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    return value if isinstance(value, list) else []


def parse_channel(raw: Any) -> Channel:
    obj = _obj(raw, "channel")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise AriProtocolError("channel without an id")
    caller, dialplan, variables = (
        _sub(obj, "caller"),
        _sub(obj, "dialplan"),
        _sub(obj, "channelvars"),
    )
    return Channel(
        id=obj["id"],
        name=_str(obj, "name"),
        state=_str(obj, "state"),
        caller_number=_str(caller, "number"),
        caller_name=_str(caller, "name"),
        context=_str(dialplan, "context"),
        exten=_str(dialplan, "exten"),
        app_name=_str(dialplan, "app_name"),
        app_data=_str(dialplan, "app_data"),
        channelvars={str(k): str(v) for k, v in variables.items() if v is not None},
    )


def parse_bridge(raw: Any) -> Bridge:
    obj = _obj(raw, "bridge")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise AriProtocolError("bridge without an id")
    channels = _list(obj, "channels")
    return Bridge(
        id=obj["id"],
        bridge_type=_str(obj, "bridge_type"),
        channels=tuple(c for c in channels if isinstance(c, str)),
    )


def parse_recording(raw: Any) -> Recording:
    obj = _obj(raw, "recording")
    if not isinstance(obj.get("name"), str) or not obj["name"]:
        raise AriProtocolError("recording without a name")
    return Recording(
        name=obj["name"],
        state=_str(obj, "state"),
        target_uri=_str(obj, "target_uri"),
        duration_s=_int(obj, "duration"),
        cause=_str(obj, "cause"),
    )


def parse_event(text: str | bytes) -> AriEvent:
    """One events-WebSocket message -> one event; raises :class:`AriProtocolError`."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise AriProtocolError(f"not JSON: {exc}") from None
    obj = _obj(raw, "event")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise AriProtocolError("event without a type")
    return _from_object(kind, obj)


def _from_object(kind: str, obj: dict[str, Any]) -> AriEvent:
    if kind == "StasisStart":
        args = tuple(str(a) for a in _list(obj, "args"))
        return StasisStart(parse_channel(obj.get("channel")), args)
    if kind == "StasisEnd":
        return StasisEnd(parse_channel(obj.get("channel")))
    if kind == "ChannelDestroyed":
        return ChannelDestroyed(
            parse_channel(obj.get("channel")), _int(obj, "cause"), _str(obj, "cause_txt")
        )
    if kind == "ChannelHangupRequest":
        return ChannelHangupRequest(parse_channel(obj.get("channel")), _int(obj, "cause"))
    if kind == "ChannelDtmfReceived":
        return ChannelDtmfReceived(
            parse_channel(obj.get("channel")), _str(obj, "digit"), _int(obj, "duration_ms")
        )
    if kind in ("ChannelEnteredBridge", "ChannelLeftBridge"):
        bridge, channel = parse_bridge(obj.get("bridge")), parse_channel(obj.get("channel"))
        if kind == "ChannelEnteredBridge":
            return ChannelEnteredBridge(bridge, channel)
        return ChannelLeftBridge(bridge, channel)
    if kind == "BridgeDestroyed":
        return BridgeDestroyed(parse_bridge(obj.get("bridge")))
    if kind in ("RecordingStarted", "RecordingFinished", "RecordingFailed"):
        return RecordingEvent(kind, parse_recording(obj.get("recording")))
    return Other(kind, _str(_sub(obj, "channel"), "id"))


def parse_stasis_args(args: tuple[str, ...]) -> dict[str, str]:
    """``Stasis(NAME,agent=42,lang=en)`` arrives as ``("agent=42", "lang=en")``: key=value pairs.
    ``agent`` is spelled ``agent_id`` for the control plane; a bare word is ``arg<N>``."""
    params: dict[str, str] = {}
    for index, arg in enumerate(args):
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep:
            params[f"arg{index}"] = arg
        elif key:
            params["agent_id" if key == "agent" else key] = value.strip()
    return params
