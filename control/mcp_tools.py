"""MCP servers as an agent's tools: list their tools for the LLM, run a call, bounded and contained.

The client is the official ``mcp`` SDK (Model Context Protocol, spec 2025-06-18 and later: JSON-RPC
over a stdio subprocess or over streamable HTTP). It is anyio-based, so it runs in our Trio tasks
as they are. An operation runs on :class:`Sessions`: a session of its own (:data:`ONE_SHOT`:
spawn or connect, initialize, one request, close; what ``callbridge doctor`` uses), or a kept
session per customer and server (control/mcp_pool.py, what calls use), which saves the spawn and
handshake on every tool call.

Every failure becomes a :class:`ToolOutcome` with ``is_error`` and words the agent can speak
about (``mcp_timeout``, ``mcp_unavailable``, ``mcp_bad_answer``, ``tool_error``), never an
exception: the call goes on. The SDK logs a line that is not JSON-RPC and waits on; here it ends
the operation at once, so garbage is told as garbage rather than as a slow server.

Who may name a stdio command matters: it runs on this host. Stdio servers therefore come from the
operator's configuration only; an agent (a customer's document) names them, or gives a URL.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, TypeVar

import outcome
import trio
from mcp import Client, StdioServerParameters
from mcp.client._transport import TransportStreams  # what mcp.client.Transport yields
from mcp.client.session import IncomingMessage, MessageHandlerFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's client, MCP timeouts

from control.mcp_auth import McpAuth, McpRefused, OAuthClient, refusal
from control.summary_doc import capped_json
from media.hooks import ToolOutcome

log = logging.getLogger(__name__)
SEPARATOR = "__"  # an offered tool's name: <server name>__<the server's tool name>
_LLM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS_PER_SERVER = 64
MAX_DESCRIPTION_CHARS = 1000
MAX_STDERR_LINES = 200  # logged per session: a chatty server cannot flood serve's log
MAX_STDERR_LINE_BYTES = 2000
STDERR_DRAIN_S = 1.0  # for a server's last words once it has exited


@dataclass(frozen=True, slots=True)
class McpServer:
    """One MCP server: ``command`` (stdio, argv) or ``url`` (streamable HTTP), never both."""

    name: str
    command: tuple[str, ...] = ()
    url: str = ""
    # sent to a URL server (its Authorization...); secrets, so never in a repr
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    owner: str = ""  # the customer it serves: sessions and listings are never shared across
    oauth: OAuthClient | None = None  # a client-credentials grant for a URL server's token

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise ValueError(f"MCP server {self.name!r}: give a command or a url, not both")

    def client(
        self, on_message: MessageHandlerFnT, errlog: TextIO, faults: list[Exception]
    ) -> Client:
        """A client of this server; a URL server's refusals of our credentials go to ``faults``
        (control/mcp_auth.py)."""
        if self.url:
            auth = McpAuth(self.oauth, faults)
            return Client(_http(self.url, dict(self.headers), auth), message_handler=on_message)
        params = StdioServerParameters(command=self.command[0], args=list(self.command[1:]))
        return Client(stdio_client(params, errlog=errlog), message_handler=on_message)


@asynccontextmanager
async def _http(
    url: str, headers: dict[str, str], auth: McpAuth
) -> AsyncIterator[TransportStreams]:
    """Streamable HTTP with the server's own headers and credentials, on a client this session
    owns."""
    async with (
        create_mcp_http_client(headers=headers, auth=auth) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


class McpBadAnswer(Exception):
    """The server wrote something that is not an MCP message."""


T = TypeVar("T")


Operation = Callable[[Client], Awaitable[T]]


async def open_session(
    server: McpServer, operation: Operation[T], faults: list[Exception] | None = None
) -> T:
    """``operation`` in a session of its own (for its whole length: a pooled session's body
    holds it open). A stdio server's stderr goes into our log through a pipe (serve's own
    stderr is a JSON log: a server's traceback must not land there raw). ``faults`` collects
    the transport faults that ended it, as they happen."""
    faults = [] if faults is None else faults
    if server.url:
        return await _session(server, sys.stderr, operation, faults)
    read_fd, write_fd = os.pipe()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_log_stderr, server.name, read_fd)
        try:
            with os.fdopen(write_fd, "w") as errlog:
                # captured, so that its error leaves the nursery as itself, not in a group
                result = await outcome.acapture(_session, server, errlog, operation, faults)
        finally:  # the server has exited: what it wrote is there to read, briefly
            nursery.cancel_scope.deadline = trio.current_time() + STDERR_DRAIN_S
    return result.unwrap()


async def _session(
    server: McpServer, errlog: TextIO, operation: Operation[T], faults: list[Exception]
) -> T:
    """A transport fault (the SDK hands it to the message handler: an unparseable line)
    cancels the operation and raises :class:`McpBadAnswer`; a failure after the server refused
    our credentials raises :class:`McpRefused`."""
    with trio.CancelScope() as scope:

        async def on_message(message: IncomingMessage) -> None:
            if isinstance(message, Exception):
                faults.append(message)
                scope.cancel()

        try:
            async with server.client(on_message, errlog, faults) as client:
                return await operation(client)
        except Exception as exc:
            refused = refusal(faults)
            if refused is not None:
                raise refused from exc
            raise
    raise session_fault(faults)


def session_fault(faults: list[Exception]) -> Exception:
    """What ended a session that recorded ``faults``: a refusal first, else garbage."""
    refused = refusal(faults)
    if refused is not None:
        return refused
    return McpBadAnswer(repr(faults[0]) if faults else "session cancelled")


async def _log_stderr(name: str, fd: int) -> None:
    """A stdio server's stderr as log records, line by line, up to a budget per session (a
    chatty server cannot flood serve's log); how many lines were left out, at the end."""
    logged, skipped, pending = 0, 0, b""

    def emit(line: bytes) -> None:
        nonlocal logged, skipped
        if not line.strip():
            return
        if logged >= MAX_STDERR_LINES:
            skipped += 1
            return
        logged += 1
        text = line[:MAX_STDERR_LINE_BYTES].decode("utf-8", "replace")
        log.warning("mcp server stderr", extra={"mcp": name, "line": text})

    try:
        async with trio.lowlevel.FdStream(fd) as stream:
            while chunk := await stream.receive_some(4096):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    emit(line)
                pending = pending[-MAX_STDERR_LINE_BYTES:]
    finally:  # at the end of the output, or when the drain time is up
        emit(pending)
        if skipped:
            log.warning("mcp server stderr", extra={"mcp": name, "skipped_lines": skipped})


