"""``callbridge serve``: the media core and the control plane in one Trio process, or with
``--workers N`` in N such processes behind the same listeners (:mod:`callbridge.workers`)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, ExitStack

import trio

from callbridge.agent_probe import probe_remote_agents
from callbridge.agent_workers import AgentWorkers
from callbridge.ari_worker import (
    ARI_WORKER,
    AriAtWorkerZero,
    ari_commands,
    ari_executor,
    ari_media_address,
    no_app,
)
from callbridge.heap import freeze_startup_heap
from callbridge.listeners import CannotListen, listening
from callbridge.supervisor import AgentCannotStart
from callbridge.workers import (
    WorkerCannotStart,
    WorkerPool,
    WorkerRole,
    bind_tcp,
    bind_udp,
    link_addresses,
    shared_agent_args,
)
from control import config as control_config
from control.call_commands import CallCommands
from control.hooks import ControlHooks
from control.plane import ReadyCheck, open_control_plane, prepare_storage
from media import config as media_config
from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferDesk
from media.call import CallEnv
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.websocket_calls import WebsocketCalls
from sip import config as sip_config
from sip.ari import config as ari_config
from sip.ari.app import AriApp
from sip.ari.client import AriClient
from sip.ari.control_events import ControlEvents
from sip.ari.events_socket import AriAuthError
from sip.ari.metrics import AriMetrics
from sip.outbound import SipOutbound
from sip.rtp_calls import RtpCalls
from sip.server import serve_sip

log = logging.getLogger(__name__)

ARI_WEBSOCKET_NEEDS_LINK_PORT = (
    "--ari-media websocket with --workers > 1 needs --link-port: worker 0 runs the ARI app, and"
    " Asterisk's websocket_client.conf must name worker 0's own listener (--http's host at"
    " --link-port's port), not the shared --http one, where a sibling may accept the media"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    media_config.add_arguments(parser)
    control_config.add_arguments(parser)
    sip_config.add_arguments(parser)
    ari_config.add_arguments(parser)


def run(ns: argparse.Namespace) -> int:
    media_cfg = media_config.from_args(ns)
    control_cfg = control_config.from_args(ns)
    sip_cfg = sip_config.from_args(ns)
    rtp_cfg = sip_config.rtp_from_args(ns)
    ari_cfg = ari_config.from_args(ns, media_cfg.audiosocket)
    main: Callable[[], Awaitable[None]]
    role = WorkerRole.from_environ()
    if role is not None:
        worker_cfg = dataclasses.replace(
            control_cfg, worker_id=role.worker_id, http_fd=role.http_fd, link_fd=role.link_fd
        )
        sip_cfg, rtp_cfg = _worker_sip(sip_cfg, rtp_cfg, role.worker_id, control_cfg.workers)
        main = functools.partial(serve, media_cfg, worker_cfg, sip_cfg, rtp_cfg, ari_cfg, role)
    elif control_cfg.workers > 1:
        if ari_cfg and ari_cfg.media_transport == "websocket" and not control_cfg.link_port:
            raise media_config.ConfigError(ARI_WEBSOCKET_NEEDS_LINK_PORT)
        for worker_id in range(control_cfg.workers):  # a bad slice is said once, here
            _worker_sip(sip_cfg, rtp_cfg, worker_id, control_cfg.workers)
        argv = serve_argv()
        main = functools.partial(serve_workers, media_cfg, control_cfg, argv, sip_cfg, ari_cfg)
    else:
        main = functools.partial(serve, media_cfg, control_cfg, sip_cfg, rtp_cfg, ari_cfg)
    try:
        trio.run(main)
    except BaseExceptionGroup as group:  # the nursery's: a restart cannot fix these
        cannot, _ = group.split((AgentCannotStart, AriAuthError, CannotListen, WorkerCannotStart))
        if cannot is None:
            raise
        reason: BaseException = cannot
        while isinstance(reason, BaseExceptionGroup):  # nurseries nest: the first leaf says it
            reason = reason.exceptions[0]
        log.error("callbridge cannot start: %s", reason)
        return 1
    return 0


def _worker_sip(
    sip_cfg: sip_config.SipConfig | None,
    rtp_cfg: sip_config.SipConfig,
    worker_id: int,
    workers: int,
) -> tuple[sip_config.SipConfig | None, sip_config.SipConfig]:
    """A worker's SIP port and RTP slice (:func:`sip.config.for_worker`), for SIP and for the
    RTP legs attached through the API alike; ``ConfigError`` where one does not fit."""
    rtp = sip_config.for_worker(rtp_cfg, worker_id, workers)
    return (sip_config.for_worker(sip_cfg, worker_id, workers) if sip_cfg else None), rtp


async def serve(
    media_cfg: media_config.MediaConfig,
    control_cfg: control_config.ControlConfig,
    sip_cfg: sip_config.SipConfig | None = None,
    rtp_cfg: sip_config.SipConfig | None = None,
    ari_cfg: ari_config.AriConfig | None = None,
    role: WorkerRole | None = None,
) -> None:
    """One process: the agent (unless remote), the control plane and the media listeners. As a
    worker (``role``), on the sockets its parent bound, reaching the parent's agent."""
    metrics = MediaMetrics()
    registry = CallRegistry()
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
        agent_ready: ReadyCheck
        agent_pool = None  # a remote list: the calls' own (media.agent_pool)
        if media_cfg.agent_mode == "remote":
            agent_ready = functools.partial(probe_remote_agents, media_cfg.agent_urls)
        else:
            agents = AgentWorkers(media_cfg)
            await nursery.start(agents.run)
            agent_ready, agent_pool = agents.check_ready, agents.pool()
        legs = WebsocketCalls()  # media WebSocket routes; their calls run in this nursery
        rtp = RtpCalls()  # RTP legs attached by SDP through the API; their calls too
        sip = SipOutbound()  # POST /v1.0/calls places SIP calls through the listener
        ready_checks: dict[str, ReadyCheck] = {"agent": agent_ready}
        client = None
        app_cfg, ari_media = _ari_here(ari_cfg, role)  # --workers: worker 0's app, listener
        if app_cfg is not None:  # Asterisk's Stasis calls reach us over ExternalMedia
            client = AriClient(app_cfg.url, app_cfg.user, app_cfg.password, app_cfg.app)
            ready_checks["asterisk"] = client.check_ready
        with listening("--http", control_cfg.http):
            hooks = await stack.enter_async_context(
                open_control_plane(
                    control_cfg, registry, metrics, nursery, legs, rtp, sip, ready_checks
                )
            )
        # Calls run in a nursery inside the control plane's: cancelled by a signal, they end
        # (cause shutdown) and record it through the control plane before its storage closes.
        async with trio.open_nursery() as calls:
            env = CallEnv(
                config=media_cfg,
                hooks=hooks,
                metrics=metrics,
                registry=registry,
                transfers=TransferDesk(sip),  # transfer_call to a number: the SIP trunk
                agent_pool=agent_pool,
            )
            legs.attach(env, calls)
            rtp.attach(env, calls, rtp_cfg or sip_cfg or sip_config.rtp_default())
            ari = None
            if app_cfg is not None and client is not None:
                ari = AriApp(app_cfg, client, ControlEvents(hooks), AriMetrics(metrics.registry))
                sip.attach_leg("asterisk", ari.outbound)  # POST /v1.0/calls with leg asterisk
                legs.claims = ari  # --ari-media websocket: ExternalMedia over chan_websocket
                if hooks.tools.conferences is not None:  # mixer "asterisk" conferences
                    hooks.tools.conferences.asterisk = ari.conferences
                    ari.conferences.on_left = hooks.tools.conferences.asterisk_member_left
            with listening("--audiosocket", media_cfg.audiosocket):
                await calls.start(
                    functools.partial(serve_audiosocket, sock=role.audiosocket() if role else None),
                    env,
                    ari,
                )
            if ari_media is not None:  # worker 0: the ARI app's ExternalMedia, ours alone
                await calls.start(functools.partial(serve_audiosocket, sock=ari_media), env, ari)
            requests = None
            if role is not None:  # --workers: ARI requests between worker 0 and the rest
                requests = _ari_requests(hooks, control_cfg, ari_cfg, ari, sip, ready_checks)
            if requests is not None:
                await calls.start(requests.serve)
            if ari is not None:
                await calls.start(ari.run, registry, media_cfg.max_calls)
            if sip_cfg is not None:
                with listening("--sip", sip_cfg.listen):
                    sip_sock = role.sip() if role else None
                    await calls.start(
                        functools.partial(serve_sip, sock=sip_sock), env, sip_cfg, sip
                    )
            frozen = freeze_startup_heap()  # full GC passes stay off the calls' audio
            log.info(
                "callbridge ready",
                extra={
                    "frozen_objects": frozen,
                    "http": str(control_cfg.http),
                    "audiosocket": str(media_cfg.audiosocket),
                    "agent": media_cfg.agent_url,
                    "agent_link": media_cfg.link_kind,
                    "sip": str(sip_cfg.listen) if sip_cfg else "off",
                    "ari": ari_cfg.url if ari_cfg else "off",
                },
            )
            if role is not None:
                role.say_ready()
            await trio.sleep_forever()


