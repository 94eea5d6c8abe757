"""Webhook delivery and webhook tools against a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio
from conftest import AGENT_TOOLS, FakeCall, Plane, Receiver, verify

from control.webhooks import sign
from media.hooks import CallInfo


def test_sign_matches_independent_verifier() -> None:
    body = b'{"a":1}'
    ts = str(int(time.time()))
    headers = {"X-Timestamp": ts, "X-Signature": sign("s3cret", ts, body)}
    assert verify("s3cret", headers, body)
    assert not verify("other", headers, body)
    assert not verify("s3cret", headers, body + b" ")
    assert not verify("s3cret", {**headers, "X-Timestamp": str(int(ts) - 1000)}, body)


async def test_events_reach_a_webhook_signed(plane: Plane, receiver: Receiver) -> None:
    _, auth = await plane.customer()
    c = plane.client
    r = await c.post(
        "/v1.0/webhooks",
        json={"url": receiver.url, "event_types": ["conference_created"]},
        headers=auth,
    )
    hook = await r.get_json()
    assert hook["secret"].startswith("whsec_")
    conf = await (await c.post("/v1.0/conferences", json={"name": "room"}, headers=auth)).get_json()
    with trio.fail_after(5):
        await receiver.arrived.wait()
    ((headers, body),) = receiver.received
    assert verify(hook["secret"], headers, body)
    event = json.loads(body)
    assert headers["X-Event-Type"] == event["type"] == "conference_created"
    assert event["resource_id"] == conf["id"]
    await c.delete(f"/v1.0/conferences/{conf['id']}", headers=auth)  # conference_ended: filtered
    # A subscribed event published after it: the dispatcher takes jobs in order, so by the
    # time this one is delivered and recorded, an unfiltered conference_ended would have been.
    receiver.arrived = trio.Event()
    second = await (await c.post("/v1.0/conferences", json={"name": "b"}, headers=auth)).get_json()
    with trio.fail_after(5):
        await receiver.arrived.wait()
    rows = await _deliveries_when(plane, hook["id"], lambda rows: len(rows) >= 2)
    types = [json.loads(body)["type"] for _, body in receiver.received]
    assert types == ["conference_created", "conference_created"]
    assert [json.loads(body)["resource_id"] for _, body in receiver.received][1] == second["id"]
    assert len(rows) == 2
    r = await c.get(f"/v1.0/webhooks/{hook['id']}/deliveries", headers=auth)
    deliveries = (await r.get_json())["result"]
    assert [(d["status"], d["status_code"]) for d in deliveries] == [("delivered", 200)] * 2


async def _deliveries_when(
    plane: Plane, webhook_id: str, done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The webhook's delivery rows once ``done`` holds for them (each row is written after
    its attempt's answer, so it can trail what the receiver saw)."""
    with trio.fail_after(10):
        while not done(
            rows := await plane.services.store.find("deliveries", webhook_id=webhook_id)
        ):
            await trio.sleep(0.01)
    return rows


async def test_failing_receiver_is_retried_then_given_up(plane: Plane, receiver: Receiver) -> None:
    cid, auth = await plane.customer()
    c = plane.client
    receiver.fail_first = 2  # two 500s, then success
    hook = await (
        await c.post("/v1.0/webhooks", json={"url": receiver.url}, headers=auth)
    ).get_json()
    await plane.services.bus.publish(cid, "conference_created", str(uuid.uuid4()), {})
    with trio.fail_after(5):
        await receiver.arrived.wait()
    rows = await _deliveries_when(plane, hook["id"], lambda rows: len(rows) >= 3)
    assert [(d["attempt"], d["status"]) for d in rows] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "delivered"),
    ]
    assert all(verify(hook["secret"], h, b) for h, b in receiver.received)

    dead = await (
        await c.post("/v1.0/webhooks", json={"url": "http://127.0.0.1:9/dead"}, headers=auth)
    ).get_json()
    await plane.services.store.delete("webhooks", hook["id"], cid)
    await plane.services.bus.publish(cid, "conference_created", str(uuid.uuid4()), {})
    attempts = plane.services.cfg.webhook_attempts
    rows = await _deliveries_when(plane, dead["id"], lambda rows: len(rows) >= attempts)
    assert [d["status"] for d in rows] == ["retrying"] * (attempts - 1) + ["failed"]
    assert all(d["status_code"] == 0 and d["error"] for d in rows)


