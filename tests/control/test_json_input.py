"""Deeply nested JSON at the control plane's edges: a 400, an error message or 4401, never a 500
or a traceback (issue 11 item 3). Depth 100 is accepted by ``json.loads`` itself; 30 000 levels
made it raise RecursionError, which escaped as a 500 and as a WebSocket close 1000."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio_websocket
from conftest import FakeCall, Plane, open_plane_for
from live import serve_app
from quart_trio import QuartTrio

from control.auth import _b64url
from control.tools import CallContext

NESTED = b"[" * 30_000 + b"]" * 30_000
DEEP_OBJECT = (
    b'{"name": "x", "engines": {"options": {"llm": {"x": ' + b"[" * 100 + b"]" * 100 + b"}}}}"
)


@pytest.fixture
async def sqlite_plane(tmp_path: object) -> AsyncIterator[Plane]:
    async with await open_plane_for("sqlite", tmp_path) as p:
        yield p


def _path(template: str) -> str:
    """A route path with well-formed ids, so the request gets as far as its body."""
    out = template
    while "<" in out:
        start = out.index("<")
        out = out[:start] + str(uuid.uuid4()) + out[out.index(">") + 1 :]
    return out


@pytest.mark.parametrize("body", [NESTED, DEEP_OBJECT], ids=["30000-arrays", "depth-100"])
async def test_every_route_with_a_body_answers_400_to_deep_nesting(
    sqlite_plane: Plane, body: bytes
) -> None:
    customer_id, auth = await sqlite_plane.customer()
    # a platform admin's key, so that the customers routes get as far as their bodies too
    admin = await sqlite_plane.key(customer_id, "platform_admin")
    specs = [s for s in sqlite_plane.app.extensions["callbridge.api"].specs if s.body]
    assert len(specs) >= 8  # agents, keys, webhooks, conferences, calls and their actions
    for spec in specs:
        r = await sqlite_plane.client.open(
            _path(spec.path),
            method=spec.method,
            data=body,
            headers={
                **(admin if spec.role == "platform_admin" else auth),
                "Content-Type": "application/json",
            },
        )
        got = await r.get_json()
        assert r.status_code == 400, (spec.method, spec.path, got)
        assert got["error"] == "json_too_deep" and "deeper than 32" in got["message"]


async def test_a_jwt_with_nested_claims_is_401(sqlite_plane: Plane) -> None:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = _b64url(b"[" * 3000 + b"]" * 3000)
    r = await sqlite_plane.client.get(
        "/v1.0/agents", headers={"Authorization": f"Bearer {header}.{claims}.c2ln"}
    )
    assert r.status_code == 401 and (await r.get_json())["message"] == "malformed token"


async def _closed_with(ws: trio_websocket.WebSocketConnection) -> int:
    with trio.fail_after(5):
        while True:
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                assert exc.reason is not None
                return int(exc.reason.code)


@pytest.mark.parametrize("first", [NESTED.decode()[:8000], "[" * 50 + "]" * 50])
async def test_events_socket_nested_first_auth_message_closes_4401(
    sqlite_plane: Plane, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, first: str
) -> None:
    port = await serve_app(nursery, sqlite_plane.app)
    async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/v1.0/ws") as ws:
        await ws.send_message(first)
        assert json.loads(await ws.get_message())["type"] == "error"
        assert await _closed_with(ws) == 4401
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_events_socket_nested_message_gets_an_error_and_the_socket_stays(
    sqlite_plane: Plane, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    cid, auth = await sqlite_plane.customer()
    port = await serve_app(nursery, sqlite_plane.app)
    async with trio_websocket.open_websocket_url(
        f"ws://127.0.0.1:{port}/v1.0/ws", extra_headers=[("Authorization", auth["Authorization"])]
    ) as ws:
        for deep in (
            "[" * 4000 + "]" * 4000,
            '{"type":"subscribe","x":' + "[" * 40 + "]" * 40 + "}",
        ):
            await ws.send_message(deep)
            with trio.fail_after(5):
                reply = json.loads(await ws.get_message())
            assert reply == {"type": "error", "message": "message nests deeper than 32 levels"}
        topics = [f"customer_id:{cid}:call:*"]
        await ws.send_message(json.dumps({"type": "subscribe", "topics": topics}))
        with trio.fail_after(5):
            assert json.loads(await ws.get_message()) == {"type": "subscribed", "topics": topics}
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]


async def test_a_webhook_tool_answering_deep_json_is_a_tool_error(
    sqlite_plane: Plane, nursery: trio.Nursery
) -> None:
    tool_app = QuartTrio("tool")

    @tool_app.post("/tool")
    async def answer() -> tuple[str, int, dict[str, str]]:
        return (
            '{"result": ' + "[" * 100 + "]" * 100 + "}",
            200,
            {"Content-Type": "application/json"},
        )

    port = await serve_app(nursery, tool_app)
    cid, _ = await sqlite_plane.customer()
    call = FakeCall(str(uuid.uuid4()))
    tool: dict[str, Any] = {
        "name": "deep",
        "type": "webhook",
        "url": f"http://127.0.0.1:{port}/tool",
    }
    ctx = CallContext(call.call_id, cid, {"tools": [tool]})
    out = await sqlite_plane.hooks.tools.execute(call, ctx, "deep", {})
    assert out.is_error and out.result["error"] == "tool_bad_response"
    assert "deeper than 32" in out.result["message"]