def _ari_here(
    ari_cfg: ari_config.AriConfig | None, role: WorkerRole | None
) -> tuple[ari_config.AriConfig | None, socket.socket | None]:
    """The ARI app's config where this process runs it, and its ExternalMedia listener where
    the parent bound one: with ``--workers``, worker 0's alone (the app told Asterisk its
    port); a plain serve runs the app on its ``--audiosocket`` listener."""
    if ari_cfg is None or role is None:
        return ari_cfg, None
    if role.worker_id != ARI_WORKER:
        return None, None
    sock = role.ari_media()
    if sock is None:  # --ari-media websocket: Asterisk reaches worker 0's --link-port listener
        return ari_cfg, None
    media_host = media_config.HostPort(ari_cfg.media_host.host, sock.getsockname()[1])
    return dataclasses.replace(ari_cfg, media_host=media_host), sock


def _ari_requests(
    hooks: ControlHooks,
    control_cfg: control_config.ControlConfig,
    ari_cfg: ari_config.AriConfig | None,
    ari: AriApp | None,
    sip: SipOutbound,
    ready_checks: dict[str, ReadyCheck],
) -> CallCommands | None:
    """A worker's end of the ARI requests between workers (:mod:`callbridge.ari_worker`):
    worker 0 answers them with its app; another worker places leg ``asterisk`` calls and mixes
    Asterisk conferences through worker 0, and asks it for ``/ready``. None without ``--ari``
    (or Redis: no siblings)."""
    conferences = hooks.tools.conferences
    base = conferences.commands if conferences is not None else None
    if ari_cfg is None or conferences is None or base is None:
        return None
    if ari is not None:
        return ari_commands(base, control_cfg.db_prefix, ari_executor(ari))
    requests = ari_commands(base, control_cfg.db_prefix, no_app)
    zero = AriAtWorkerZero(requests, ari_cfg)
    sip.attach_leg("asterisk", zero)  # POST /v1.0/calls with leg asterisk, taken here
    conferences.asterisk = zero  # joins to and the end of Asterisk-mixed conferences
    ready_checks["asterisk"] = zero.check_ready  # /ready: worker 0's app's connection
    return requests


