"""A SIP caller whose agent asks for bridged transfers (``transfer.sip: "bridge"``) is not sent
a REFER: callbridge places the outbound call through its trunk and bridges it with the caller,
as on any other leg (media/bridge_transfer.py); REFER stays the default (test_sip_transfer.py).

sipp calls in (and would fail on an unexpected REFER), the agent calls ``transfer_call`` at
once, a second sipp answers behind the trunk; the caller's BYE hangs up the far end too."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from ai_pipeline.link import AgentLink
from media.hooks import AgentAssignment, CallHandle, CallInfo, ToolOutcome
from media.transfer_plan import TransferPlan
from proto.messages import CallStart, FunctionCall, Hangup
from tests.media.conftest import RecordingHooks, agent_in_thread
from tests.media.test_bridge_transfer import start_node
from tests.sip.peers import free_udp_port, run_sipp, sipp_uas

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sip_peers")]
SALES = "+15550002"


@dataclass
class BridgingHooks(RecordingHooks):
    """The agent's plan bridges SIP callers; transfer_call runs as the control plane's does,
    and what the caller's and the far end's calls are bridged into is noted once answered."""

    bridges: list[str | None] = field(default_factory=list)
    outcomes: list[tuple[str, str]] = field(default_factory=list)
    registry: Any = None  # the node's CallRegistry

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        await super().call_created(info)
        plan = TransferPlan(sip="bridge", announcement="")  # this agent says nothing itself
        return AgentAssignment("test-agent", "c1", {}, plan)

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        call.transfer(str(arguments["target"]))
        outcome = await call.transfer_outcome()
        self.bridges = [c.bridge_id for c in self.registry]
        self.outcomes.append((outcome.status, outcome.detail))
        return ToolOutcome({"status": outcome.status, "detail": outcome.detail})


async def transferring_agent(start: CallStart, link: AgentLink) -> None:
    """Calls transfer_call as soon as the call starts (blind: it is gone once answered)."""
    await link.send(FunctionCall("tool-1", "transfer_call", {"target": SALES}))
    frame = None
    while not isinstance(frame, Hangup):  # the link closes with the agent's goodbye
        frame = await link.recv()


async def test_a_sip_caller_is_bridged_when_its_agent_asks(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    hooks = BridgingHooks()
    with agent_in_thread(transferring_agent) as agent_url:
        async with sipp_uas(tmp_path, rtp_echo=True) as uas:
            node = await start_node(nursery, agent_url, uas.port, hooks)
            hooks.registry = node.env.registry
            run = await run_sipp(tmp_path, "uac_hold.xml", node.sip_port, free_udp_port(True))
            with trio.fail_after(10):
                while len(hooks.hungup) < 2:
                    await trio.sleep(0.05)
    assert run.returncode == 0, run.stdout[-2000:] + run.errors + run.messages[-2000:]
    assert "REFER" not in run.messages
    far_end = uas.result()
    assert f"INVITE sip:{SALES}@127.0.0.1" in far_end.messages and "BYE sip:" in far_end.messages
    assert hooks.outcomes == [("answered", SALES)]
    caller_id = hooks.created[0].call_id
    assert hooks.bridges == [f"transfer-{caller_id}"] * 2, "caller and far end, one bridge"
    causes = sorted(cause for _, cause, _ in hooks.hungup)
    assert causes == ["api", "caller"]  # the caller hung up; the far end was hung up for it
