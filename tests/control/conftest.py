"""Storage fixtures: every storage test runs on SQLite and on the MariaDB/Redis on loopback.

A server that is absent skips its variants with the reason, except under ``CI=true`` where it fails:
CI promises those servers. Each test gets its own table prefix and drops its tables afterwards, so
parallel and interrupted runs never collide.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from prometheus_client import CollectorRegistry
from quart import request
from quart_trio import QuartTrio

from control.auth import Role
from control.bootstrap import create_access_key
from control.bridge import AsyncioBridge
from control.config import ControlConfig
from control.db import Database, DatabaseUrl, open_database
from control.db.migrate import drop_all, migrate
from control.hooks import ControlHooks
from control.plane import create_app, open_services
from control.services import Services
from media.bridge_transfer import TransferOutcome
from media.hooks import AgentAssignment, LegCannotDo
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.transfer_plan import NO_OPTIONS, TransferOptions
from tests.conftest import require_service as require_ci_service

MYSQL_URL = os.environ.get("CALLBRIDGE_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("CALLBRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    require_ci_service(name, f"not reachable on {host}:{port}")


@pytest.fixture
def mysql_url() -> str:
    """The MariaDB URL, once the server is known to answer (skip or, in CI, fail otherwise)."""
    url = DatabaseUrl.parse(MYSQL_URL)
    require_service("MariaDB", url.host, url.port)
    return MYSQL_URL


@pytest.fixture
def bridge() -> Iterator[AsyncioBridge]:
    b = AsyncioBridge(max_in_flight=10)
    yield b
    b.close()


@pytest.fixture(params=["sqlite", "mysql"])
async def db(
    request: pytest.FixtureRequest, tmp_path: object, bridge: AsyncioBridge
) -> AsyncIterator[Database]:
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        url = DatabaseUrl.parse(f"sqlite:///{tmp_path}/test.db")
    else:
        url = DatabaseUrl.parse(MYSQL_URL)
        require_service("MariaDB", url.host, url.port)
    async with open_database(url, prefix, bridge) as database:
        await migrate(database)
        try:
            yield database
        finally:
            await drop_all(database)


# -- the whole control plane, in process --------------------------------------------------------


AGENT_TOOLS = {
    "tools": ["end_call", "transfer_call", "send_dtmf", "send_sms", "join_conference"],
    "transfer_targets": {"sales": "+15550001111"},
}


@dataclass
class FakeCall:
    """A live call as the media core would register it; records what it was asked to do."""

    call_id: str
    leg: str = "audiosocket"
    can_transfer: bool = False
    actions: list[tuple[str, str]] = field(default_factory=list)
    turn_latency_ms: list[int] = field(default_factory=list)
    transfer_options: list[TransferOptions] = field(default_factory=list)

    def hangup(self, reason: str = "api") -> None:
        self.actions.append(("hangup", reason))

    def hangup_after_playout(self, reason: str) -> None:
        self.actions.append(("hangup_after_playout", reason))

    def say(self, text: str, interrupt: bool = False) -> None:
        self.actions.append(("say", text, "interrupt") if interrupt else ("say", text))

    def send_dtmf(self, digits: str) -> None:
        self.actions.append(("dtmf", digits))

    def transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        if not self.can_transfer:
            raise LegCannotDo(f"{self.leg} legs cannot transfer")
        self.actions.append(("transfer", target))
        self.transfer_options.append(options)

    def request_transfer(self, target: str, options: TransferOptions = NO_OPTIONS) -> None:
        """As :meth:`media.call.Call.request_transfer`: a leg that cannot transfer refuses a
        number at once (``agent:<id>`` needs no leg support)."""
        if not target.startswith("agent:"):
            self.transfer(target, options)
        else:
            self.actions.append(("transfer", target))

    async def transfer_outcome(self) -> TransferOutcome:
        return TransferOutcome("transferring")  # a REFER: the PBX carries the call on

    def switch_agent(self, assignment: AgentAssignment) -> None:
        self.actions.append(("switch_agent", assignment.agent_id))

    bridge: Any = None

    @property
    def bridge_id(self) -> str | None:
        return None if self.bridge is None else str(self.bridge.bridge_id)

    def join_bridge(self, bridge: Any, agent: str = "park", after_reply: bool = False) -> None:
        bridge.join(self.call_id, lambda pcm16, rate_hz: None)
        self.bridge = bridge
        self.actions.append(("join_bridge", bridge.bridge_id))

    def leave_bridge(self, then: str = "agent") -> None:
        self.actions.append(("leave_bridge", then))
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.leave(self.call_id)


@dataclass
class Plane:
    services: Services
    hooks: ControlHooks
    app: Any
    calls: CallRegistry
    media_metrics: MediaMetrics

    @property
    def client(self) -> Any:
        return self.app.test_client()

    async def customer(self, role: Role = "customer_admin") -> tuple[str, dict[str, str]]:
        """A fresh customer and the headers of an access key with ``role``."""
        import uuid as _uuid

        cid = str(_uuid.uuid4())
        await self.services.store.insert(
            "customers", {"id": cid, "customer_id": cid, "name": f"c-{cid[:8]}"}
        )
        _, token = await create_access_key(self.services.store, cid, role, "test")
        return cid, {"Authorization": f"AccessKey {token}"}

    async def key(self, customer_id: str, role: Role, expire: str | None = None) -> dict[str, str]:
        _, token = await create_access_key(
            self.services.store,
            customer_id,
            role,
            "k",
            expire,
        )
        return {"Authorization": f"AccessKey {token}"}


async def open_plane_for(kind: str, tmp_path: object, **overrides: Any) -> Any:
    """An async context manager yielding a :class:`Plane` on ``kind`` storage."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def cm() -> Any:
        prefix = f"t{uuid.uuid4().hex[:8]}_"
        if kind == "sqlite":
            cfg = ControlConfig(
                db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/plane.db"),
                db_prefix=prefix,
                jwt_secret="test-secret",
                webhook_backoff_s=0.01,
                **overrides,
            )
        else:
            url = DatabaseUrl.parse(MYSQL_URL)
            require_service("MariaDB", url.host, url.port)
            require_service("Redis", "127.0.0.1", 6379)
            cfg = ControlConfig(
                db=url,
                db_prefix=prefix,
                redis=REDIS_URL,
                jwt_secret="test-secret",
                webhook_backoff_s=0.01,
                **overrides,
            )
            b = AsyncioBridge()
            async with open_database(url, prefix, b) as database:
                await migrate(database)
            b.close()
        calls = CallRegistry()
        metrics = MediaMetrics(CollectorRegistry())
        try:
            async with open_services(cfg, calls, metrics) as (services, hooks, _nursery):
                yield Plane(services, hooks, create_app(services, metrics), calls, metrics)
        finally:
            # dropped after the services (webhook workers included) have stopped
            with trio.CancelScope(shield=True):
                bridge = AsyncioBridge()
                async with open_database(cfg.db, prefix, bridge) as database:
                    await drop_all(database)
                bridge.close()

    return cm()


