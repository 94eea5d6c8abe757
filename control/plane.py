"""Start the control plane inside ``callbridge serve``'s Trio nursery.

Storage, Redis, the event bus, webhook workers and the HTTP server all live in the nursery the
media core passes in, so they stop with it. On the embedded SQLite default, pending migrations are
applied at start-up and a first admin access key is minted and logged once (documented zero-config
behaviour); MariaDB is never migrated implicitly: ``callbridge db migrate`` does that, and serve
refuses to start on a schema that is behind.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import trio
from hypercorn.config import Config as HypercornConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Response
from quart_trio import QuartTrio

from control import (
    routes_calls,
    routes_conferences,
    routes_customers,
    routes_media,
    routes_resources,
    routes_rtp,
    summaries,
    ws,
)
from control.api import Api
from control.bootstrap import ensure_bootstrap
from control.bridge import AsyncioBridge
from control.call_commands import CallCommands, Holder
from control.conference_links import link_base
from control.conferences import Conferences
from control.config import ControlConfig
from control.db import Database, DatabaseError, open_database
from control.db.migrate import migrate, pending
from control.events import EventBus
from control.hooks import ControlHooks
from control.hypercorn_guard import serve
from control.mcp_agents import McpTools
from control.nodes import NodeHeartbeat
from control.openapi import build_document
from control.redis_link import RedisLink
from control.services import ControlMetrics, Services
from control.store import Store
from control.summaries import SummaryWriter
from control.tls import apply_tls
from control.tools import ToolExecutor
from control.webhooks import WebhookDispatcher
from media.config import HostPort
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.websocket_calls import WebsocketCalls
from sip.outbound import SipOutbound
from sip.rtp_calls import RtpCalls

log = logging.getLogger(__name__)

# Readiness of something serve depends on beyond storage (the agent): raises when not ready.
ReadyCheck = Callable[[], Awaitable[None]]

# The HTTP port carries the media WebSockets (Twilio, chan_websocket, the browser), whose frames
# Hypercorn writes from shielded tasks: only the kernel can bound a client that stops reading or
# vanishes. Both options are set on the listening socket; accepted connections inherit them.
HTTP_SEND_BUFFER_BYTES = 65536
"""Kernel send buffer per HTTP connection (Linux doubles it): ~10 s of Twilio's media stream,
~4 s of the browser's 16 kHz audio, where autotuning grew it to megabytes (minutes of audio
queued for a slow reader before the leg's send deadline could notice). Still ~1 MB/s to a
client 100 ms away, for downloads."""
CONFERENCE_COMMANDS_AT_ONCE = 16
"""Conference commands a holder answers at once: an ``add`` waits for the conference's holder
to admit the call, so two nodes adding calls to each other's conferences must not queue behind
each other."""
HTTP_PEER_GONE_MS = 20_000
"""TCP_USER_TIMEOUT: a connection whose sent data stays unacknowledged (or unsent behind a
closed window) this long is dropped by the kernel, instead of after ~15 min of retransmissions:
a vanished media client's call then ends as a disconnect."""


class SchemaBehind(DatabaseError):
    """The database lacks migrations this version needs; run ``callbridge db migrate``."""


