"""Conferences across nodes: who holds a conference's bridge, the tickets that open a link to
it, and the link's WebSocket on the holder (the audio itself: :mod:`media.bridge_link`).

A conference's bridge lives on one node, its holder, stored in the conference row (``node_id``,
``worker_id``): the node of the first call to join it claims it (a conditional UPDATE, so two
first joins on two nodes agree). A call held by another node joins over an inter-node link:
its node asks the holder (a conference command through Redis, :mod:`control.call_commands`)
to admit it; the holder answers with a one-use ticket and the link's URL; the call's node opens
the WebSocket within :data:`TICKET_TTL_S`. The ticket is the link's credential: it travels only
in a command between nodes (the same trust as a call command: Redis is the platform's own), is
good for one socket, one call and one conference, and expires unused. Actions on a conference
(mute, kick, end) run on its holder, wherever the request arrived.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, WebsocketScope

from control.call_commands import Holder
from control.config import ControlConfig
from control.db.base import Row
from control.store import Store
from media.asgi_websocket import AsgiWebsocket
from media.message_socket import MessageSocketClosed

LINK_PATH = "/v1.0/conference-links"
TICKET_TTL_S = 10.0  # from the holder's answer to the call's node opening the socket
LINK_CONNECT_S = 3.0  # the call's node gives up connecting after this (then 503)
CLOSE_UNAUTHORIZED = 4401


@dataclass(frozen=True, slots=True)
class Grant:
    """What a ticket opens: one call's seat in one conference."""

    conference_id: str
    call_id: str
    participant_id: str
    moderator: bool
    expires_s: float  # trio clock


class Tickets:
    """One-use tickets for inter-node links, minted by the holder, kept in its memory."""

    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}

    def mint(self, conference_id: str, call_id: str, participant_id: str, moderator: bool) -> str:
        now = trio.current_time()
        self._grants = {t: g for t, g in self._grants.items() if g.expires_s > now}
        ticket = secrets.token_urlsafe(24)
        expires = now + TICKET_TTL_S
        self._grants[ticket] = Grant(conference_id, call_id, participant_id, moderator, expires)
        return ticket

    def pending(self, conference_id: str) -> int:
        """Seats promised and not yet taken (counted against a conference's maximum)."""
        now = trio.current_time()
        return sum(
            1
            for g in self._grants.values()
            if g.conference_id == conference_id and g.expires_s > now
        )

    def claim(self, ticket: str) -> Grant | None:
        grant = self._grants.pop(ticket, None)
        if grant is None or grant.expires_s < trio.current_time():
            return None
        return grant


def link_base(cfg: ControlConfig) -> str:
    """Where other nodes reach this one's links: ``--node-url``, else the HTTP listener (a
    wildcard listener by this host's name). A ``--workers`` worker takes its links on a
    listener of its own (``link_fd``; the shared one may hand a link to a sibling, which has
    no ticket for it): that port, at ``--node-url``'s host or ``--http``'s."""
    if cfg.link_fd is not None:
        host = urlsplit(cfg.node_url).hostname if cfg.node_url else cfg.http.host
        return f"ws://{_url_host(host or '')}:{_bound_port(cfg.link_fd)}"
    if cfg.node_url:
        return cfg.node_url.rstrip("/").replace("http://", "ws://", 1)
    return f"ws://{_url_host(cfg.http.host)}:{cfg.http.port}"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def _bound_port(fd: int) -> int:
    """The port of the listening socket ``fd`` (left open)."""
    sock = socket.socket(fileno=fd)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.detach()


def holder_of(conference: Row) -> Holder | None:
    node_id = str(conference.get("node_id") or "")
    return Holder(node_id, int(conference.get("worker_id") or 0)) if node_id else None


async def claim_holder(store: Store, conference: Row, me: Holder) -> Holder:
    """The conference's holder: the one stored, or ``me`` if nobody holds it yet (the first
    join's node; of two first joins at once, the first UPDATE wins and the other reads it)."""
    holder = holder_of(conference)
    if holder is not None:
        return holder
    sql, params = store.update_statement(
        "conferences", conference["id"], None, {"node_id": me.node_id, "worker_id": me.worker_id}
    )
    await store.db.execute(f"{sql} AND node_id = ?", [*params, ""])
    await store.invalidate("conferences", conference["id"])
    row = await store.get("conferences", conference["id"], None)
    return (holder_of(row) if row is not None else None) or me


async def open_socket(
    scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> AsgiWebsocket | None:
    """The link's WebSocket, accepted; None if the peer left during the handshake."""
    ws = AsgiWebsocket(scope, receive, send)  # type: ignore[arg-type]
    try:
        await ws.connected()
        await ws.accept()
    except MessageSocketClosed:
        return None
    return ws
