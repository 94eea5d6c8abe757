"""Is the agent really there? The agent link's own opening handshake, not a TCP accept.

A port that accepts TCP proves nothing: any program may hold it (a plain HTTP server did, and
``serve`` called it ready and would have sent calls to it). The probe opens the link WebSocket as a
call does, on the agent server's ``READY_PATH`` (answered by the handshake alone, no call starts),
and wants a WebSocket accept (101 with the right ``Sec-WebSocket-Accept``) that names serve's own
child by its pid: an agent orphaned by an earlier serve answers the handshake too, as another pid.

A remote agent (``--agent ws://``) is only checked for reachability: a stock pipecat server takes
any WebSocket for a call (one at a time), so a probe every few seconds would start, or displace,
calls there.
"""

from __future__ import annotations

import trio
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from ai_pipeline.server import PID_HEADER, READY_PATH
from media.agent_client import AgentClient, AgentLinkError
from media.config import HostPort

PROBE_TIMEOUT_S = 2.0  # a loaded agent still answers a handshake within this


class AgentNotReady(Exception):
    """The agent did not answer the link handshake as serve's own agent; the message says how."""


async def probe_agent(listen: HostPort, pid: int, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return once the agent process ``pid`` answers the link handshake on ``listen``."""
    try:
        client = await AgentClient.connect(f"ws://{listen}{READY_PATH}", timeout_s)
    except AgentLinkError as exc:
        raise AgentNotReady(f"no agent-link handshake on {listen}: {exc}") from None
    response = client.handshake_response
    await client.aclose()
    answered = response.headers.get(PID_HEADER) if response is not None else None
    if answered != str(pid):
        who = f"agent pid {answered}" if answered else "not a callbridge agent"
        raise AgentNotReady(f"{listen} answered the handshake, but {who} (ours is pid {pid})")


async def probe_remote_agent(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return once the remote agent's host accepts TCP (see the module docstring for why no
    more than that)."""
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise AgentNotReady(str(exc)) from None
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(uri.host, uri.port)
        except OSError as exc:
            raise AgentNotReady(f"{uri.host}:{uri.port}: {exc.strerror or exc}") from None
        await stream.aclose()
        return
    raise AgentNotReady(f"{uri.host}:{uri.port}: no answer within {timeout_s} s")


async def probe_remote_agents(urls: tuple[str, ...], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return once one of the remote agents is reachable (calls go to the reachable ones)."""
    reasons = []
    for url in urls:
        try:
            await probe_remote_agent(url, timeout_s)
            return
        except AgentNotReady as exc:
            reasons.append(str(exc))
    raise AgentNotReady("; ".join(reasons))
