"""HTTP/1.1 keep-alive after an answer given before the request body was read (issue 11 item 4).

A raw Trio socket speaks to the control plane on a real Hypercorn; h11 parses what comes back.
Before the fix the second request on such a connection got neither an answer nor a close (40 s
and more): see ``control/http_drain.py`` for why.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import h11
import pytest
import trio
from conftest import Plane, open_plane_for
from live import serve_app
from quart_trio import QuartTrio

from control.http_drain import DRAIN_MAX_BYTES, DrainBeforeReuse

BOUND_S = 5.0  # generous on a loaded machine; the hang it guards against was unbounded


@pytest.fixture
async def served(tmp_path: object) -> AsyncIterator[tuple[Plane, int]]:
    async with await open_plane_for("sqlite", tmp_path) as plane, trio.open_nursery() as inner:
        yield plane, await serve_app(inner, plane.app)
        inner.cancel_scope.cancel()


class RawClient:
    """One TCP connection on a plain Trio socket; h11 frames what is written and parses what
    comes back (the client side of the same state machine the server runs)."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    async def send(self, *events: h11.Event) -> None:
        data = memoryview(b"".join(self.conn.send(e) or b"" for e in events))
        while data:
            data = data[await self.sock.send(data[:65536]) :]

    async def response(self) -> tuple[int, dict[bytes, bytes], bytes] | None:
        """The next response, or None when the server closed the connection cleanly."""
        status, headers, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    self.conn.receive_data(await self.sock.recv(65536))
                except ConnectionResetError:
                    return None
            elif isinstance(event, h11.ConnectionClosed):
                return None
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, dict(event.headers)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body

    async def health(self) -> tuple[int, dict[bytes, bytes], bytes] | None:
        """A second request on the same connection."""
        self.conn.start_next_cycle()
        await self.send(h11.Request(method="GET", target="/health", headers=[("Host", "t")]))
        await self.send(h11.EndOfMessage())
        return await self.response()


async def _open(port: int) -> RawClient:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", port))
    return RawClient(sock)


def _post(length: int, auth: dict[str, str] | None = None) -> h11.Request:
    headers = [("Host", "t"), ("Content-Type", "application/json"), ("Content-Length", str(length))]
    return h11.Request(
        method="POST", target="/v1.0/agents", headers=headers + list((auth or {}).items())
    )


async def test_401_before_a_late_body_keeps_the_connection_usable(
    served: tuple[Plane, int],
) -> None:
    _, p = served
    client = await _open(p)
    body = b'{"name": "late"}'
    with trio.fail_after(BOUND_S):
        await client.send(_post(len(body)))
        await trio.sleep(0.1)  # no credentials: the server answers before the body is sent
        await client.send(h11.Data(data=body), h11.EndOfMessage())
        first = await client.response()
        assert first is not None and first[0] == 401
        second = await client.health()
    assert second is not None and second[0] == 200 and b'"status":"ok"' in second[2]


async def _post_big(client: RawClient, size: int, auth: dict[str, str]) -> Any:
    """Send a ``size``-byte body while reading the answer; returns it. The body starts after
    0.1 s, when the server has answered 413 from the headers alone."""
    async with trio.open_nursery() as nursery:

        async def body() -> None:
            await trio.sleep(0.1)
            with contextlib.suppress(OSError):  # the server may close before taking it all
                await client.send(h11.Data(data=b" " * size), h11.EndOfMessage())

        await client.send(_post(size, auth))
        nursery.start_soon(body)
        answer = await client.response()
        nursery.cancel_scope.deadline = trio.current_time() + BOUND_S
    return answer


async def test_413_for_a_megabyte_body_keeps_the_connection_usable(
    served: tuple[Plane, int],
) -> None:
    plane, p = served
    _, auth = await plane.customer()
    client = await _open(p)
    with trio.fail_after(BOUND_S):
        first = await _post_big(client, 1_000_000, auth)
        assert first is not None and first[0] == 413
        second = await client.health()
    assert second is not None and second[0] == 200


async def test_a_body_too_big_to_drain_gets_its_answer_and_a_clean_close(
    served: tuple[Plane, int],
) -> None:
    plane, p = served
    _, auth = await plane.customer()
    client = await _open(p)
    with trio.fail_after(BOUND_S * 2):
        first = await _post_big(client, DRAIN_MAX_BYTES * 8, auth)
        assert first is not None and first[0] == 413
        assert first[1].get(b"connection") == b"close"
        try:
            rest = await client.sock.recv(65536)
        except ConnectionResetError:
            rest = b""  # the unread body made the close a reset: closed all the same
    assert rest == b""


async def test_a_body_that_never_comes_gets_the_answer_now_and_a_close_later(
    nursery: trio.Nursery,
) -> None:
    app = QuartTrio("early")

    @app.post("/")
    async def early() -> tuple[str, int]:
        return "no", 401  # answers without reading the body

    app.asgi_app = DrainBeforeReuse(app.asgi_app, drain_timeout_s=0.3)  # type: ignore[method-assign]
    client = await _open(await serve_app(nursery, app))
    headers = [("Host", "t"), ("Content-Length", "100")]
    with trio.fail_after(BOUND_S):
        await client.send(h11.Request(method="POST", target="/", headers=headers))
        first = await client.response()  # not held back by the drain
        assert first is not None and first[0] == 401 and first[2] == b"no"
        started = trio.current_time()
        assert await client.sock.recv(100) == b""  # then a clean close, not a hang
    assert trio.current_time() - started >= 0.2  # it did wait for the body a while