# -- a webhook receiver on loopback, and an independent signature verifier ----------------------
@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    status_after: int = 200
    delay_s: float = 0.0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """An independent verifier, written from the documented scheme only."""
    ts = headers["X-Timestamp"]
    if abs(time.time() - int(ts)) > tolerance_s:
        return False
    expected = (
        "sha256=" + hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers["X-Signature"])


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> AsyncIterator[Receiver]:
    """A real HTTP server (Hypercorn) recording webhook POSTs; can fail, delay, or refuse."""
    app = QuartTrio("receiver")
    rec = Receiver("")

    @app.post("/hook")
    async def hook() -> tuple[str, int]:
        rec.received.append((dict(request.headers), await request.get_data(as_text=False)))
        if rec.delay_s:
            await trio.sleep(rec.delay_s)
        if len(rec.received) <= rec.fail_first:
            return "nope", 500
        rec.arrived.set()
        return json.dumps({"ok": True, "n": len(rec.received)}), rec.status_after

    cfg = HypercornConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    binds = await nursery.start(serve, app, cfg)
    rec.url = binds[0] + "/hook"
    yield rec


@pytest.fixture(params=["sqlite", "mysql+redis"])
async def plane(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Plane]:
    async with await open_plane_for(request.param, tmp_path) as p:
        yield p
