"""media.asgi_websocket and the split leg socket: the leg reads the ASGI server's ``receive``
itself, only its sends go through the handler's task, and a torn-down handler ends the call.

The ASGI side here is what Hypercorn hands an app: ``receive`` is a bounded channel's
``receive``, ``send`` takes ASGI message dicts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from media.asgi_websocket import AsgiWebsocket
from media.leg import LegError
from media.message_socket import (
    CLOSE_POLICY_VIOLATION,
    MessageSocketClosed,
    receive_within,
    relay_outbound,
    send_within,
    split_socket_pair,
)
from media.twilio import TwilioPeer
from media.websocket_calls import WebsocketCalls
from tests.media.test_websocket_leg_calls import make_env

SID = "MZasgiasgiasgiasgiasgiasgiasgiasgi"


class FakeAsgi:
    """The server's side of one ASGI WebSocket: events in through a bounded channel (as
    Hypercorn's app queue), every message the app sends kept."""

    def __init__(self) -> None:
        self.to_app, self._from_server = trio.open_memory_channel[Mapping[str, Any]](10)
        self.sent: list[dict[str, Any]] = []
        self.sent_event = trio.Event()

    async def receive(self) -> Mapping[str, Any]:
        return await self._from_server.receive()

    async def send(self, message: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(message)
        self.sent_event.set()

    def socket(self) -> AsgiWebsocket:
        return AsgiWebsocket({"type": "websocket", "path": "/"}, self.receive, self.send)

    async def text(self, text: str) -> None:
        await self.to_app.send({"type": "websocket.receive", "text": text})

    def closes(self) -> list[tuple[int, str]]:
        return [(m["code"], m["reason"]) for m in self.sent if m["type"] == "websocket.close"]

    def texts(self) -> list[str]:
        return [m["text"] for m in self.sent if m["type"] == "websocket.send"]


async def test_messages_in_and_out_and_the_clients_close() -> None:
    asgi = FakeAsgi()
    ws = asgi.socket()
    await asgi.to_app.send({"type": "websocket.connect"})
    await ws.connected()
    await ws.accept("media")
    await asgi.text("hello")
    await asgi.to_app.send({"type": "websocket.receive", "bytes": b"\x01\x02", "text": None})
    await asgi.to_app.send({"type": "websocket.disconnect", "code": 1001})
    assert await ws.receive() == "hello"
    assert await ws.receive() == b"\x01\x02"
    with pytest.raises(MessageSocketClosed) as info:
        await ws.receive()
    assert info.value.code == 1001
    with pytest.raises(MessageSocketClosed):  # remembered: no wait on a channel nobody fills
        await ws.receive()
    with pytest.raises(MessageSocketClosed):
        await ws.send("too late")
    await ws.close(1000, "bye")  # the client is gone: nobody to tell
    assert asgi.sent == [{"type": "websocket.accept", "subprotocol": "media", "headers": []}]


async def test_close_is_sent_once() -> None:
    asgi = FakeAsgi()
    ws = asgi.socket()
    await ws.send("x")
    await ws.close(CLOSE_POLICY_VIOLATION, "bad_json")
    await ws.close(1000, "again")
    assert asgi.texts() == ["x"]
    assert asgi.closes() == [(CLOSE_POLICY_VIOLATION, "bad_json")]


async def test_the_leg_reads_the_transport_and_only_sends_are_relayed() -> None:
    asgi = FakeAsgi()
    leg_end, inner = split_socket_pair(asgi.socket(), 4)
    await asgi.text("from the caller")
    # Nothing pumps inbound: the leg's end reads the transport itself.
    assert await receive_within(leg_end, 1.0) == "from the caller"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay_outbound, asgi.socket(), inner)
        await send_within(leg_end, "agent audio", 1.0)
        with trio.fail_after(1):
            await asgi.sent_event.wait()
        await leg_end.close(CLOSE_POLICY_VIOLATION, "bad_json")
    assert asgi.texts() == ["agent audio"]
    assert asgi.closes() == [(CLOSE_POLICY_VIOLATION, "bad_json")]  # the leg's code, relayed


async def test_the_legs_idle_deadline_holds_on_the_transport(autojump_clock: object) -> None:
    leg_end, _inner = split_socket_pair(FakeAsgi().socket(), 4)
    start = trio.current_time()
    with pytest.raises(LegError) as info:
        await receive_within(leg_end, 5.0)  # a client that sends nothing
    assert info.value.reason == "idle_timeout"
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_a_gone_transport_ends_the_relay_and_the_legs_sends() -> None:
    asgi = FakeAsgi()
    transport = asgi.socket()
    leg_end, inner = split_socket_pair(transport, 4)
    await asgi.to_app.send({"type": "websocket.disconnect", "code": 1006})
    with pytest.raises(MessageSocketClosed):
        await leg_end.receive()  # the leg learns it first, as a hangup
    await send_within(leg_end, "agent audio", 1.0)  # already queued when the client left
    with trio.fail_after(1):
        await relay_outbound(transport, inner)  # finds the transport gone, and returns
    with pytest.raises(LegError) as info:
        await send_within(leg_end, "more", 1.0)
    assert info.value.reason == "closed"


async def test_a_torn_down_handler_ends_its_call(echo_agent: str) -> None:
    """Hypercorn cancels an app only when the server shuts down; the call must not wait for
    its idle deadline on a ``receive`` nobody will ever feed."""
    env, hooks = make_env(echo_agent)
    calls = WebsocketCalls()
    asgi = FakeAsgi()
    peer = TwilioPeer(SID)
    await asgi.text(peer.connected())
    await asgi.text(peer.start())

    async def allow(params: Mapping[str, Any]) -> dict[str, str]:
        return {}

    async with trio.open_nursery() as core:
        calls.attach(env, core)
        async with trio.open_nursery() as handler:
            handler.start_soon(calls.serve, "twilio", asgi.socket(), allow)
            with trio.fail_after(10):
                while not env.registry:
                    await trio.sleep(0.01)
            handler.cancel_scope.cancel()  # the server tears the handler down
        with trio.fail_after(3):  # well before the 5 s idle deadline
            await hooks.ended.wait()
    assert hooks.hungup[0][1] == "shutdown"
