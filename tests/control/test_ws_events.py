"""Events to WebSocket subscribers: auth, topic isolation, ping; Redis fan-out across nodes."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio
from conftest import REDIS_URL, FakeCall, Plane, require_service

from control.bridge import AsyncioBridge
from control.events import EventBus, TopicError, check_patterns, topic_of
from control.redis_link import RedisLink
from media.hooks import CallInfo


async def _recv(ws: Any, timeout_s: float = 3.0) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        msg: dict[str, Any] = json.loads(await ws.receive())
        return msg


async def _default_agent(plane: Plane, cid: str, number: str) -> None:
    agent = await plane.services.store.insert(
        "agents", {"customer_id": cid, "name": "a", "is_default": 1, "detail": {}}
    )
    await plane.services.store.insert(
        "agent_routes",
        {"customer_id": cid, "agent_id": agent["id"], "kind": "number", "value": number},
    )


def test_topics() -> None:
    assert topic_of("c1", "call_created", "x") == "customer_id:c1:call:x"
    assert topic_of("c1", "transcript_created", "x") == "customer_id:c1:call:x"
    assert topic_of("c1", "conference_participant_added", "k") == "customer_id:c1:conference:k"
    assert check_patterns("c1", ["customer_id:c1:call:*"]) == ["customer_id:c1:call:*"]
    for bad in (["customer_id:c2:call:*"], ["*"], ["customer_id:c1"], [3]):
        with pytest.raises(TopicError):
            check_patterns("c1", bad)  # type: ignore[arg-type]


async def test_subscriber_sees_own_events_only(plane: Plane) -> None:
    a_id, a_auth = await plane.customer()
    b_id, b_auth = await plane.customer()
    await _default_agent(plane, a_id, "+15550000001")
    await _default_agent(plane, b_id, "+15550000002")
    client = plane.client
    async with (
        client.websocket("/v1.0/ws", headers=a_auth) as wa,
        client.websocket("/v1.0/ws", headers=b_auth) as wb,
    ):
        await wa.send(json.dumps({"type": "subscribe", "topics": [f"customer_id:{a_id}:call:*"]}))
        assert (await _recv(wa))["type"] == "subscribed"
        await wb.send(json.dumps({"type": "subscribe", "topics": [f"customer_id:{a_id}:call:*"]}))
        assert "not under" in (await _recv(wb))["message"]  # refused: another customer
        await wb.send(json.dumps({"type": "subscribe", "topics": [f"customer_id:{b_id}:*"]}))
        assert (await _recv(wb))["type"] == "subscribed"
        await wb.send("not json")
        assert (await _recv(wb))["message"] == "malformed JSON"

        call_a, call_b = str(uuid.uuid4()), str(uuid.uuid4())
        await plane.hooks.call_created(CallInfo(call_a, "sip", callee="+15550000001"))
        await plane.hooks.call_created(CallInfo(call_b, "sip", callee="+15550000002"))
        await plane.hooks.transcript(call_a, "user", "hello there", True)
        await plane.hooks.call_answered(FakeCall(call_a))
        frames = [await _recv(wa) for _ in range(3)]
        assert [f["type"] for f in frames] == ["event"] * 3
        got_a = [f["event"] for f in frames]
        assert [e["type"] for e in got_a] == ["call_created", "transcript_created", "call_answered"]
        assert got_a[1]["data"]["text"] == "hello there"
        assert {e["resource_id"] for e in got_a} == {call_a}
        assert all(e["customer_id"] == a_id for e in got_a)
        got_b = (await _recv(wb))["event"]
        assert got_b["resource_id"] == call_b and got_b["customer_id"] == b_id
        with trio.move_on_after(0.3):
            extra = await wb.receive()
            pytest.fail(f"customer b saw {extra}")


async def test_ws_rejects_bad_credentials(plane: Plane) -> None:
    async with plane.client.websocket(
        "/v1.0/ws", headers={"Authorization": "AccessKey ak_bad"}
    ) as ws:
        msg = await _recv(ws)
        assert msg["type"] == "error"


async def test_ws_auth_by_first_message_and_ping(tmp_path: object) -> None:
    from conftest import open_plane_for

    async with await open_plane_for("sqlite", tmp_path, ws_ping_s=0.1, ws_dead_s=0.35) as p:
        _, auth = await p.customer()
        async with p.client.websocket("/v1.0/ws") as ws:
            await ws.send(json.dumps({"type": "auth", "authorization": auth["Authorization"]}))
            assert (await _recv(ws))["type"] == "ping"
            await ws.send(json.dumps({"type": "pong"}))
            assert (await _recv(ws))["type"] == "ping"
            # stay silent: the server gives up after ws_dead_s
            with trio.fail_after(2):
                while True:
                    try:
                        await ws.receive()
                    except Exception as exc:  # the test client raises on server close
                        assert "4408" in repr(exc) or "Disconnect" in type(exc).__name__
                        break


async def test_redis_fans_events_out_across_nodes(tmp_path: object) -> None:
    from conftest import open_plane_for

    async with await open_plane_for("mysql+redis", tmp_path) as plane:
        await _two_nodes(plane)


async def _two_nodes(plane: Plane) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    # a second "node": its own bridge, Redis connection and bus on the same channel
    bridge = AsyncioBridge()
    other = RedisLink(REDIS_URL, bridge)
    await other.open()
    try:
        from prometheus_client import CollectorRegistry, Counter

        node2 = EventBus(
            plane.services.store,
            Counter("d", "d", registry=CollectorRegistry()),
            redis=other,
            channel=plane.services.bus.channel,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(other.listen, node2.channel, node2.on_redis_message)
            cid = str(uuid.uuid4())
            with node2.subscribe(cid) as sub:
                sub.patterns.append(f"customer_id:{cid}:conference:*")
                await plane.services.bus.publish(cid, "conference_created", "r1", {"n": 1})
                await plane.services.bus.publish("someone-else", "conference_created", "r2", {})
                with trio.fail_after(3):
                    event = await sub.receive.receive()
                assert event["resource_id"] == "r1" and event["customer_id"] == cid
                with trio.move_on_after(0.2):
                    pytest.fail(f"leaked {await sub.receive.receive()}")
            nursery.cancel_scope.cancel()
    finally:
        await other.aclose()
        bridge.close()


async def test_a_disabled_customers_subscriptions_end_after_its_event_and_take_no_more(
    plane: Plane,
) -> None:
    """Ended, a subscription stays registered until its socket goes: later events of its
    customer must pass it by, not fail their publisher."""
    bus, cid = plane.services.bus, str(uuid.uuid4())
    with bus.subscribe(cid) as sub, bus.subscribe(str(uuid.uuid4())) as other:
        sub.patterns.append(f"customer_id:{cid}:*")
        await bus.publish(cid, "customer_disabled", cid, {})
        await bus.publish(cid, "call_hungup", "c1", {})  # a call ended after the disable
        with trio.fail_after(10):
            received = [event["type"] async for event in sub.receive]
        assert received == ["customer_disabled"] and sub.ended == "customer disabled"
        assert not other.ended