def serve_argv() -> list[str]:
    """This process's own command line, for its workers: they run the same ``serve``."""
    argv = sys.argv[1:]
    if "serve" not in argv:
        raise media_config.ConfigError("--workers: run as `callbridge serve ...`")
    return argv


async def serve_workers(
    media_cfg: media_config.MediaConfig,
    control_cfg: control_config.ControlConfig,
    argv: Sequence[str],
    sip_cfg: sip_config.SipConfig | None = None,
    ari_cfg: ari_config.AriConfig | None = None,
) -> None:
    """The parent of ``--workers N``: storage prepared and listeners bound once, the agents for all
    workers (:mod:`callbridge.agent_workers`), then the workers, each restarted when it exits
    (:class:`WorkerPool`). With ``--sip``, one SIP socket per worker, bound here too; with
    ``--ari`` (AudioSocket media), worker 0's ExternalMedia listener."""
    await prepare_storage(control_cfg)
    with ExitStack() as sockets:
        listeners = {}
        for name, flag, address in (
            ("http", "--http", control_cfg.http),
            ("audiosocket", "--audiosocket", media_cfg.audiosocket),
        ):
            with listening(flag, address):
                listeners[name] = sockets.enter_context(bind_tcp(address))
        links = []  # each worker's own listener, for the conference links to its bridges
        host, base = control_cfg.http.host, control_cfg.link_port
        for address in link_addresses(host, base, control_cfg.workers):
            with listening("--link-port", address):
                links.append(sockets.enter_context(bind_tcp(address)))
        sips = []  # with --sip, each worker's own SIP port (its transactions and dialogs)
        for address in sip_addresses(sip_cfg, control_cfg.workers):
            with listening("--sip", address):
                sips.append(sockets.enter_context(bind_udp(address)))
        ari_media = None  # worker 0 runs the ARI app: its ExternalMedia come here
        if ari_cfg is not None and ari_cfg.media_transport == "audiosocket":
            address = ari_media_address(media_cfg.audiosocket, ari_cfg.media_host)
            with listening("--ari-media-host", address):
                ari_media = sockets.enter_context(bind_tcp(address))
        # The agent outlives the workers: stopped by a signal, each worker ends its calls as
        # shutdown while their agent links still answer, and only then is the agent stopped.
        async with trio.open_nursery() as agent:
            if media_cfg.agent_mode != "remote":
                await agent.start(AgentWorkers(media_cfg).run)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
                agent_args = shared_agent_args(media_cfg)
                pool = WorkerPool(
                    control_cfg.workers,
                    argv,
                    agent_args,
                    listeners,
                    links,
                    sips=sips,
                    ari_media=ari_media,
                )
                await nursery.start(pool.run)
                log.info(
                    "callbridge ready",
                    extra={
                        "workers": control_cfg.workers,
                        "pids": sorted(pool.pids.values()),
                        "http": str(control_cfg.http),
                        "audiosocket": str(media_cfg.audiosocket),
                        "agent": media_cfg.agent_url,
                        "agent_link": media_cfg.link_kind,
                        "agent_workers": media_cfg.agent_workers,
                        "sip": [str(sock.getsockname()[1]) for sock in sips] or "off",
                        "ari_media": ari_media.getsockname()[1] if ari_media else "off",
                    },
                )
            agent.cancel_scope.cancel()


def sip_addresses(
    sip_cfg: sip_config.SipConfig | None, workers: int
) -> list[media_config.HostPort]:
    """Where each worker listens for SIP (worker j on ``--sip``'s port + j); none without it."""
    if sip_cfg is None:
        return []
    return [sip_config.for_worker(sip_cfg, j, workers).listen for j in range(workers)]


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            scope.cancel()
            return
