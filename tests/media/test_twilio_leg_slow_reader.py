"""A media-streams client that stops reading, over real TCP through Hypercorn on serve's own
HTTP listener (control/plane.py). Once the socket buffers fill, Hypercorn's shielded write
blocks the handler; with TCP_USER_TIMEOUT on the listening socket the kernel drops the
connection and the leg fails with ``send_timeout``. A raw
client, because library clients read in the background whether the application reads or not."""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import websocket
from quart_trio import QuartTrio

from control.plane import HTTP_PEER_GONE_MS, HTTP_SEND_BUFFER_BYTES, http_listener
from media.config import HostPort
from media.leg import LegError
from media.message_socket import MessageSocket
from media.twilio import TwilioPeer
from media.twilio_leg import TwilioLeg

SID = "MZslowslowslowslowslowslowslow0000"


def masked_text_frame(text: str) -> bytes:
    """One client-to-server TEXT frame (RFC 6455 5.2: clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(payload))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def connect_and_never_read(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1.0/media-streams HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: read the 101 and nothing after it
    assert response.startswith(b"HTTP/1.1 101"), response
    peer = TwilioPeer(SID)
    sock.sendall(masked_text_frame(peer.connected()) + masked_text_frame(peer.start()))
    return sock


async def test_client_that_never_reads_gets_send_timeout(nursery: trio.Nursery) -> None:
    app = QuartTrio(__name__)
    outcome: dict[str, Any] = {}
    done = trio.Event()

    @app.websocket("/v1.0/media-streams")
    async def media_streams() -> None:
        leg = await TwilioLeg.accept(cast(MessageSocket, websocket), send_timeout_s=0.5)
        sent = 0
        try:
            while True:  # agent audio as fast as it comes: a self-paced leg does not wait
                await leg.send_audio(bytes(320))
                sent += 1
        except LegError as exc:
            outcome.update(end=exc.reason, sent=sent)
        except trio.Cancelled:
            outcome.update(end="disconnect", sent=sent)  # Quart-Trio cancels on disconnect
            raise
        finally:
            done.set()
        await leg.hangup("send_timeout")

    # Hypercorn's Trio worker shields its socket writes (trio/tcp_server.py), so no deadline
    # around websocket.send() fires while a client does not read. TCP_USER_TIMEOUT, inherited
    # by accepted sockets, makes the kernel give such a connection up; serve must set it.
    listener = http_listener(HostPort("127.0.0.1", 0), None, 100)  # serve's own listener
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 2000)  # (test: sooner)
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # Hypercorn owns and closes it now
    config.accesslog = None
    shutdown = trio.Event()
    await nursery.start(
        lambda task_status: serve(
            app, config, shutdown_trigger=shutdown.wait, task_status=task_status
        )
    )
    sock = await trio.to_thread.run_sync(connect_and_never_read, port)
    try:
        with trio.fail_after(20):
            await done.wait()
    finally:
        sock.close()
        shutdown.set()
    # Either the blocked send outlived its deadline, or the kernel dropped the connection first
    # and Quart-Trio cancelled the handler: never a handler stuck for good.
    assert outcome["end"] in ("send_timeout", "disconnect"), outcome
    # What the kernel buffers held (serve's listener bounds its send buffer), then the
    # deadline: a few seconds of audio, never minutes.
    assert 10 < outcome["sent"] < 2000, outcome


def test_serve_http_connections_give_up_on_a_peer_that_vanishes_or_stops_reading() -> None:
    """What serve's HTTP listener hands its accepted connections (the media WebSockets among
    them): the kernel drops one whose data stays unacknowledged for HTTP_PEER_GONE_MS (else
    ~15 min of retransmissions to a vanished client), and its send buffer stays small (else
    autotuning grows it to megabytes: minutes of queued audio for a slow reader)."""
    listener = http_listener(HostPort("127.0.0.1", 0), None, 100)
    with listener, socket.create_connection(listener.getsockname()):
        accepted, _ = listener.accept()
        with accepted:
            timeout_ms = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            assert timeout_ms == HTTP_PEER_GONE_MS
            # set, not autotuned (socket(7): Linux doubles the value asked for)
            sndbuf = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            assert sndbuf == 2 * HTTP_SEND_BUFFER_BYTES
