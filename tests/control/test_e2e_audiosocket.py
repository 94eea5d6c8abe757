"""A real call through AudioSocket with the whole control plane on real sockets: it shows up in
``GET /v1.0/calls``, its events reach a WebSocket subscriber and a webhook receiver, and
``POST /v1.0/calls/{id}/hangup`` ends it (the Asterisk-like peer sees its socket close)."""

from __future__ import annotations

import json
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
import trio
from conftest import MYSQL_URL, REDIS_URL, Receiver, require_service, verify
from prometheus_client import CollectorRegistry
from websockets.sync.client import connect as ws_connect

from ai_pipeline.echo import echo_call
from control.bootstrap import create_access_key, ensure_bootstrap
from control.bridge import AsyncioBridge
from control.config import ControlConfig
from control.db import DatabaseUrl, open_database
from control.db.migrate import drop_all, migrate
from control.plane import open_control_plane
from control.store import Store
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import agent_in_thread, tone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, auth: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


def _ws_collect(url: str, auth: str, topic: str, ready: Any, until: str) -> list[Any]:
    events = []
    with ws_connect(url, additional_headers={"Authorization": auth}, open_timeout=5) as ws:
        ws.send(json.dumps({"type": "subscribe", "topics": [topic]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
        ready()
        while True:
            msg = json.loads(ws.recv(timeout=15))
            if msg["type"] == "event":
                events.append(msg["event"])
                if msg["event"]["type"] == until:
                    return events


@pytest.fixture(params=["sqlite", "mysql+redis"])
async def e2e_config(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Any]:
    """Zero-config SQLite, or MariaDB + Redis migrated and bootstrapped the operator's way."""
    http = HostPort("127.0.0.1", _free_port())
    if request.param == "sqlite":
        yield ControlConfig(http=http, db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/e2e.db"))
        return
    url = DatabaseUrl.parse(MYSQL_URL)
    require_service("MariaDB", url.host, url.port)
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"e{uuid.uuid4().hex[:8]}_"
    bridge = AsyncioBridge()
    try:
        async with open_database(url, prefix, bridge) as db:
            await migrate(db)
            await ensure_bootstrap(Store(db))
            yield ControlConfig(http=http, db=url, db_prefix=prefix, redis=REDIS_URL)
            with trio.CancelScope(shield=True):
                await drop_all(db)
    finally:
        bridge.close()


async def test_call_through_audiosocket_end_to_end(
    nursery: trio.Nursery, e2e_config: ControlConfig, receiver: Receiver
) -> None:
    cfg = e2e_config
    http = cfg.http
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    base = f"http://{http}"
    with agent_in_thread(echo_call) as agent_url:
        async with open_control_plane(cfg, calls, metrics, nursery) as hooks:
            store = hooks.store  # type: ignore[attr-defined]
            (customer,) = await store.find("customers", name="default")
            _, token = await create_access_key(store, customer["id"], "customer_admin", "e2e")
            auth = f"AccessKey {token}"
            status, hook = await trio.to_thread.run_sync(
                _http, "POST", f"{base}/v1.0/webhooks", auth, {"url": receiver.url}
            )
            assert status == 201

            media_cfg = replace(MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url))
            env = CallEnv(config=media_cfg, hooks=hooks, metrics=metrics, registry=calls)
            as_port = await nursery.start(serve_audiosocket, env)

            subscribed = trio.Event()
            token_ = trio.lowlevel.current_trio_token()
            ws_events: list[Any] = []

            async def subscriber() -> None:
                ws_events.extend(
                    await trio.to_thread.run_sync(
                        _ws_collect,
                        f"ws://{http}/v1.0/ws",
                        auth,
                        f"customer_id:{customer['id']}:call:*",
                        lambda: token_.run_sync_soon(subscribed.set),
                        "call_hungup",
                    )
                )

            async with trio.open_nursery() as inner:
                inner.start_soon(subscriber)
                with trio.fail_after(5):
                    await subscribed.wait()
                peer = await AsteriskPeer.connect(as_port)
                inner.start_soon(peer.read_until_closed)
                inner.start_soon(peer.play, tone(440, 8.0))
                with trio.fail_after(10):
                    while True:
                        _, listing = await trio.to_thread.run_sync(
                            _http, "GET", f"{base}/v1.0/calls?status=progressing", auth
                        )
                        if listing["result"]:
                            break
                        await trio.sleep(0.1)
                (call,) = listing["result"]
                assert call["leg"] == "audiosocket"
                assert call["leg_ref"] == str(peer.call_uuid)
                status, _ = await trio.to_thread.run_sync(
                    _http, "POST", f"{base}/v1.0/calls/{call['id']}/hangup", auth
                )
                assert status == 200
                with trio.fail_after(10):
                    while peer.closed_at is None:
                        await trio.sleep(0.05)
                inner.cancel_scope.deadline = trio.current_time() + 15

            assert [e["type"] for e in ws_events][:2] == ["call_created", "call_answered"]
            assert ws_events[-1]["type"] == "call_hungup"
            assert ws_events[-1]["data"]["hangup_cause"] == "api"
            _, row = await trio.to_thread.run_sync(
                _http, "GET", f"{base}/v1.0/calls/{call['id']}", auth
            )
            assert row["status"] == "hangup" and row["duration_ms"] > 0
            with trio.fail_after(5):
                while len(receiver.received) < 3:
                    await trio.sleep(0.05)
            types = [json.loads(b)["type"] for _, b in receiver.received]
            assert {"call_created", "call_answered", "call_hungup"} <= set(types)
            assert all(verify(hook["secret"], h, b) for h, b in receiver.received)
