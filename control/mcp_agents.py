"""An agent's MCP servers on a call: their tools offered at call start, the LLM's calls routed back.

At call start every ``{"type": "mcp"}`` entry of the agent is resolved (a customer's URL, or a
stdio server the operator made available to that customer: control/mcp_servers.py), the servers
are listed at once under one deadline, and their tools join the agent's tools as
``<server>__<tool>`` with their JSON schemas. What was offered is remembered per call as routes;
a tool call is run only through those routes, so a call can reach nothing but its own agent's
servers, whatever name the LLM makes up. A server that cannot be listed in time is left out and
the call starts without it.

Listings are cached per customer and server for ``cache_ttl_s`` so that calls do not each wait for
a spawn or a round trip; a server's new tools show up within that time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from control.mcp_auth import OAuthClient
from control.mcp_pool import McpPool
from control.mcp_servers import McpStdioServer, is_mcp_entry, stdio_for
from control.mcp_tools import SEPARATOR, McpServer, call_tool, list_tools
from media.hooks import ToolOutcome

log = logging.getLogger(__name__)
MAX_OFFERED_TOOLS = 128  # in all, per call: an LLM picks worse from hundreds, and requests grow
MAX_CACHED_LISTINGS = 512
Entry = dict[str, Any]


@dataclass(frozen=True, slots=True)
class McpRoute:
    """An offered tool: the server it lives on and its own name there."""

    server: McpServer
    tool: str


@dataclass(frozen=True, slots=True)
class McpOffer:
    tools: list[Entry] = field(default_factory=list)  # agent tool entries, for the agent config
    routes: dict[str, McpRoute] = field(default_factory=dict)  # offered name -> route


def _oauth(entry: Mapping[str, Any] | None) -> OAuthClient | None:
    """The agent entry's ``oauth`` (validated by control/schemas.py's McpOAuth)."""
    if not entry:
        return None
    return OAuthClient(
        str(entry["token_url"]),
        str(entry["client_id"]),
        str(entry["client_secret"]),
        str(entry.get("scope") or ""),
    )


class McpTools:
    def __init__(
        self,
        stdio: Sequence[McpStdioServer] = (),
        list_timeout_s: float = 5.0,
        call_timeout_s: float = 8.0,
        cache_ttl_s: float = 60.0,
    ) -> None:
        self.stdio = tuple(stdio)
        self.list_timeout_s = list_timeout_s
        self.call_timeout_s = call_timeout_s
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[McpServer, tuple[float, list[Entry]]] = {}  # owner in the key
        self.pool = McpPool()  # long-lived sessions, once serve() runs in the plane's nursery

    def server_for(self, customer_id: str, entry: Mapping[str, Any]) -> McpServer | None:
        name = str(entry.get("name", ""))
        if entry.get("url"):
            headers = tuple(sorted((entry.get("headers") or {}).items()))
            oauth = _oauth(entry.get("oauth"))
            url = str(entry["url"])
            return McpServer(name, url=url, headers=headers, owner=customer_id, oauth=oauth)
        configured = stdio_for(self.stdio, customer_id, name)
        if configured is None:
            return None
        return McpServer(name, command=configured.command, owner=customer_id)

    async def offer(
        self, customer_id: str, agent: Mapping[str, Any], taken: frozenset[str] = frozenset()
    ) -> McpOffer:
        """The tools of the agent's MCP servers, except names in ``taken`` (its other tools)."""
        wanted: list[tuple[McpServer, frozenset[str]]] = []
        for entry in agent.get("tools", []):
            if not is_mcp_entry(entry):
                continue
            server = self.server_for(customer_id, entry)
            if server is None:  # the operator removed it since the agent was saved
                log.warning("mcp server not configured", extra={"mcp": entry.get("name")})
                continue
            wanted.append((server, frozenset(entry.get("tools") or ())))
        listings: dict[int, list[Entry]] = {}
        async with trio.open_nursery() as nursery:
            for i, (server, _) in enumerate(wanted):
                nursery.start_soon(self._list_into, listings, i, server)
        offer = McpOffer()
        for i, (server, only) in enumerate(wanted):
            for entry in listings.get(i, []):
                own_name = entry["name"][len(server.name) + len(SEPARATOR) :]
                if (only and own_name not in only) or entry["name"] in taken:
                    continue
                if entry["name"] in offer.routes or len(offer.tools) >= MAX_OFFERED_TOOLS:
                    continue
                offer.tools.append(entry)
                offer.routes[entry["name"]] = McpRoute(server, own_name)
        return offer

    async def _list_into(self, out: dict[int, list[Entry]], i: int, server: McpServer) -> None:
        key = server
        cached = self._cache.get(key)
        if cached is not None and cached[0] > trio.current_time():
            out[i] = cached[1]
            return
        listed = await list_tools(server, self.list_timeout_s, self.pool)
        out[i] = listed
        if listed:  # a failure is not remembered: the next call tries again
            self._cache.pop(key, None)
            while len(self._cache) >= MAX_CACHED_LISTINGS:
                del self._cache[next(iter(self._cache))]  # the oldest
            self._cache[key] = (trio.current_time() + self.cache_ttl_s, listed)

    async def call(self, route: McpRoute, arguments: dict[str, Any]) -> ToolOutcome:
        return await call_tool(route.server, route.tool, arguments, self.call_timeout_s, self.pool)
