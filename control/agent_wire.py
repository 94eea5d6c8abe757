"""What the agent is told about an agent definition: the stored agent (the API's shape) projected
onto the agent link's ``CallStart.agent_config`` (validated by ``ai_pipeline/agent_config.py``).

The two shapes differ on purpose. The API keeps what only the control plane needs (``name``,
``routes`` for picking the agent, ``transfer_targets`` for the transfer tool, a webhook tool's
``url`` and ``secret``, an MCP server's entry); none of that is the agent's business, and a webhook
secret must not travel to another process. An MCP server's tools are listed when the call starts
(control/mcp_agents.py) and passed in as plain tools. Empty strings in the API mean "the agent's
default".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control.mcp_servers import is_mcp_entry

_PASSED_WHEN_SET = (
    "prompt",
    "greeting",
    "voice",
    "language",
    "default_conference_id",
    "knowledge",
)
_TOOL_FIELDS_FOR_THE_AGENT = ("name", "description", "parameters")
_VAD_FIELDS = ("stop_secs", "confidence")


def agent_config_for_call(
    detail: Mapping[str, Any], mcp_tools: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The ``agent_config`` a call with this agent starts with; ``mcp_tools``: the tools its MCP
    servers listed for this call (``name``, ``description``, ``parameters``)."""
    config: dict[str, Any] = {key: detail[key] for key in _PASSED_WHEN_SET if detail.get(key)}
    if "tools" in detail:
        config["tools"] = [_tool(tool) for tool in detail["tools"] if not is_mcp_entry(tool)]
        config["tools"] += [_tool(tool) for tool in mcp_tools]
    if detail.get("engines"):
        config["engines"] = _engines(detail["engines"])
    if detail.get("vad"):
        config["vad"] = {k: detail["vad"][k] for k in _VAD_FIELDS if k in detail["vad"]}
    if "voice_level_dbfs" in detail:  # null (off) is passed too
        config["voice_level_dbfs"] = detail["voice_level_dbfs"]
    if "user_turn_timeout_secs" in detail:  # 0 is a setting, not "unset"
        config["user_turn_timeout_secs"] = detail["user_turn_timeout_secs"]
    return config


def _tool(tool: str | Mapping[str, Any]) -> str | dict[str, Any]:
    if isinstance(tool, str):
        return tool
    return {k: tool[k] for k in _TOOL_FIELDS_FOR_THE_AGENT if k in tool}


def _engines(engines: Mapping[str, Any]) -> dict[str, Any]:
    options = engines.get("options") or {}
    out: dict[str, Any] = {}
    for kind in ("stt", "llm", "tts"):
        if kind in engines:
            out[kind] = {"name": engines[kind], **options.get(kind, {})}
    return out