def create_app(
    services: Services,
    media_metrics: MediaMetrics,
    legs: WebsocketCalls | None = None,
    rtp: RtpCalls | None = None,
    sip: SipOutbound | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
) -> QuartTrio:
    app = QuartTrio(
        "callbridge", static_folder=str(routes_media.STATIC_DIR), static_url_path="/page"
    )
    api = Api(app, services)
    app.extensions["callbridge.api"] = api  # the route records, for the OpenAPI test
    routes_calls.register(api, sip)
    routes_resources.register(api)
    routes_customers.register(api)
    routes_conferences.register(api, services.conferences)
    routes_media.register(api, legs or WebsocketCalls())
    routes_rtp.register(api, rtp or RtpCalls())
    ws.register(api)
    summaries.register(api, services.cfg.record_dir)
    document = build_document(api.specs)

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "calls_active": len(services.calls)}

    @app.get("/ready")
    async def ready() -> Response:
        checks: dict[str, str] = {}
        for name, probe in (
            ("db", services.db.ping),
            ("redis", services.redis.ping if services.redis else None),
            *(ready_checks or {}).items(),
        ):
            if probe is None:
                continue
            with trio.move_on_after(2.0) as scope:
                try:
                    await probe()
                    checks[name] = "ok"
                except Exception as exc:  # any failure of a dependency means not ready
                    checks[name] = f"error: {type(exc).__name__}"
            if scope.cancelled_caught:
                checks[name] = "error: timeout"
        ok = all(v == "ok" for v in checks.values())
        return Response(
            json.dumps({"status": "ready" if ok else "not_ready", "checks": checks}),
            status=200 if ok else 503,
            content_type="application/json",
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(media_metrics.registry), content_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json")
    async def openapi() -> dict[str, object]:
        return document

    return app


@asynccontextmanager
async def open_services(
    cfg: ControlConfig, calls: CallRegistry, metrics: MediaMetrics
) -> AsyncIterator[tuple[Services, ControlHooks, trio.Nursery]]:
    """Storage, Redis, bus, webhook workers and hooks, plus the nursery their background tasks
    run in. That nursery is cancelled and drained before Redis, storage and the bridge close."""
    bridge = AsyncioBridge()
    try:
        async with open_database(cfg.db, cfg.db_prefix, bridge) as db:
            await _check_schema(cfg, db)
            redis = RedisLink(cfg.redis, bridge) if cfg.redis else None
            try:
                if redis is not None:
                    await redis.open()
                cmetrics = ControlMetrics(metrics.registry)
                store = Store(db, redis, cfg.cache_ttl_s)
                dispatcher = WebhookDispatcher(
                    store,
                    cfg.webhook_attempts,
                    cfg.webhook_backoff_s,
                    cfg.webhook_timeout_s,
                    cmetrics.webhook_drops,
                )
                bus = EventBus(
                    store,
                    cmetrics.event_drops,
                    dispatcher,
                    redis,
                    channel=f"callbridge:{cfg.db_prefix}events",
                )
                me = Holder(cfg.node, cfg.worker_id)
                commands = CallCommands(
                    me,
                    functools.partial(routes_calls.execute, calls),
                    redis,
                    f"callbridge:{cfg.db_prefix}",
                    cfg.command_timeout_s,
                    drops=cmetrics.command_drops,
                )
                conferences = Conferences(store, bus, calls, cfg.record_dir)
                if redis is not None:  # conferences across nodes (control/conference_links.py)
                    conferences.me, conferences.link_base = me, link_base(cfg)
                    conferences.commands = CallCommands(
                        me,
                        conferences.execute,
                        redis,
                        f"callbridge:{cfg.db_prefix}conference-",
                        cfg.command_timeout_s,
                        drops=cmetrics.command_drops,
                        concurrent=CONFERENCE_COMMANDS_AT_ONCE,
                    )
                services = Services(
                    cfg, db, store, bus, calls, cmetrics, commands, redis, conferences
                )
                tools = ToolExecutor(
                    store,
                    bus.publish,
                    cmetrics.tool_latency,
                    timeout_s=cfg.tool_timeout_s,
                    conferences=conferences,
                    mcp=McpTools(cfg.mcp_stdio, cfg.mcp_list_timeout_s, cfg.mcp_call_timeout_s),
                )
                writer = SummaryWriter(
                    store, bus, cmetrics.summary_drops, cfg.record_dir, cfg.summary_settle_s
                )
                bus.observers += [writer.observe, cmetrics.observe_event]
                cmetrics.webhook_backlog.set_function(lambda: len(dispatcher.queue))
                heartbeat = NodeHeartbeat(store, bus, redis, me, calls, cfg.node_ttl_s)
                hooks = ControlHooks(store, bus, tools, (me.node_id, me.worker_id))
                async with trio.open_nursery() as nursery:
                    await nursery.start(dispatcher.run)
                    if redis is not None:
                        await nursery.start(redis.listen, bus.channel, bus.on_redis_message)
                    await nursery.start(commands.serve)
                    if conferences.commands is not None:
                        await nursery.start(conferences.commands.serve)
                    await nursery.start(heartbeat.run)  # reconciles this node's stale calls first
                    await nursery.start(conferences.run)
                    await nursery.start(writer.run)
                    await nursery.start(tools.mcp.pool.serve)  # MCP sessions kept between calls
                    try:
                        yield services, hooks, nursery
                    finally:
                        nursery.cancel_scope.cancel()
            finally:
                if redis is not None:
                    with trio.CancelScope(shield=True):
                        await redis.aclose()
    finally:
        bridge.close()


async def prepare_storage(cfg: ControlConfig) -> None:
    """Migrations and the first key, once: ``serve --workers``' parent runs it before any worker
    starts, so N workers never race to migrate or to mint the first admin key."""
    bridge = AsyncioBridge()
    try:
        async with open_database(cfg.db, cfg.db_prefix, bridge) as db:
            await _check_schema(cfg, db)
    finally:
        bridge.close()


async def _check_schema(cfg: ControlConfig, database: Database) -> None:
    todo = await pending(database)
    if todo and cfg.db.dialect == "sqlite" and cfg.auto_migrate:
        await migrate(database)
        log.info("applied migrations", extra={"migrations": [m.version for m in todo]})
    elif todo:
        raise SchemaBehind(
            f"{len(todo)} migration(s) pending on {cfg.db.redacted()}: run `callbridge db migrate`"
        )
    if cfg.db.dialect == "sqlite":
        boot = await ensure_bootstrap(Store(database))
        if boot.new_access_key:
            # Logged once: only its hash is stored. `callbridge db create-accesskey` mints more.
            log.warning(
                "first admin access key created",
                extra={"customer_id": boot.customer_id, "access_key": boot.new_access_key},
            )


def http_listener(addr: HostPort, fd: int | None, backlog: int) -> socket.socket:
    """The listening socket for ``addr`` (or the one ``serve --workers``' parent bound, ``fd``)
    with :data:`HTTP_SEND_BUFFER_BYTES` and :data:`HTTP_PEER_GONE_MS` set."""
    if fd is not None:
        sock = socket.socket(fileno=fd)
    else:
        family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
        sock = socket.create_server((addr.host, addr.port), family=family, backlog=backlog)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HTTP_SEND_BUFFER_BYTES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, HTTP_PEER_GONE_MS)
    return sock


