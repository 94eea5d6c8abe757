"""One customer's dead webhook endpoint does not slow another's deliveries; order per webhook holds
through retries (issue 11 item 7). Real receivers (Hypercorn on loopback), real dispatcher and
storage; waits are on events, bounded by a fraction of the first retry delay."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from conftest import Plane, open_plane_for
from live import serve_app
from prometheus_client import CollectorRegistry, Counter
from quart import request
from quart_trio import QuartTrio

from control.webhooks import WebhookDispatcher

RETRY_S = 10.0  # the first retry delay of the dispatcher under test


@dataclass
class Endpoint:
    """A webhook receiver: answers ``fail_first`` 503s, then 200; records event ids in order."""

    url: str = ""
    fail_first: int = 0
    seen: list[str] = field(default_factory=list)
    want: int = 0
    got_all: trio.Event = field(default_factory=trio.Event)

    async def start(self, nursery: trio.Nursery) -> Endpoint:
        app = QuartTrio("endpoint")

        @app.post("/hook")
        async def hook() -> tuple[str, int]:
            self.seen.append(json.loads(await request.get_data())["id"])
            if len(self.seen) <= self.fail_first:
                return "down", 503
            if len(self.seen) - self.fail_first >= self.want:
                self.got_all.set()
            return "ok", 200

        self.url = f"http://127.0.0.1:{await serve_app(nursery, app)}/hook"
        return self


@pytest.fixture
async def plane(tmp_path: object) -> AsyncIterator[Plane]:
    async with await open_plane_for("sqlite", tmp_path) as p:
        yield p


async def _dispatcher(plane: Plane, nursery: trio.Nursery, backoff_s: float) -> WebhookDispatcher:
    drops = Counter("drops", "dropped deliveries", registry=CollectorRegistry())
    dispatcher = WebhookDispatcher(plane.services.store, 5, backoff_s, 2.0, drops, workers=4)
    await nursery.start(dispatcher.run)
    return dispatcher


async def _webhook(plane: Plane, url: str) -> str:
    cid, _ = await plane.customer()
    await plane.services.store.insert(
        "webhooks", {"customer_id": cid, "url": url, "secret": "s", "event_types": []}
    )
    return cid


def _event(customer_id: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "type": "call_created", "customer_id": customer_id}


async def test_a_dead_endpoint_does_not_delay_another_customers_deliveries(
    plane: Plane, nursery: trio.Nursery
) -> None:
    dead = await Endpoint(fail_first=10**6).start(nursery)
    live = await Endpoint(want=8).start(nursery)
    dispatcher = await _dispatcher(plane, nursery, RETRY_S)
    dead_customer, live_customer = await _webhook(plane, dead.url), await _webhook(plane, live.url)
    for _ in range(8):  # the dead one's events first: enough to occupy every worker twice
        await dispatcher.offer(_event(dead_customer))
    live_events = [_event(live_customer) for _ in range(8)]
    for event in live_events:
        await dispatcher.offer(event)
    # Before the fix the workers slept out the dead endpoint's retries (10 s, 20 s...) first.
    with trio.fail_after(RETRY_S / 2):
        await live.got_all.wait()
    assert live.seen == [e["id"] for e in live_events]
    assert len(dead.seen) == 1  # its later events wait behind its own pending retry


async def test_order_per_webhook_holds_through_a_retry(plane: Plane, nursery: trio.Nursery) -> None:
    flaky = await Endpoint(fail_first=1, want=3).start(nursery)
    dispatcher = await _dispatcher(plane, nursery, 0.05)
    customer = await _webhook(plane, flaky.url)
    events = [_event(customer) for _ in range(3)]
    for event in events:
        await dispatcher.offer(event)
    with trio.fail_after(RETRY_S):
        await flaky.got_all.wait()
    first, second, third = (e["id"] for e in events)
    assert flaky.seen == [first, first, second, third]
    rows = await plane.services.store.find("deliveries", event_id=first)
    assert sorted((r["attempt"], r["status"]) for r in rows) == [(1, "retrying"), (2, "delivered")]