class Sessions(Protocol):
    """Where an operation runs: a session of its own (:data:`ONE_SHOT`) or a long-lived one
    (control/mcp_pool.py)."""

    async def run(self, server: McpServer, operation: Operation[T]) -> T: ...


class _OneShot:
    async def run(self, server: McpServer, operation: Operation[T]) -> T:
        return await open_session(server, operation)


ONE_SHOT = _OneShot()


def _error(code: str, message: str) -> ToolOutcome:
    return ToolOutcome({"error": code, "message": message}, True)


def offered_name(server: McpServer, tool: str) -> str | None:
    name = f"{server.name}{SEPARATOR}{tool}"
    return name if _LLM_NAME.match(name) else None


async def list_tools(
    server: McpServer, timeout_s: float, sessions: Sessions = ONE_SHOT
) -> list[dict[str, Any]]:
    """The server's tools as agent tool entries (``name``, ``description``, ``parameters``);
    empty (and logged) when it cannot be reached in time: the call starts without them."""
    with trio.move_on_after(timeout_s):
        try:
            listed = await sessions.run(server, lambda client: client.list_tools())
        except Exception as exc:  # the SDK's, the transport's, the process's: all mean "not now"
            log.warning("mcp server unavailable", extra={"mcp": server.name, "error": repr(exc)})
            return []
        entries = []
        for tool in listed.tools[:MAX_TOOLS_PER_SERVER]:
            name = offered_name(server, tool.name)
            if name is None:
                log.warning("mcp tool name unusable", extra={"mcp": server.name, "tool": tool.name})
                continue
            entries.append(
                {
                    "name": name,
                    "description": (tool.description or "")[:MAX_DESCRIPTION_CHARS],
                    "parameters": dict(tool.input_schema),
                }
            )
        return entries
    log.warning("mcp server did not list its tools in time", extra={"mcp": server.name})
    return []


class McpUnavailable(Exception):
    """A server that did not list its tools, and why (for ``callbridge doctor``)."""


async def tool_names(server: McpServer, timeout_s: float) -> list[str]:
    """The server's tool names; raises :class:`McpUnavailable` saying why it has none."""
    with trio.move_on_after(timeout_s):
        try:
            listed = await open_session(server, lambda client: client.list_tools())
        except Exception as exc:  # what a call would be told as mcp_unavailable / bad answer
            raise McpUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from None
        return [t.name for t in listed.tools]
    raise McpUnavailable(f"no answer within {timeout_s:g} s")


def _text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def call_tool(
    server: McpServer,
    tool: str,
    arguments: dict[str, Any],
    timeout_s: float,
    sessions: Sessions = ONE_SHOT,
) -> ToolOutcome:
    with trio.move_on_after(timeout_s):
        try:
            result = await sessions.run(server, lambda client: client.call_tool(tool, arguments))
        except McpRefused as exc:
            log.warning("mcp credentials refused", extra={"mcp": server.name, "error": str(exc)})
            return _error(
                "mcp_unauthorized",
                f"the {server.name} service refused our credentials: {exc}",
            )
        except McpBadAnswer as exc:
            log.warning("mcp answer unreadable", extra={"mcp": server.name, "error": str(exc)})
            return _error(
                "mcp_bad_answer", f"the {server.name} service answered with something unreadable"
            )
        except Exception as exc:  # a crash, a refused connection
            log.warning("mcp call failed", extra={"mcp": server.name, "error": repr(exc)})
            return _error(
                "mcp_unavailable", f"the {server.name} service failed: {type(exc).__name__}"
            )
        if result.is_error:
            return _error("tool_error", _text(result)[:1000] or f"{tool} failed")
        if result.structured_content is not None:
            return ToolOutcome(capped_json(result.structured_content))
        return ToolOutcome({"content": _text(result)[:4000]})
    return _error("mcp_timeout", f"the {server.name} service did not answer within {timeout_s:g} s")
