"""The secrets an agent's tools carry, kept out of what the API shows.

An agent's tools hold credentials for the customer's own services: a webhook tool's signing
``secret``, an MCP server's ``headers`` (``Authorization: Bearer ...``, API keys) and its OAuth
``client_secret``. They are stored as given and used by the control plane; the API shows each as a
hint (its first characters when it is long enough that they give nothing away, then ``...``), to
every role, ``agent_user`` included.

A client that reads an agent, edits it and PUTs it back sends those hints: a hint equal to the one
of the value stored for the same tool keeps the stored value, so a round trip loses no secret.
Anything else is a new value.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

_SHOWN_CHARS = 4
_SHOWN_FROM_LEN = 16  # shorter secrets show nothing of themselves


def hint(secret: str) -> str:
    """What the API shows of ``secret``; ``""`` for none."""
    if not secret:
        return ""
    shown = secret[:_SHOWN_CHARS] if len(secret) >= _SHOWN_FROM_LEN else ""
    return shown + "..."


# A secret's place in one tool ("secret", "header:<name>", "oauth"), the dict holding it, its key
Slot = tuple[str, dict[str, Any], str]


def _slots(tool: dict[str, Any]) -> Iterator[Slot]:
    if tool.get("type") == "mcp":
        headers = tool.get("headers") or {}
        yield from ((f"header:{name.lower()}", headers, name) for name in headers)
        if isinstance(tool.get("oauth"), dict):
            yield "oauth", tool["oauth"], "client_secret"
    elif "secret" in tool:
        yield "secret", tool, "secret"


def _each_slot(detail: dict[str, Any], act: Callable[[tuple[str, str, str], Slot], None]) -> None:
    """``act(where, slot)`` on every secret of ``detail``'s tools; ``where`` names it across
    versions of the agent: the tool's type and name, and the secret's place in the tool."""
    for tool in detail.get("tools") or []:
        if isinstance(tool, dict):
            kind, name = str(tool.get("type", "webhook")), str(tool.get("name", ""))
            for slot in list(_slots(tool)):
                act((kind, name, slot[0]), slot)


def masked(detail: dict[str, Any]) -> dict[str, Any]:
    """A copy of an agent's stored ``detail`` with every tool secret shown as its hint."""
    out = copy.deepcopy(detail)

    def mask(_where: tuple[str, str, str], slot: Slot) -> None:
        _, holder, key = slot
        holder[key] = hint(str(holder[key]))

    _each_slot(out, mask)
    return out


def restored(new: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """``new`` (a PUT's detail) with each secret that is the hint of the value stored for the
    same tool (type and name) and place replaced by that stored value."""
    old: dict[tuple[str, str, str], str] = {}

    def remember(where: tuple[str, str, str], slot: Slot) -> None:
        old[where] = str(slot[1][slot[2]])

    def restore(where: tuple[str, str, str], slot: Slot) -> None:
        _, holder, key = slot
        previous = old.get(where)
        if previous and holder[key] == hint(previous):
            holder[key] = previous

    _each_slot(stored, remember)
    out = copy.deepcopy(new)
    _each_slot(out, restore)
    return out
