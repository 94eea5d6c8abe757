"""ARI REST calls as plain values, sans-I/O: what to send, and what an answer means.

Paths and parameters follow Asterisk's ``rest-api/api-docs`` (``channels.json``,
``bridges.json``, ``recordings.json``). Parameters travel in the query string, as ARI accepts
for every call used here. Ids that callbridge creates (bridges, ExternalMedia and originated
channels) are chosen by us and passed as ``bridgeId``/``channelId``, so that an event about a
channel can never arrive before we know the channel is ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from sip.ari.causes import REASON_CODES
from sip.ari.events import AriProtocolError

# The hangup reasons ARI accepts (``DELETE /channels/{id}?reason=``).
HANGUP_REASONS = tuple(REASON_CODES)


class AriRequestError(Exception):
    """Asterisk answered with an error status; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, request: AriRequest) -> None:
        super().__init__(f"{request.method} {request.path}: {status} {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class AriRequest:
    method: str
    path: str  # below the ARI root, e.g. "/channels/1234.5/answer"
    params: dict[str, str] = field(default_factory=dict)
    binary: bool = False  # the answer is a file, not JSON

    def target(self, root_path: str) -> str:
        """The request target under ``root_path`` (``/ari``), parameters encoded."""
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{root_path.rstrip('/')}{self.path}{query}"


def _seg(value: str) -> str:
    return quote(value, safe="")


def info() -> AriRequest:
    return AriRequest("GET", "/asterisk/info")


def list_channels() -> AriRequest:
    return AriRequest("GET", "/channels")


def list_bridges() -> AriRequest:
    return AriRequest("GET", "/bridges")


def answer(channel_id: str) -> AriRequest:
    return AriRequest("POST", f"/channels/{_seg(channel_id)}/answer")


def ring(channel_id: str) -> AriRequest:
    """Ringing to a caller not yet answered, while its call is set up."""
    return AriRequest("POST", f"/channels/{_seg(channel_id)}/ring")


def hangup(channel_id: str, reason: str = "normal") -> AriRequest:
    if reason not in HANGUP_REASONS:
        raise ValueError(f"hangup reason {reason!r} is not one of {HANGUP_REASONS}")
    return AriRequest("DELETE", f"/channels/{_seg(channel_id)}", {"reason": reason})


def external_media(
    app: str, channel_id: str, host_port: str, call_uuid: str, format_name: str = "slin16"
) -> AriRequest:
    """An AudioSocket ExternalMedia channel: Asterisk connects to ``host_port`` and sends
    ``call_uuid`` (dashed; Asterisk answers 500 to anything else) as the first frame."""
    return AriRequest(
        "POST",
        "/channels/externalMedia",
        {
            "app": app,
            "channelId": channel_id,
            "external_host": host_port,
            "format": format_name,
            "encapsulation": "audiosocket",
            "transport": "tcp",
            "data": call_uuid,
        },
    )


def external_media_websocket(
    app: str, channel_id: str, connection_id: str, format_name: str = "slin16"
) -> AriRequest:
    """A chan_websocket ExternalMedia channel: Asterisk dials the ``websocket_client.conf``
    connection ``connection_id``; its MEDIA_START names ``channel_id`` (the channel's unique
    id), which is how the call is known to be ours."""
    return AriRequest(
        "POST",
        "/channels/externalMedia",
        {
            "app": app,
            "channelId": channel_id,
            "external_host": connection_id,
            "format": format_name,
            "encapsulation": "none",
            "transport": "websocket",
            "connection_type": "client",
        },
    )


def create_bridge(bridge_id: str, name: str = "") -> AriRequest:
    params = {"type": "mixing"}
    if name:
        params["name"] = name
    return AriRequest("POST", f"/bridges/{_seg(bridge_id)}", params)


def get_bridge(bridge_id: str) -> AriRequest:
    return AriRequest("GET", f"/bridges/{_seg(bridge_id)}")


def destroy_bridge(bridge_id: str) -> AriRequest:
    return AriRequest("DELETE", f"/bridges/{_seg(bridge_id)}")


def add_channels(bridge_id: str, *channel_ids: str) -> AriRequest:
    return AriRequest(
        "POST", f"/bridges/{_seg(bridge_id)}/addChannel", {"channel": ",".join(channel_ids)}
    )


def remove_channel(bridge_id: str, channel_id: str) -> AriRequest:
    return AriRequest("POST", f"/bridges/{_seg(bridge_id)}/removeChannel", {"channel": channel_id})


def continue_in_dialplan(channel_id: str, context: str, extension: str) -> AriRequest:
    return AriRequest(
        "POST",
        f"/channels/{_seg(channel_id)}/continue",
        {"context": context, "extension": extension, "priority": "1"},
    )


def originate(
    endpoint: str,
    app: str,
    channel_id: str,
    app_args: str = "",
    caller_id: str = "",
    timeout_s: int = 30,
) -> AriRequest:
    """Dial ``endpoint``; the channel enters ``app`` once it answers."""
    params = {"endpoint": endpoint, "app": app, "channelId": channel_id, "timeout": str(timeout_s)}
    if app_args:
        params["appArgs"] = app_args
    if caller_id:
        params["callerId"] = caller_id
    return AriRequest("POST", "/channels", params)


def send_dtmf(channel_id: str, digits: str) -> AriRequest:
    return AriRequest("POST", f"/channels/{_seg(channel_id)}/dtmf", {"dtmf": digits})


def record_bridge(bridge_id: str, name: str, format_name: str = "wav") -> AriRequest:
    """Asterisk mixes the bridge and writes ``<astspooldir>/recording/<name>.<format>``."""
    return AriRequest(
        "POST",
        f"/bridges/{_seg(bridge_id)}/record",
        {"name": name, "format": format_name, "ifExists": "overwrite", "beep": "false"},
    )


def stop_recording(name: str) -> AriRequest:
    return AriRequest("POST", f"/recordings/live/{_seg(name)}/stop")


def stored_recording_file(name: str) -> AriRequest:
    return AriRequest("GET", f"/recordings/stored/{_seg(name)}/file", binary=True)


def delete_stored_recording(name: str) -> AriRequest:
    return AriRequest("DELETE", f"/recordings/stored/{_seg(name)}")


def decode_response(request: AriRequest, status: int, body: bytes) -> Any:
    """The JSON an ARI call answered (None for 204; the bytes of a file), or
    :class:`AriRequestError`; a success whose body is not JSON is an :class:`AriProtocolError`."""
    if 200 <= status < 300:
        if request.binary:
            return body
        if not body:
            return None
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AriProtocolError(f"{request.method} {request.path}: not JSON: {exc}") from None
    message = body.decode("utf-8", "replace")[:200]
    try:
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
            message = decoded["message"]
    except ValueError:
        pass
    raise AriRequestError(status, message, request)
