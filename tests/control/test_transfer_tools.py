"""transfer_call through the control plane's tool executor: to another agent (the call's link
switches, and so do the tools it may use), and a transfer that fails (the agent is told why).
The audio side of both is in tests/media/test_bridge_calls.py and test_bridge_transfer.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from media.bridge_transfer import TransferOutcome
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
