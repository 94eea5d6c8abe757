"""The WebSocket legs need nothing but a message socket, so an application of its own can run them
on Quart-Trio's ``websocket``. A real Hypercorn (Trio worker) on loopback, a real WebSocket client
(``websockets``, in a thread), the call session and the echo agent; no handler may end in a
logged exception, on the Quart of either supported Python.

Quart's object has the Protocol's methods but, since Quart 0.23 (with quart-trio 0.13, what
Python 3.13 resolves), not its failure: a send, receive or close after the client has gone raises
Quart's own ``ClientDisconnectedError`` where the Protocol promises ``MessageSocketClosed`` (Quart
0.22 returned from such a send and let the disconnect cancel the handler). Used as it is, that
error escaped the call's cleanup (the leg's HANGUP to a client that had left), so the call was
never reported ended. :class:`QuartMessageSocket` is the adapter such an application needs.
(``callbridge serve`` itself serves media sockets on Hypercorn's ASGI callables, not on Quart's
object: ``media/asgi_websocket.py``.)"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import quart.wrappers.base
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

from media.call import Call
from media.chan_websocket import MediaStart, media_start_text
from media.chan_websocket_leg import ChanWebsocketLeg
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.message_socket import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    MessageSocket,
    MessageSocketClosed,
    memory_socket_pair,
    relay,
)
from media.twilio import OutboundMedia, TwilioPeer
from media.twilio_leg import TwilioLeg
from tests.media.conftest import best_snr_db, tone
from tests.media.test_websocket_leg_calls import make_env
from tests.media.ws_client import play

SID = "MZquartquartquartquartquartquart00"
# Quart < 0.23 has no such error (a disconnect only cancels the handler there).
_error: type[Exception] | None = getattr(quart.wrappers.base, "ClientDisconnectedError", None)
QUART_DISCONNECTED: tuple[type[Exception], ...] = () if _error is None else (_error,)


class QuartMessageSocket:
    """Quart's ``websocket`` as a :class:`MessageSocket`: its disconnect error is a close."""

    def __init__(self, websocket: Any) -> None:
        self._websocket = websocket

    async def receive(self) -> str | bytes:
        try:
            message: str | bytes = await self._websocket.receive()
        except QUART_DISCONNECTED:
            raise MessageSocketClosed(CLOSE_GOING_AWAY, "client disconnected") from None
        return message

    async def send(self, message: str | bytes) -> None:
        try:
            await self._websocket.send(message)
        except QUART_DISCONNECTED:
            raise MessageSocketClosed(CLOSE_GOING_AWAY, "client disconnected") from None

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        try:
            await self._websocket.close(code, reason)
        except QUART_DISCONNECTED:
            raise MessageSocketClosed(CLOSE_GOING_AWAY, "client disconnected") from None


def make_app(echo_agent: str) -> tuple[QuartTrio, Any]:
    app = QuartTrio(__name__)
    env, hooks = make_env(echo_agent)

    @app.websocket("/v1.0/media-streams")
    async def media_streams() -> None:
        leg = await TwilioLeg.accept(QuartMessageSocket(websocket))
        await Call(leg, leg.call_info(f"tw-{leg.start.stream_sid}"), env).run()

    @app.websocket("/chan-websocket")
    async def chan_websocket() -> None:
        leg = await ChanWebsocketLeg.accept(QuartMessageSocket(websocket))
        await Call(leg, leg.call_info(f"ws-{leg.start.channel_id}"), env).run()

    return app, hooks


def run_client(
    url: str,
    first: list[str],
    chunks: list[str | bytes],
    last: str | None,
    subprotocols: list[str] | None = None,
) -> tuple[list[str | bytes], int | None]:
    """Play ``chunks`` in real time after ``first``; collect replies until the server closes."""
    session = play(url, first, chunks, last, subprotocols=subprotocols)
    return session.received, session.code


