"""One tool call of a call's agent, run through the control plane (:meth:`CallHooks.execute_tool`)
under a deadline; whatever happens, the agent that asked gets a result, never a dead call.

``transfer_call`` waits for the transfer's answer (or why there was none: busy, no answer), so
its deadline is the transfer's, not a tool's.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from media.hooks import CallHandle, CallHooks, LegCannotDo
from proto import messages as m

if TYPE_CHECKING:
    from media.agent_peer import AgentPeer

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 10.0
TRANSFER_TOOL_TIMEOUT_S = 150.0  # transfer_call waits for the answer (or why there was none)


async def run_tool(
    hooks: CallHooks, call: CallHandle, agent: AgentPeer | None, fc: m.FunctionCall
) -> None:
    """Run ``fc`` for ``call``; the result goes to ``agent`` (the one that asked), if it is
    still there."""
    limit_s = TRANSFER_TOOL_TIMEOUT_S if fc.name == "transfer_call" else TOOL_TIMEOUT_S
    try:
        with trio.fail_after(limit_s):
            outcome = await hooks.execute_tool(call, fc.name, fc.arguments)
        result, is_error = outcome.result, outcome.is_error
    except trio.TooSlowError:
        result, is_error = {"error": f"tool {fc.name} timed out"}, True
    except LegCannotDo as exc:
        result, is_error = {"error": str(exc)}, True
    except Exception as exc:  # a broken tool gives the LLM an error, never a dead call
        log.exception("tool failed", extra={"call_id": call.call_id, "tool": fc.name})
        result, is_error = {"error": f"tool {fc.name} failed: {type(exc).__name__}"}, True
    if agent is not None and not agent.closed:
        await agent.send(m.FunctionCallResult(fc.tool_call_id, fc.name, result, is_error))
