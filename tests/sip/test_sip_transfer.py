"""A SIP transfer that fails is told to the agent: sipp refuses the REFER, or accepts it and
reports the new call busy in its NOTIFY (RFC 3515 2.4.5), and the agent's transfer_call gets
an error result naming why, while the caller stays on the call with it.

The hooks run transfer_call as the control plane's tool executor does (``call.transfer``, then
``call.transfer_outcome``); the success path through Kamailio is in test_sipp_kamailio.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from ai_pipeline.link import AgentLink
from media.hooks import CallHandle, ToolOutcome
from proto.messages import CallStart, FunctionCall, FunctionCallResult, Hangup
from tests.control.conftest import open_plane_for
from tests.media.conftest import RecordingHooks, agent_in_thread
from tests.sip.nodes import start_node
from tests.sip.peers import free_udp_port, run_sipp

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sip_peers")]
TARGET = "sip:sales@127.0.0.1:5099"


class OutcomeHooks(RecordingHooks):
    """transfer_call as the control plane's executor runs it: the result waits for the outcome."""

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        self.tools.append((name, arguments))
        call.transfer(str(arguments["target"]))
        outcome = await call.transfer_outcome()  # type: ignore[attr-defined]
        if outcome.status == "failed":
            return ToolOutcome({"error": "transfer_failed", "message": outcome.detail}, True)
        return ToolOutcome({"status": outcome.status})


class TransferringAgent:
    """Calls transfer_call, keeps the result it gets, then says goodbye (hangs up)."""

    def __init__(self) -> None:
        self.results: list[FunctionCallResult] = []

    async def __call__(self, start: CallStart, link: AgentLink) -> None:
        await link.send(FunctionCall("tool-1", "transfer_call", {"target": TARGET}))
        while True:
            frame = await link.recv()
            if isinstance(frame, FunctionCallResult):
                self.results.append(frame)  # list.append: safe from the agent's thread
                await link.send(Hangup("told the caller"))
            elif isinstance(frame, Hangup):
                return


@pytest.mark.parametrize(
    ("scenario", "detail"),
    [
        ("uac_refer_rejected.xml", "sip 603 Decline"),
        ("uac_refer_notify_busy.xml", "sip 486 Busy Here"),
    ],
)
async def test_a_failed_refer_is_an_error_result_for_the_agent(
    nursery: trio.Nursery, tmp_path: Path, scenario: str, detail: str
) -> None:
    hooks, agent = OutcomeHooks(), TransferringAgent()
    with agent_in_thread(agent) as agent_url:
        node = await start_node(nursery, agent_url, hooks)
        # sipp checks the REFER arrives, answers it its way, then waits for our BYE: the call
        # was not ended by the failed transfer but by the agent, once told.
        run = await run_sipp(tmp_path, scenario, node.port, free_udp_port(pair=True))
        assert run.returncode == 0, run.stdout[-2000:] + run.errors + run.messages
        with trio.fail_after(10):
            await hooks.ended.wait()
    assert f"Refer-To: <{TARGET}>" in run.messages
    ((result),) = agent.results
    assert result.is_error and result.result["error"] == "transfer_failed"
    assert result.result["message"].startswith(detail), result.result
    assert hooks.hungup[0][1:] == ("agent", "told the caller")


async def test_the_control_plane_records_the_failed_transfer(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """With the control plane's own hooks and tool executor: the agent's result is the error,
    and ``call_transfer_failed`` is emitted with the SIP status."""
    agent = TransferringAgent()
    async with await open_plane_for("sqlite", tmp_path) as plane:
        store = plane.services.store
        customer_id, _ = await plane.customer()
        row = await store.insert(
            "agents",
            {"customer_id": customer_id, "name": "desk", "is_default": 0,
             "detail": {"tools": ["transfer_call"]}},
        )  # fmt: skip
        route = {"agent_id": row["id"], "kind": "number", "value": "agent"}  # sipp dials "agent"
        await store.insert("agent_routes", {"customer_id": customer_id, **route})
        with agent_in_thread(agent) as agent_url:
            node = await start_node(nursery, agent_url, plane.hooks)  # type: ignore[arg-type]
            port = free_udp_port(pair=True)
            run = await run_sipp(tmp_path, "uac_refer_notify_busy.xml", node.port, port)
            assert run.returncode == 0, run.stdout[-2000:] + run.errors + run.messages
        events = await store.find("events", customer_id=customer_id)
    ((result),) = agent.results
    assert result.is_error and result.result["error"] == "transfer_failed", result
    (failed,) = [e for e in events if e["type"] == "call_transfer_failed"]
    data = json.loads(failed["data"]) if isinstance(failed["data"], str) else failed["data"]
    assert data["target"] == TARGET and data["reason"].startswith("sip 486 Busy Here"), data