async def start_server(nursery: trio.Nursery, app: QuartTrio) -> tuple[str, trio.Event]:
    """Hypercorn's Trio worker on a free loopback port; set the event to stop it."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    shutdown = trio.Event()
    binds = await nursery.start(
        lambda task_status: serve(
            app, config, shutdown_trigger=shutdown.wait, task_status=task_status
        )
    )
    return binds[0].replace("http://", "ws://"), shutdown


def _handler_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What Quart logged as a handler's exception ("Exception on websocket /path")."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_calls_over_quart_trio_websockets(
    echo_agent: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    app, hooks = make_app(echo_agent)
    base, shutdown = await start_server(nursery, app)

    src8k = tone(1000, 0.6)
    peer = TwilioPeer(SID)
    ulaw = pcm16_to_ulaw(src8k) + bytes([0xFF]) * 160 * 25
    twilio_chunks: list[str | bytes] = [
        peer.media(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)
    ]
    received, code = await trio.to_thread.run_sync(
        run_client,
        f"{base}/v1.0/media-streams",
        [peer.connected(), peer.start()],
        twilio_chunks,
        peer.stop(),
    )
    echoed = b"".join(
        ulaw_to_pcm16(m.ulaw) for m in map(peer.parse, received) if isinstance(m, OutboundMedia)
    )
    assert best_snr_db(src8k, echoed, max_delay=4000)[0] > 25
    assert code == 1000

    src16k = tone(1000, 0.6, rate_hz=16000)
    start = MediaStart("c1", "WebSocket/c1/0x1", "1764062400.5", "slin16", 640, 20)
    slin = src16k + bytes(640 * 25)
    slin_chunks: list[str | bytes] = [slin[i : i + 640] for i in range(0, len(slin), 640)]
    received, code = await trio.to_thread.run_sync(
        run_client,
        f"{base}/chan-websocket",
        [media_start_text(start)],
        slin_chunks,
        None,
        ["media"],
    )
    echoed = b"".join(m for m in received if isinstance(m, bytes))
    assert best_snr_db(src16k, echoed, max_delay=8000)[0] > 60
    with trio.fail_after(5):
        while len(hooks.hungup) < 2:
            await trio.sleep(0.05)
    causes = {call_id: cause for call_id, cause, _ in hooks.hungup}
    assert causes.keys() == {f"tw-{SID}", "ws-1764062400.5"}
    assert causes[f"tw-{SID}"] == "caller"  # Twilio says stop before it closes
    # A bare close may never reach the leg under Quart-Trio: the disconnect cancels the handler,
    # and the call's shielded cleanup reports it as "shutdown" (Quart 0.22 always; Quart 0.23
    # first fails a receive that is waiting, which the leg sees as the caller's hangup). The
    # route must tell the two apart when it is written (control plane: it relays, below).
    assert causes["ws-1764062400.5"] in ("shutdown", "caller")
    assert _handler_errors(caplog) == []
    shutdown.set()


async def test_relayed_call_sees_a_bare_close_as_the_callers_hangup(
    echo_agent: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """The call runs in the media core's nursery (this test's); the handler only relays. A
    client that just closes is then a caller hangup, not a cancelled handler."""
    env, hooks = make_env(echo_agent)
    app = QuartTrio(__name__)

    async def run_call(leg_end: MessageSocket) -> None:
        leg = await ChanWebsocketLeg.accept(leg_end)
        await Call(leg, leg.call_info("relayed"), env).run()

    @app.websocket("/chan-websocket")
    async def chan_websocket() -> None:
        leg_end, inner = memory_socket_pair(64)
        nursery.start_soon(run_call, leg_end)
        await relay(QuartMessageSocket(websocket), inner)

    base, shutdown = await start_server(nursery, app)
    src16k = tone(1000, 0.4, rate_hz=16000)
    start = MediaStart("c2", "WebSocket/c2/0x2", "1764062400.6", "slin16", 640, 20)
    slin = src16k + bytes(640 * 25)
    chunks: list[str | bytes] = [slin[i : i + 640] for i in range(0, len(slin), 640)]
    received, _ = await trio.to_thread.run_sync(
        run_client,
        f"{base}/chan-websocket",
        [media_start_text(start)],
        chunks,
        None,
        ["media"],
    )
    echoed = b"".join(m for m in received if isinstance(m, bytes))
    assert best_snr_db(src16k, echoed, max_delay=8000)[0] > 60
    with trio.fail_after(5):
        await hooks.ended.wait()
    assert hooks.hungup[0][:2] == ("relayed", "caller")
    assert _handler_errors(caplog) == []
    shutdown.set()
