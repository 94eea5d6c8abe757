"""``/v1.0/ws``: authenticated event subscriptions over WebSocket.

Authenticate with the ``Authorization`` header or, where a browser cannot set headers, with a first
message ``{"type": "auth", "authorization": "AccessKey ak_..."}`` within 10 s (4401 otherwise).
Then ``{"type": "subscribe", "topics": ["customer_id:<id>:call:*"]}`` (and ``unsubscribe``).
Events arrive as ``{"type": "event", "topic": ..., "event": {...}}``. The server sends
``{"type": "ping"}`` every 30 s; a client silent for 60 s (any message counts, ``pong`` included)
is closed with 4408. A topic outside the client's customer is refused with an error message; the
connection and its other subscriptions stay. When the client's customer is disabled (on any node),
its sockets get the ``customer_disabled`` event (when subscribed to it) and are closed with 4403
"customer disabled"; its credentials are refused from then on (4401).
"""

from __future__ import annotations

import json
from typing import Any

import trio
from quart import websocket

from control.api import Api, ApiError
from control.auth import Principal, inactive_customer
from control.events import Subscription, TopicError, check_patterns
from proto import safe_json

AUTH_TIMEOUT_S = 10.0
CLOSE_DISABLED = 4403  # the customer was disabled while the socket was open
MAX_MESSAGE_CHARS = 8192
_JSON_ERRORS = {
    "too_large": f"message too large (over {MAX_MESSAGE_CHARS} characters)",
    "too_deep": f"message nests deeper than {safe_json.DEFAULT_MAX_DEPTH} levels",
    "malformed": "malformed JSON",
}


async def _send(obj: dict[str, Any]) -> None:
    await websocket.send(json.dumps(obj, default=str))


async def _authenticate(api: Api) -> Principal | None:
    header = websocket.headers.get("Authorization", "")
    if not header:
        with trio.move_on_after(AUTH_TIMEOUT_S):
            try:
                first = safe_json.loads(await websocket.receive(), max_chars=MAX_MESSAGE_CHARS)
                if isinstance(first, dict) and first.get("type") == "auth":
                    header = str(first.get("authorization", ""))
            except safe_json.JsonInputError:
                pass  # no credentials: refused with 4401 below
    try:
        return await api.principal(header)
    except ApiError as exc:
        await websocket.accept()
        await _send({"type": "error", "message": exc.message})
        await websocket.close(4401, "unauthorized")
        return None


def _handle(sub: Subscription, raw: str | bytes) -> dict[str, Any] | None:
    """Apply one client message; returns a reply, if any."""
    try:
        msg = safe_json.loads(raw, max_chars=MAX_MESSAGE_CHARS)
    except safe_json.JsonInputError as exc:
        return {"type": "error", "message": _JSON_ERRORS[exc.reason]}
    if not isinstance(msg, dict):
        return {"type": "error", "message": "expected a JSON object"}
    kind, topics = msg.get("type"), msg.get("topics", [])
    if kind == "pong":
        return None
    if kind in ("subscribe", "unsubscribe"):
        if not isinstance(topics, list) or len(topics) > 50:
            return {"type": "error", "message": "topics must be a list of up to 50"}
        try:
            check_patterns(sub.customer_id, topics)
        except TopicError as exc:
            return {"type": "error", "message": str(exc)}
        if kind == "subscribe":
            sub.patterns.extend(t for t in topics if t not in sub.patterns)
        else:
            sub.patterns[:] = [t for t in sub.patterns if t not in topics]
        return {"type": f"{kind}d", "topics": list(sub.patterns)}
    return {"type": "error", "message": f"unknown message type {kind!r}"}


def register(api: Api) -> None:
    cfg = api.services.cfg

    @api.app.websocket("/v1.0/ws")
    async def events_ws() -> None:
        principal = await _authenticate(api)
        if principal is None:
            return
        await websocket.accept()
        last_seen = [trio.current_time()]
        with api.services.bus.subscribe(principal.customer_id) as sub:
            # disabled between the credentials' check and the subscription: its event is gone
            if await inactive_customer(api.services.store, principal.customer_id):
                sub.end("customer disabled")
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    while True:
                        raw = await websocket.receive()
                        last_seen[0] = trio.current_time()
                        reply = _handle(sub, raw)
                        if reply is not None:
                            await _send(reply)

                async def writer() -> None:
                    async for event in sub.receive:
                        await _send({"type": "event", "topic": event["topic"], "event": event})
                    await websocket.close(CLOSE_DISABLED, sub.ended)  # the bus ended it
                    nursery.cancel_scope.cancel()

                async def pinger() -> None:
                    while True:
                        await trio.sleep(cfg.ws_ping_s)
                        if trio.current_time() - last_seen[0] > cfg.ws_dead_s:
                            await websocket.close(4408, "no pong")
                            nursery.cancel_scope.cancel()
                            return
                        await _send({"type": "ping"})

                nursery.start_soon(reader)
                nursery.start_soon(writer)
                nursery.start_soon(pinger)
