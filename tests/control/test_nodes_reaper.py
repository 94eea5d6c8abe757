"""Reaping a dead node's calls, on SQLite and on MariaDB: however many survivors race for the same
rows, each call ends once with one ``call_hungup`` event; a live holder's and another node's calls
are left alone; a node paused past its TTL hangs up the calls survivors ended meanwhile; no node
judges others before its own heartbeat has lived a whole TTL; the conferences the dead node's loss
emptied end once."""

from __future__ import annotations

import trio
from conftest import REDIS_URL, FakeCall, require_service
from prometheus_client import CollectorRegistry, Counter, Histogram

from control.bridge import AsyncioBridge
from control.call_commands import Holder
from control.call_end import end_call_once
from control.db import Database
from control.events import EventBus
from control.hooks import ControlHooks
from control.nodes import NodeHeartbeat
from control.redis_link import RedisLink
from control.store import Store
from control.tools import ToolExecutor
from media.registry import CallRegistry

DEAD = Holder("node-dead")


async def _calls(store: Store, holder: Holder, n: int, status: str = "progressing") -> list[str]:
    ids = []
    for _ in range(n):
        row = await store.insert(
            "calls",
            {
                "customer_id": "c1",
                "agent_id": "a1",
                "leg": "audiosocket",
                "leg_ref": "",
                "direction": "incoming",
                "source": "",
                "destination": "",
                "status": status,
                "hangup_cause": "",
                "hangup_reason": "",
                "duration_ms": 0,
                "tm_answer": None,
                "tm_hangup": None,
                "node_id": holder.node_id,
                "worker_id": holder.worker_id,
            },
        )
        ids.append(row["id"])
    return ids


def _survivor(store: Store, name: str, calls: CallRegistry | None = None) -> NodeHeartbeat:
    drops = Counter("drops", "", registry=CollectorRegistry())
    bus = EventBus(store, drops)
    return NodeHeartbeat(store, bus, None, Holder(name), calls or CallRegistry(), ttl_s=3)


async def _hungup_events(db: Database) -> list[str]:
    rows = await db.fetch_all("SELECT resource_id FROM {p}events WHERE type = 'call_hungup'")
    return sorted(r["resource_id"] for r in rows)


async def test_racing_survivors_end_each_call_once(db: Database) -> None:
    store = Store(db)
    dead = await _calls(store, DEAD, 20)
    other = await _calls(store, Holder("node-dead", worker_id=1), 2)  # another worker: alive
    survivors = [_survivor(store, f"survivor-{i}") for i in range(3)]
    ended: list[int] = []

    async def reap(node: NodeHeartbeat) -> None:
        ended.append(await node.reap(DEAD, "node node-dead/0 stopped answering its heartbeat"))

    async with trio.open_nursery() as nursery:
        for node in survivors:
            nursery.start_soon(reap, node)
    assert sum(ended) == 20
    assert await _hungup_events(db) == sorted(dead)
    for call_id in dead:
        row = await store.get("calls", call_id, None)
        assert row is not None and (row["status"], row["hangup_cause"]) == ("hangup", "node_lost")
    for call_id in other:
        row = await store.get("calls", call_id, None)
        assert row is not None and row["status"] == "progressing"


async def _conference(store: Store, *calls: tuple[str, str]) -> str:
    """A live conference with a seat per (call id, seat status)."""
    conference = await store.insert(
        "conferences", {"customer_id": "c1", "name": "room", "status": "progressing"}
    )
    for call_id, status in calls:
        await store.insert(
            "participants",
            {"customer_id": "c1", "conference_id": conference["id"], "call_id": call_id,
             "status": status},
        )  # fmt: skip
    return str(conference["id"])


async def _events(db: Database, kind: str) -> list[str]:
    rows = await db.fetch_all("SELECT resource_id FROM {p}events WHERE type = ?", [kind])
    return sorted(r["resource_id"] for r in rows)


async def test_reaped_calls_leave_their_conferences_and_emptied_ones_end_once(
    db: Database,
) -> None:
    """The dead node's bridges died with it: a conference its loss emptied is ended (one
    conference_ended), one that still has a joined seat elsewhere, or was empty already, is not."""
    store = Store(db)
    first, second, earlier = await _calls(store, DEAD, 3)
    (elsewhere,) = await _calls(store, Holder("node-alive"), 1)
    emptied = await _conference(store, (first, "joined"), (second, "joined"))
    shared = await _conference(store, (first, "joined"), (elsewhere, "joined"))
    idle = await _conference(store, (earlier, "left"))  # empty before the loss: nobody's
    survivors = [_survivor(store, f"survivor-{i}") for i in range(3)]
    async with trio.open_nursery() as nursery:
        for node in survivors:
            nursery.start_soon(node.reap, DEAD, "node node-dead/0 stopped answering")
    for call_id in (first, second):
        for seat in await store.find("participants", call_id=call_id):
            assert seat["status"] == "left" and seat["tm_leave"], seat
    (kept,) = await store.find("participants", call_id=elsewhere)
    assert kept["status"] == "joined"
    status = {c: (await store.get("conferences", c, None) or {}).get("status") for c in
              (emptied, shared, idle)}  # fmt: skip
    assert status == {emptied: "ended", shared: "progressing", idle: "progressing"}
    assert await _events(db, "conference_ended") == [emptied]
    removed = await _events(db, "conference_participant_removed")  # one per seat, by conference
    assert removed == sorted([emptied, emptied, shared])


