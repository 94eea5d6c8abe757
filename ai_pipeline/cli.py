"""``callbridge agent``: serve the agent link: pipecat pipelines, or ``--echo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ai_pipeline.link import CallHandler
from ai_pipeline.server import AgentServer
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
    from ai_pipeline.pipeline import run_call

    return run_call


def run(ns: argparse.Namespace) -> int:
    listen = HostPort.parse(ns.listen, "--listen")
    asyncio.run(serve_forever(_handler(ns.echo), listen))
    return 0


async def serve_forever(handler: CallHandler, listen: HostPort) -> None:
    server = await AgentServer(handler).start(listen.host, listen.port)
    log.info("agent listening", extra={"listen": str(listen)})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
