"""A failure that escapes one of Hypercorn's connection tasks ends that connection only: the
server, and every other connection on it, goes on (control/hypercorn_guard.py).

The failure is Hypercorn 0.18's own kind: ``protocol_send`` meeting a ``send_eof`` on the same
stream raises ``BusyResourceError``, which it does not catch. It is raised here in the
connection's own task on the one request that carries a marker, so that the test does not
depend on winning a race."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer

import control.plane
from control import hypercorn_guard

MARKER = b"race-me"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b"fine"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def busy_on_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    original = TCPServer._read_data

    async def read_data(self: TCPServer) -> None:
        first = bytes(await self.stream.receive_some(65536))
        if MARKER in first:
            raise trio.BusyResourceError("another task is currently sending data on this stream")
        await self.protocol.handle(RawData(first))
        await original(self)

    monkeypatch.setattr(TCPServer, "_read_data", read_data)


async def get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        answer = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                answer += chunk
        return answer


def test_the_control_plane_serves_through_the_guard() -> None:
    assert getattr(control.plane, "serve") is hypercorn_guard.serve  # noqa: B009


@pytest.mark.usefixtures("busy_on_marker")
async def test_a_connection_that_fails_inside_hypercorn_leaves_the_server_up(
    nursery: trio.Nursery,
) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    (bound,) = await nursery.start(hypercorn_guard.serve, app, config)
    port = int(bound.rpartition(":")[2])
    assert b"fine" in await get(port, "/")
    for _ in range(3):
        assert await get(port, "/" + MARKER.decode()) == b""  # that one ends, unanswered
    assert b"fine" in await get(port, "/"), "the server is still up"