async def test_a_conference_whose_bridge_the_dead_node_held_ends_with_it(db: Database) -> None:
    """Its bridge died with its holder (control/conference_links.py): the conference ends once and
    every seat leaves, a linked call's on another node included; another holder's goes on."""
    store = Store(db)
    (mine,) = await _calls(store, DEAD, 1)
    linked, other = await _calls(store, Holder("node-alive"), 2)
    held = await _conference(store, (mine, "joined"), (linked, "joined"))
    elsewhere = await _conference(store, (other, "joined"))
    for conference_id, holder in ((held, DEAD), (elsewhere, Holder("node-alive"))):
        values = {"node_id": holder.node_id, "worker_id": holder.worker_id}
        await store.update("conferences", conference_id, "c1", values)
    survivors = [_survivor(store, f"survivor-{i}") for i in range(3)]
    async with trio.open_nursery() as nursery:
        for node in survivors:
            nursery.start_soon(node.reap, DEAD, "node node-dead/0 stopped answering")
    status = {c: (await store.get("conferences", c, None) or {}).get("status") for c in
              (held, elsewhere)}  # fmt: skip
    assert status == {held: "ended", elsewhere: "progressing"}
    seats = {
        s["call_id"]: s["status"] for s in await store.find("participants", conference_id=held)
    }
    assert seats == {mine: "left", linked: "left"}
    assert await _events(db, "conference_ended") == [held]
    assert await _events(db, "conference_participant_removed") == [held, held]


async def test_a_holder_ending_a_reaped_call_late_sends_no_second_event(db: Database) -> None:
    store = Store(db)
    (call_id,) = await _calls(store, DEAD, 1)
    survivor = _survivor(store, "survivor")
    assert await survivor.reap(DEAD, "node node-dead/0 stopped answering its heartbeat") == 1
    latency = Histogram("t", "", registry=CollectorRegistry())
    tools = ToolExecutor(store, survivor.bus.publish, latency)
    await ControlHooks(store, survivor.bus, tools).call_hungup(call_id, "caller", "woke up late")
    assert await _hungup_events(db) == [call_id]
    row = await store.get("calls", call_id, None)
    assert row is not None and row["hangup_cause"] == "node_lost"


async def test_a_node_paused_past_its_ttl_hangs_up_the_calls_survivors_ended(
    db: Database,
) -> None:
    store = Store(db)
    me = Holder("node-paused")
    reaped, kept = await _calls(store, me, 2)
    registry = CallRegistry()
    registry.add(FakeCall(reaped))
    registry.add(FakeCall(kept))
    assert await end_call_once(store, reaped, "node_lost", "a survivor reaped it", (me.node_id, 0))
    await _survivor(store, "node-paused", registry).hang_up_reaped_calls()
    assert registry.get(reaped).actions == [("hangup", "node_lost")]  # type: ignore[union-attr]
    assert registry.get(kept).actions == []  # type: ignore[union-attr]


async def test_no_node_reaps_before_its_own_key_lived_a_whole_ttl(
    db: Database, bridge: AsyncioBridge
) -> None:
    """A node just started, or back after Redis lost every key (restart, FLUSHALL), sees every
    other node's key missing: it must wait until they have all had the time to beat again."""
    require_service("Redis", "127.0.0.1", 6379)
    redis = RedisLink(REDIS_URL, bridge)
    await redis.open()
    store = Store(db)
    others = await _calls(store, Holder("node-other"), 3)
    me = _survivor(store, "node-me")
    me.redis, me.ttl_s = redis, 1.0
    try:
        await me.beat()  # a fresh start
        assert await me.reap_lapsed() == 0
        for _ in range(4):  # beats at a third of the TTL, for more than a TTL
            await trio.sleep(0.3)
            await me.beat()
        await redis.delete(me.key(me.me))  # Redis lost its keys
        await me.beat()
        assert await me.reap_lapsed() == 0
        for call_id in others:
            row = await store.get("calls", call_id, None)
            assert row is not None and row["status"] == "progressing"
        for _ in range(4):
            await trio.sleep(0.3)
            await me.beat()
        assert await me.reap_lapsed() == 3  # node-other never came back: now it is reaped
    finally:
        await redis.delete(me.key(me.me))
        await redis.aclose()
