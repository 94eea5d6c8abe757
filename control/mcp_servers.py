"""The operator's stdio MCP servers (``serve --mcp-stdio``) and who may use them.

A stdio MCP server is a command run on this host, so only the operator names one; an agent (a
customer's document) names it by ``name``, and may do so only if the operator made it available
to every customer or to that customer (``NAME@CUSTOMER_ID=COMMAND``). A customer's own server is a
streamable-HTTP URL in its agent, and needs nothing from here.

Pure: no SDK, no I/O beyond ``shutil.which`` at start-up, so that the configuration can be parsed
and checked without loading the MCP client.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MCP_NAME = r"^[a-zA-Z][a-zA-Z0-9-]{0,31}$"
"""A server's name; its tools are offered as ``<name>__<tool>`` (no ``_`` so the two parts
cannot run into each other)."""
_NAME = re.compile(MCP_NAME)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class McpConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class McpStdioServer:
    """``command`` (argv) run for ``name``; ``customer_id`` empty: every customer may use it."""

    name: str
    command: tuple[str, ...]
    customer_id: str = ""

    def usable_by(self, customer_id: str) -> bool:
        return not self.customer_id or self.customer_id == customer_id


def parse_stdio_flag(text: str) -> McpStdioServer:
    """``NAME=COMMAND ARGS...`` or ``NAME@CUSTOMER_ID=COMMAND ARGS...`` (shell-quoted)."""
    who, sep, command_text = text.partition("=")
    name, _, customer_id = who.partition("@")
    if not sep or not _NAME.match(name):
        raise McpConfigError(
            f"--mcp-stdio {text!r}: expected NAME=COMMAND or NAME@CUSTOMER_ID=COMMAND, NAME of"
            " letters, digits and -, starting with a letter, up to 32"
        )
    if customer_id and not _UUID.match(customer_id.lower()):
        raise McpConfigError(f"--mcp-stdio {name}: {customer_id!r} is not a customer id (a UUID)")
    try:
        command = tuple(shlex.split(command_text))
    except ValueError as exc:
        raise McpConfigError(f"--mcp-stdio {name}: cannot read the command: {exc}") from None
    if not command:
        raise McpConfigError(f"--mcp-stdio {name}: no command after '='")
    if shutil.which(command[0]) is None:
        raise McpConfigError(f"--mcp-stdio {name}: {command[0]!r} is not an executable here")
    return McpStdioServer(name, command, customer_id.lower())


def parse_stdio_flags(texts: Iterable[str]) -> tuple[McpStdioServer, ...]:
    servers = tuple(parse_stdio_flag(t) for t in texts)
    seen: set[tuple[str, str]] = set()
    for s in servers:
        if (s.name, s.customer_id) in seen:
            raise McpConfigError(f"--mcp-stdio {s.name}: given twice for the same customers")
        seen.add((s.name, s.customer_id))
    return servers


def stdio_for(
    servers: Sequence[McpStdioServer], customer_id: str, name: str
) -> McpStdioServer | None:
    """The server this customer's ``name`` means: its own first, then one for everybody."""
    mine = [s for s in servers if s.name == name and s.usable_by(customer_id)]
    mine.sort(key=lambda s: not s.customer_id)
    return mine[0] if mine else None


def is_mcp_entry(tool: Any) -> bool:
    return isinstance(tool, Mapping) and tool.get("type") == "mcp"


def unusable_stdio_entries(
    servers: Sequence[McpStdioServer], customer_id: str, tools: Sequence[Any]
) -> list[dict[str, str]]:
    """Field errors for the agent's MCP entries without a URL that name no stdio server this
    customer may use (another customer's looks the same as none: it is not theirs to know)."""
    errors = []
    for i, tool in enumerate(tools):
        if not is_mcp_entry(tool) or tool.get("url"):
            continue
        if stdio_for(servers, customer_id, str(tool.get("name", ""))) is None:
            errors.append(
                {
                    "field": f"tools[{i}].name",
                    "message": f"no MCP server {tool.get('name')!r} is configured here; give"
                    " the url of your streamable-HTTP MCP server, or ask the operator for a"
                    " stdio one",
                }
            )
    return errors
