"""``callbridge agent``: serve the agent link: pipecat pipelines, or ``--echo``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import time

from ai_pipeline.link import CallHandler
from ai_pipeline.server import AgentServer
from callbridge.heap import freeze_startup_heap
from media.config import HostPort

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default="127.0.0.1:8000",
        metavar="HOST:PORT",
        help="agent link WebSocket listener (default %(default)s)",
    )
    parser.add_argument(
        "--echo",
        action="store_true",
        help="echo the caller's audio back instead of running a pipeline",
    )


def _handler(echo: bool) -> CallHandler:
    if echo:
        from ai_pipeline.echo import echo_call

        return echo_call
    from ai_pipeline.pipeline import default_models, run_call

    # Load every offline model before the port opens: the supervisor (and a load balancer's
    # health check) treats an agent that answers the link handshake as ready, and the first call
    # must not wait seconds for Whisper and the voice. A broken model install fails here, at
    # start, with its name.
    started = time.perf_counter()
    default_models().preload_offline()
    log.info("offline models loaded", extra={"secs": round(time.perf_counter() - started, 2)})
    return run_call


EX_CONFIG = 78  # sysexits.h: configuration error (here: an offline model is not installed)
EX_CANNOT_LISTEN = 71  # sysexits.h EX_OSERR: the listen address is taken or not ours to bind
_BIND_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def run(ns: argparse.Namespace) -> int:
    from ai_pipeline.engines.models import ModelLoadError

    listen = HostPort.parse(ns.listen, "--listen")
    try:
        handler = _handler(ns.echo)
    except ModelLoadError as exc:
        log.error("agent cannot start: %s", exc)
        return EX_CONFIG  # a restart cannot fix it: serve's supervisor gives up on this code
    try:
        asyncio.run(serve_forever(handler, listen))
    except OSError as exc:
        if exc.errno not in _BIND_ERRNOS:
            raise
        # One line, and a code serve's supervisor does not restart on: retrying cannot free it.
        reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        log.error(
            "agent cannot listen on %s: %s; stop what holds it or choose another --listen",
            listen,
            reason,
        )
        return EX_CANNOT_LISTEN
    return 0


async def serve_forever(handler: CallHandler, listen: HostPort) -> None:
    server = await AgentServer(handler).start(listen.host, listen.port)
    frozen = freeze_startup_heap()  # models and libraries: never walked by a full GC pass
    log.info("agent listening", extra={"listen": str(listen), "frozen_objects": frozen})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
