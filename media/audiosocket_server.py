"""The AudioSocket TCP listener: one :class:`media.call.Call` per connection.

Each connection handler catches everything its call raises: ``trio.serve_listeners`` runs all
handlers in one nursery, and one escaping exception would cancel every other call.
"""

from __future__ import annotations

import logging
import socket
import uuid
from functools import partial
from typing import Protocol

import trio

from media.audiosocket import AudioSocketConnection, Numbering
from media.audiosocket_leg import AudioSocketLeg
from media.call import Call, CallEnv, new_call_id
from media.hooks import CallInfo
from media.leg import Leg, LegError
from media.recording_leg import recording

log = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 32768
"""Kernel send buffer per caller: about 1 s of 8 kHz audio, so a peer that stops reading is
noticed by the send deadline within seconds, not after megabytes of queued audio."""


class AudioSocketClaims(Protocol):
    """Whoever had Asterisk open this connection (ARI ExternalMedia) and knows it by its UUID:
    returns the call's info and leg as it wants them, or None for a call it did not place."""

    def claim(
        self, call_uuid: uuid.UUID, info: CallInfo, leg: Leg
    ) -> tuple[CallInfo, Leg] | None: ...


async def serve_audiosocket(
    env: CallEnv,
    claims: AudioSocketClaims | None = None,
    *,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``env.config.audiosocket``, or accept on ``sock``, a listening socket the workers
    of ``serve --workers`` share; reports the bound port (useful with port 0)."""
    addr = env.config.audiosocket
    if sock is None:
        listeners = await trio.open_tcp_listeners(addr.port, host=addr.host)
    else:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    port = listeners[0].socket.getsockname()[1]
    log.info("audiosocket listening", extra={"host": addr.host, "port": port})
    task_status.started(port)
    await trio.serve_listeners(partial(handle_connection, env=env, claims=claims), listeners)


async def handle_connection(
    stream: trio.SocketStream, env: CallEnv, claims: AudioSocketClaims | None = None
) -> None:
    try:
        await _handle(stream, env, claims)
    except Exception:
        log.exception("audiosocket connection failed")
        env.metrics.leg_errors.labels("audiosocket", "internal").inc()
    finally:
        await trio.aclose_forcefully(stream)


async def _handle(
    stream: trio.SocketStream, env: CallEnv, claims: AudioSocketClaims | None
) -> None:
    cfg = env.config
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    peer = "{}:{}".format(*stream.socket.getpeername()[:2])
    if len(env.registry) >= cfg.max_calls:
        env.metrics.leg_errors.labels("audiosocket", "over_capacity").inc()
        log.warning("call refused: at max_calls", extra={"peer": peer})
        return
    conn = AudioSocketConnection(Numbering(cfg.audiosocket_numbering), cfg.max_frame_ms)
    leg = AudioSocketLeg(stream, conn, cfg.leg_idle_timeout_s, cfg.leg_send_timeout_s)
    try:
        call_uuid = await leg.read_uuid()
    except LegError as exc:
        env.metrics.leg_errors.labels("audiosocket", exc.reason).inc()
        log.info("audiosocket refused", extra={"peer": peer, "reason": str(exc)})
        return
    info = CallInfo(
        call_id=new_call_id(), leg="audiosocket", leg_ref=str(call_uuid), remote_addr=peer
    )
    call_leg: Leg = leg
    claimed = claims.claim(call_uuid, info, leg) if claims is not None else None
    if claimed is not None:
        info, call_leg = claimed
    async with recording(call_leg, info.call_id, cfg.record_dir) as recorded:
        await Call(recorded, info, env).run()