async def _live_call(plane: Plane, agent: dict[str, Any]) -> tuple[FakeCall, str]:
    cid, _ = await plane.customer()
    row = await plane.services.store.insert(
        "agents", {"customer_id": cid, "name": "a", "is_default": 0, "detail": agent}
    )
    await plane.services.store.insert(
        "agent_routes",
        {"customer_id": cid, "agent_id": row["id"], "kind": "number", "value": "+15557654321"},
    )
    call = FakeCall(str(uuid.uuid4()))
    await plane.hooks.call_created(CallInfo(call.call_id, "sip", callee="+15557654321"))
    return call, cid


async def test_builtin_tools(plane: Plane) -> None:
    call, cid = await _live_call(plane, AGENT_TOOLS)
    h = plane.hooks
    out = await h.execute_tool(call, "transfer_call", {"department": "Sales"})
    assert out.is_error and out.result["error"] == "leg_cannot_transfer"
    call.can_transfer = True
    out = await h.execute_tool(call, "transfer_call", {"department": "sales"})
    assert not out.is_error and ("transfer", "+15550001111") in call.actions
    out = await h.execute_tool(call, "transfer_call", {"department": "billing"})
    assert out.result["error"] == "unknown_department"
    out = await h.execute_tool(call, "send_dtmf", {"digits": "12*#"})
    assert not out.is_error and ("dtmf", "12*#") in call.actions
    out = await h.execute_tool(call, "send_dtmf", {"digits": "12; rm -rf"})
    assert out.is_error and out.result["error"] == "bad_arguments"
    out = await h.execute_tool(call, "send_sms", {"to": "+15550009999", "text": "your code"})
    assert out.result["status"] == "queued"
    (msg,) = await plane.services.store.find("messages", call_id=call.call_id)
    assert msg["destination"] == "+15550009999" and msg["customer_id"] == cid
    out = await h.execute_tool(call, "send_sms", {"to": "555", "text": "x"})
    assert out.result["error"] == "bad_arguments"
    conf = await plane.services.store.insert(
        "conferences", {"customer_id": cid, "name": "r", "status": "progressing"}
    )
    out = await h.execute_tool(call, "join_conference", {"conference_id": conf["id"]})
    assert out.result["status"] == "joined" and out.result["conference_id"] == conf["id"]
    assert ("join_bridge", conf["id"]) in call.actions  # the call's audio moved, not just a row
    (part,) = await plane.services.store.find("participants", conference_id=conf["id"])
    assert part["id"] == out.result["participant_id"] and part["status"] == "joined"
    out = await h.execute_tool(call, "join_conference", {"conference_id": str(uuid.uuid4())})
    assert out.result["error"] == "not_found"
    out = await h.execute_tool(call, "format_disk", {})
    assert out.is_error and out.result["error"] == "unknown_tool"
    out = await h.execute_tool(call, "end_call", {"reason": "done"})
    assert not out.is_error and call.actions[-1] == ("hangup_after_playout", "done")
    types = [e["type"] for e in await plane.services.store.find("events", customer_id=cid)]
    assert types.count("tool_called") == 11 and "message_created" in types
    stranger = FakeCall(str(uuid.uuid4()))
    assert (await h.execute_tool(stranger, "end_call", {})).result["error"] == "unknown_call"


async def test_webhook_tool_signed_with_timeout(plane: Plane, receiver: Receiver) -> None:
    tool = {"name": "lookup_order", "type": "webhook", "url": receiver.url, "secret": "tk"}
    call, _ = await _live_call(plane, {"tools": [tool]})
    out = await plane.hooks.execute_tool(call, "lookup_order", {"order": "42"})
    assert out.result == {"ok": True, "n": 1} and not out.is_error
    headers, body = receiver.received[0]
    assert verify("tk", headers, body)
    assert json.loads(body) == {
        "call_id": call.call_id,
        "tool": "lookup_order",
        "arguments": {"order": "42"},
    }
    receiver.delay_s = 2.0
    plane.hooks.tools.timeout_s = 0.2
    with trio.fail_after(2):
        out = await plane.hooks.execute_tool(call, "lookup_order", {"order": "43"})
    assert out.is_error and out.result["error"] == "tool_unreachable"
    receiver.delay_s, receiver.status_after = 0.0, 503
    out = await plane.hooks.execute_tool(call, "lookup_order", {})
    assert out.is_error and out.result == {"error": "tool_failed", "message": "HTTP 503"}
