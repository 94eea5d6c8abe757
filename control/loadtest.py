"""Control-plane latency under steady load: ``python -m control.loadtest [--db URL --redis URL]``.

The server (this process, Trio, the real Hypercorn + Quart-Trio stack and storage) is loaded by a
second process that sends GET ``/v1.0/calls/{id}`` and POST ``/v1.0/conferences`` on an open-loop
schedule (a fixed rate, not as-fast-as-possible, so latency is not hidden by coordinated omission)
and holds a WebSocket subscription. Meanwhile the server changes call states through the hooks the
media core uses; the event latency is from just before the hook call to the WebSocket client's
receipt (both stamp ``time.time()`` on the same machine). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio
from prometheus_client import CollectorRegistry

from control.bootstrap import create_access_key, ensure_bootstrap
from control.bridge import AsyncioBridge
from control.config import ControlConfig
from control.db import DatabaseUrl, open_database
from control.db.migrate import drop_all, migrate
from media.config import HostPort
from media.hooks import CallInfo
from media.metrics import MediaMetrics
from media.registry import CallRegistry

CLIENT_CONNECTIONS = 8


def _percentiles(values_s: list[float]) -> dict[str, float]:
    if not values_s:
        return {"n": 0}
    ordered = sorted(values_s)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)}


# -- the load process -----------------------------------------------------------------------------
def client_main(
    port: int,
    auth: str,
    call_id: str,
    rate_per_s: float,
    seconds: float,
    topic: str,
    events_expected: int,
) -> None:
    received: dict[str, float] = {}
    ready = threading.Event()

    def subscriber() -> None:
        from websockets.sync.client import connect

        with connect(
            f"ws://127.0.0.1:{port}/v1.0/ws", additional_headers={"Authorization": auth}
        ) as ws:
            ws.send(json.dumps({"type": "subscribe", "topics": [topic]}))
            ws.recv(timeout=5)
            ready.set()
            while len(received) < events_expected:
                try:
                    msg = json.loads(ws.recv(timeout=seconds + 10))
                except TimeoutError:
                    return
                if msg.get("type") == "event" and msg["event"]["type"] == "call_answered":
                    received[msg["event"]["resource_id"]] = time.time()

    sub = threading.Thread(target=subscriber, daemon=True)
    sub.start()
    ready.wait(10)
    print(json.dumps({"ready": True}), flush=True)
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    lat: dict[str, list[float]] = {"GET": [], "POST": []}
    errors = [0]
    n = int(rate_per_s * seconds)
    start = time.perf_counter() + 0.5
    lock = threading.Lock()

    def worker(k: int) -> None:
        # Slot i goes to worker i % CLIENT_CONNECTIONS: a slow answer delays only its own
        # connection, and each request's latency still counts from its scheduled slot.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(5):  # warm-up (first connection, caches): not measured
            conn.request("GET", f"/v1.0/calls/{call_id}", headers=headers)
            conn.getresponse().read()
        for i in range(k, n, CLIENT_CONNECTIONS):
            slot = start + i / rate_per_s
            delay = slot - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            method = "GET" if i % 2 == 0 else "POST"
            path = f"/v1.0/calls/{call_id}" if method == "GET" else "/v1.0/conferences"
            body = None if method == "GET" else json.dumps({"name": f"load {i}"})
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            with lock:
                lat[method].append(time.perf_counter() - slot)
                errors[0] += resp.status >= 400

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENT_CONNECTIONS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    sub.join(seconds + 15)
    print(
        json.dumps(
            {
                "GET": _percentiles(lat["GET"]),
                "POST": _percentiles(lat["POST"]),
                "errors": errors[0],
                "received": received,
            }
        ),
        flush=True,
    )


# -- the server process ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def server_main(db_url: str, redis: str, rate_per_s: float, seconds: float) -> dict[str, Any]:
    from hypercorn.config import Config as HypercornConfig

    from control.hypercorn_guard import serve
    from control.plane import create_app, open_services

    prefix = f"load{uuid.uuid4().hex[:6]}_"
    url = DatabaseUrl.parse(db_url)
    if url.dialect == "mysql":
        bridge = AsyncioBridge()
        async with open_database(url, prefix, bridge) as db:
            await migrate(db)
        bridge.close()
    port = _free_port()
    cfg = ControlConfig(
        http=HostPort("127.0.0.1", port),
        db=url,
        db_prefix=prefix,
        redis=redis,
        rate_per_s=10_000,
        rate_burst=10_000,
    )
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    async with open_services(cfg, calls, metrics) as (services, hooks, nursery):
        hc = HypercornConfig()
        hc.bind = [f"127.0.0.1:{port}"]
        hc.accesslog = None
        await nursery.start(serve, create_app(services, metrics), hc)
        customer_id = (await ensure_bootstrap(services.store)).customer_id
        _, token = await create_access_key(services.store, customer_id, "customer_admin", "l")
        first = str(uuid.uuid4())
        await hooks.call_created(CallInfo(first, "audiosocket"))
        n_events = int(seconds * 10)
        cmd = [
            sys.executable,
            "-m",
            "control.loadtest",
            "--client",
            str(port),
            f"AccessKey {token}",
            first,
            str(rate_per_s),
            str(seconds),
            f"customer_id:{customer_id}:call:*",
            str(n_events),
        ]
        proc = await trio.to_thread.run_sync(
            lambda: subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        )
        assert proc.stdout is not None
        await trio.to_thread.run_sync(proc.stdout.readline)  # subscribed
        changed: dict[str, float] = {}

        class _Handle:
            leg = "audiosocket"

            def __init__(self, call_id: str) -> None:
                self.call_id = call_id

        for _ in range(n_events):
            call_id = str(uuid.uuid4())
            await hooks.call_created(CallInfo(call_id, "audiosocket"))
            changed[call_id] = time.time()
            await hooks.call_answered(_Handle(call_id))  # type: ignore[arg-type]
            await trio.sleep(seconds / n_events)
        out = json.loads((await trio.to_thread.run_sync(proc.communicate))[0].splitlines()[-1])
        lat = [out["received"][k] - t for k, t in changed.items() if k in out["received"]]
        result = {
            "db": url.dialect,
            "redis": bool(redis),
            "rate_per_s": rate_per_s,
            "seconds": seconds,
            "GET": out["GET"],
            "POST": out["POST"],
            "errors": out["errors"],
            "event_to_ws": _percentiles(lat),
            "events_lost": n_events - len(lat),
        }
        with trio.CancelScope(shield=True):
            await drop_all(services.db)
        nursery.cancel_scope.cancel()
    return result


# -- the Trio -> asyncio bridge's own cost ---------------------------------------------------------
def bridge_overhead(db_url: str, queries: int) -> dict[str, Any]:
    """``SELECT 1`` on asyncmy: plain asyncio vs. from Trio through :class:`AsyncioBridge`."""
    import asyncio

    import asyncmy
    from asyncmy.cursors import DictCursor

    url = DatabaseUrl.parse(db_url)
    sql = "SET STATEMENT max_statement_time=5 FOR SELECT 1 AS ok"

    async def plain() -> None:
        pool = await asyncmy.create_pool(
            host=url.host,
            port=url.port,
            user=url.user,
            password=url.password,
            db=url.database,
            maxsize=4,
        )
        for _ in range(queries):
            async with pool.acquire() as conn, conn.cursor(DictCursor) as cur:
                await cur.execute(sql)  # the same statement the backend sends
                await cur.fetchall()
        pool.close()
        await pool.wait_closed()

    async def bridged() -> None:
        bridge = AsyncioBridge()
        async with open_database(url, "", bridge) as db:
            for _ in range(queries):
                await db.fetch_all("SELECT 1 AS ok")
        bridge.close()

    def run_plain() -> None:
        asyncio.run(plain())

    def run_bridged() -> None:
        trio.run(bridged)

    out: dict[str, Any] = {"queries": queries}
    runs: tuple[tuple[str, Callable[[], None]], ...] = (
        ("asyncio", run_plain),
        ("trio_bridge", run_bridged),
    )
    for name, run in runs:
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        out[name] = {
            "wall_us_per_query": round((time.perf_counter() - wall) / queries * 1e6, 1),
            "cpu_us_per_query": round((time.process_time() - cpu) / queries * 1e6, 1),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--client":
        p, auth, call_id, rate, secs, topic, n = args[1:8]
        client_main(int(p), auth, call_id, float(rate), float(secs), topic, int(n))
        return 0
    parser = argparse.ArgumentParser(prog="python -m control.loadtest")
    parser.add_argument("--db", default="")
    parser.add_argument("--redis", default="")
    parser.add_argument("--rate-per-s", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--bridge-queries",
        type=int,
        default=0,
        help="instead: measure the asyncio bridge on --db (MariaDB) this many times",
    )
    ns = parser.parse_args(args)
    if ns.bridge_queries:
        print(json.dumps(bridge_overhead(ns.db, ns.bridge_queries), indent=2))
        return 0
    db = ns.db
    if not db:
        import tempfile

        db = f"sqlite:///{tempfile.mkdtemp()}/load.db"
    result = trio.run(server_main, db, ns.redis, ns.rate_per_s, ns.seconds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
