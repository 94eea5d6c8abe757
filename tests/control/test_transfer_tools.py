"""transfer_call through the control plane's tool executor: to another agent (the call's link
switches, and so do the tools it may use), and a transfer that fails (the agent is told why).
The audio side of both is in tests/media/test_bridge_calls.py and test_bridge_transfer.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from media.bridge_transfer import TransferOutcome
from media.transfer_plan import DEFAULT_INTRODUCTION, TransferOptions, caller_introduction
from tests.control.conftest import FakeCall, Plane
from tests.control.test_webhooks_tools import _live_call


async def test_transfer_to_another_agent_switches_the_calls_agent(plane: Plane) -> None:
    store = plane.services.store
    cid, _ = await plane.customer()
    billing = await store.insert(
        "agents",
        {"customer_id": cid, "name": "billing", "is_default": 0, "detail": {"tools": ["end_call"]}},
    )
    targets = {"billing": f"agent:{billing['id']}", "nobody": f"agent:{uuid.uuid4()}"}
    call, call_cid = await _live_call(
        plane, {"tools": ["transfer_call"], "transfer_targets": targets}
    )
    h = plane.hooks
    for department in ("nobody", "billing"):  # no such agent; another customer's agent
        out = await h.execute_tool(call, "transfer_call", {"department": department})
        assert out.is_error and out.result["error"] == "unknown_agent"
    assert not [a for a in call.actions if a[0] == "switch_agent"]
    await store.update("agents", billing["id"], cid, {"customer_id": call_cid})  # same customer
    out = await h.execute_tool(call, "transfer_call", {"department": "billing"})
    assert out.result == {"status": "transferred", "target": f"agent:{billing['id']}"}
    assert ("switch_agent", billing["id"]) in call.actions
    row = await store.get("calls", call.call_id, call_cid)
    assert row is not None and row["agent_id"] == billing["id"]
    # The new agent's tools are the ones enabled now.
    out = await h.execute_tool(call, "transfer_call", {"department": "billing"})
    assert out.result["error"] == "unknown_tool"
    out = await h.execute_tool(call, "end_call", {})
    assert not out.is_error
    events = await store.find("events", customer_id=call_cid, type="call_transferred")
    assert [e["data"]["status"] for e in events] == ["agent"]


@dataclass
class BusyFarEnd(FakeCall):
    """A call whose bridged transfer met a busy far end (as media/bridge_transfer.py says)."""

    async def transfer_outcome(self) -> TransferOutcome:
        return TransferOutcome("failed", "sip 486 Busy Here")


async def test_a_failed_transfer_is_an_error_the_agent_can_say(plane: Plane) -> None:
    call, cid = await _live_call(plane, {"tools": ["transfer_call"]})
    busy = BusyFarEnd(call.call_id, can_transfer=True)
    out = await plane.hooks.execute_tool(busy, "transfer_call", {"target": "+15550001111"})
    assert out.is_error and out.result["error"] == "transfer_failed"
    assert "486" in out.result["message"]
    store = plane.services.store
    (event,) = await store.find("events", customer_id=cid, type="call_transfer_failed")
    assert event["data"] == {"target": "+15550001111", "reason": "sip 486 Busy Here"}


async def test_a_failed_api_transfer_is_said_to_the_caller_by_its_agent(plane: Plane) -> None:
    """No tool call waits for an API transfer's outcome: the agent is given the failure to
    say, once the caller is back with it."""
    call, cid = await _live_call(plane, {"tools": ["transfer_call"]})
    busy = BusyFarEnd(call.call_id, can_transfer=True)
    await plane.hooks.transfer_requested(busy, "+15550001111")
    (said,) = [a for a in busy.actions if a[0] == "say"]
    assert "busy" in said[1] and "still here" in said[1], said
    store = plane.services.store
    (event,) = await store.find("events", customer_id=cid, type="call_transfer_failed")
    assert event["data"]["reason"] == "sip 486 Busy Here"


async def test_transfer_mode_and_summary_come_from_the_tool_over_the_agents_settings(
    plane: Plane,
) -> None:
    settings = {"mode": "blind", "sip": "bridge", "announcement": "", "introduction": None}
    agent = {"tools": ["transfer_call"], "transfer": settings}
    call, _ = await _live_call(plane, agent)
    call.can_transfer = True
    h = plane.hooks
    warm = {"target": "+15550001111", "mode": "warm", "summary": "Alice, about her invoice."}
    out = await h.execute_tool(call, "transfer_call", warm)
    assert not out.is_error, out
    out = await h.execute_tool(call, "transfer_call", {"target": "+15550001111", "mode": "loud"})
    assert out.result["error"] == "bad_arguments"
    assert call.transfer_options == [TransferOptions("warm", None, "Alice, about her invoice.")]
    # The call was started with the agent's own plan: bridged SIP callers, no announcement.
    ctx_agent = await plane.services.store.find("agents", name="a")
    assignment = await h.tools.start_agent(call.call_id, ctx_agent[0]["customer_id"], ctx_agent[0])
    plan = assignment.transfer
    assert (plan.mode, plan.sip, plan.announcement) == ("blind", "bridge", "")
    assert plan.introduction == DEFAULT_INTRODUCTION
    assert plan.with_options(call.transfer_options[0]).mode == "warm"


async def test_the_apis_transfer_settings_reach_the_call(plane: Plane) -> None:
    call, cid = await _live_call(plane, {"tools": ["transfer_call"]})
    call.can_transfer = True
    plane.calls.add(call)
    await plane.hooks.call_answered(call)
    auth = await plane.key(cid, "customer_admin")
    path = f"/v1.0/calls/{call.call_id}/transfer"
    body = {"target": "+15550001111", "mode": "warm", "introduction": "Bob, meet Alice."}
    r = await plane.client.post(path, json={**body, "announcement": ""}, headers=auth)
    assert r.status_code == 200, await r.get_json()
    r = await plane.client.post(path, json={**body, "mode": "hot"}, headers=auth)
    assert r.status_code == 400
    assert call.transfer_options == [TransferOptions("warm", "", "Bob, meet Alice.")]
    plane.calls.remove(call.call_id)


async def test_a_warm_transfer_without_a_summary_introduces_the_caller_by_its_words(
    plane: Plane,
) -> None:
    call, _ = await _live_call(plane, {"tools": ["transfer_call"], "transfer": {"mode": "warm"}})
    call.can_transfer = True
    h = plane.hooks
    await h.transcript(call.call_id, "caller", "I want to   upgrade my plan.", final=True)
    await h.transcript(call.call_id, "agent", "Let me get you to sales.", final=True)
    out = await h.execute_tool(call, "transfer_call", {"target": "+15550001111"})
    assert not out.is_error, out
    await h.execute_tool(call, "transfer_call", {"target": "+15550001111", "summary": "Alice."})
    await h.execute_tool(call, "transfer_call", {"target": "+15550001111", "mode": "blind"})
    introductions = [options.introduction for options in call.transfer_options]
    assert introductions == [caller_introduction("I want to upgrade my plan."), "Alice.", ""]
    assert '"I want to upgrade my plan."' in introductions[0]