@asynccontextmanager
async def open_control_plane(
    cfg: ControlConfig,
    calls: CallRegistry,
    metrics: MediaMetrics,
    nursery: trio.Nursery,
    legs: WebsocketCalls | None = None,
    rtp: RtpCalls | None = None,
    sip: SipOutbound | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
) -> AsyncIterator[ControlHooks]:
    """Serve HTTP on ``cfg.http`` and yield the hooks calls report to.

    The control plane's own tasks (HTTP, webhook workers, Redis listener) run in a nursery of its
    own (see :func:`open_services`), so storage closes only after they have stopped.
    ``nursery`` (the caller's) is kept for the seam's signature; nothing is started in it.
    ``legs`` runs the media WebSocket routes' calls once the media core attaches to it, and
    ``rtp`` the calls ``POST /v1.0/rtp-offers`` attaches by SDP, ``sip`` the SIP listener
    that ``POST /v1.0/calls`` places calls through (when ``--sip`` is on). ``/ready`` runs
    ``ready_checks`` (the agent) beside the database and Redis checks. Where no
    JWT secret is configured, a random one signs this process's page and media tokens.
    """
    if not cfg.jwt_secret:  # tokens this process mints (page, media) need a key: a fresh one
        cfg = dataclasses.replace(cfg, jwt_secret=secrets.token_urlsafe(32))
    async with open_services(cfg, calls, metrics) as (services, hooks, own):
        app = create_app(services, metrics, legs, rtp, sip, ready_checks)
        hc = HypercornConfig()
        hc.bind = [f"fd://{http_listener(cfg.http, cfg.http_fd, hc.backlog).detach()}"]
        if cfg.link_fd is not None:  # a worker's own listener: links to the bridges it holds
            hc.bind.append(f"fd://{http_listener(cfg.http, cfg.link_fd, hc.backlog).detach()}")
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")  # ours (JSON), not a second handler
        apply_tls(hc, cfg.tls)
        await own.start(serve, app, hc)
        link = await routes_media.page_link(services)
        if link:
            log.warning("open the page to talk to the agent", extra={"url": link})
        yield hooks
