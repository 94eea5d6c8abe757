"""Media WebSockets on the control plane's port, the media tokens that open them, and the page.

- ``/v1.0/media-streams``: Twilio Media Streams (JSON, base64 mu-law 8 kHz).
- ``/v1.0/chan-websocket``: Asterisk chan_websocket (sub-protocol ``media``; see
  ``sip/asterisk/README.md`` for the ARI externalMedia call and the dialplan).
- ``/v1.0/browser``: the page's leg, chan_websocket's protocol with binary slin16.

Many media clients cannot set headers (browsers, Asterisk's ``websocket_client.conf``), so a
socket authenticates with, in this order: ``?token=`` (a media token from
``POST /v1.0/media-tokens``: minutes long, opens media sockets only), ``?access_key=ak_...``, or
the ``Authorization`` header. Twilio's ``<Stream>`` URL takes no query string at all: there the
``start`` message's custom parameters ``access_key`` or ``token`` do (and are dropped once
checked). A refusal still upgrades, then closes with 4401 and a reason, so every client sees why.
``?agent_id=`` picks the caller's agent, as do Twilio's custom parameter ``agent_id`` and the
chan_websocket channel variable ``AGENT_ID``; only the authenticated customer's agents can be
picked.

These sockets are served on Hypercorn's ASGI callables directly (:class:`MediaSockets`, in front
of Quart): 50 messages a second each way per call, and Quart-Trio's own task, channel and two
signals per message made the media-streams leg cost 1.8x AudioSocket's CPU per call
(``bench/RESULTS.md``, "media-streams leg"). The leg reads the socket itself
(:class:`media.asgi_websocket.AsgiWebsocket`).

``/`` is the page (``control/static/``, no build step). ``serve`` logs a link to it whose
fragment holds a page token (:func:`page_link`); the page keeps it in the tab's sessionStorage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    Scope,
    WebsocketScope,
)
from quart import Response, send_from_directory
from werkzeug.datastructures import Headers

from control.api import Api, Ctx
from control.auth import (
    MEDIA_TOKEN_TTL_S,
    AuthError,
    Principal,
    active,
    authenticate,
    jwt_encode,
    media_token,
    media_token_decode,
)
from control.bootstrap import DEFAULT_CUSTOMER_NAME
from control.conference_links import LINK_PATH, open_socket
from control.services import Services
from media.asgi_websocket import AsgiWebsocket
from media.message_socket import MessageSocketClosed
from media.websocket_calls import (
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    Authorize,
    LegKind,
    WebsocketCalls,
)

STATIC_DIR = Path(__file__).parent / "static"
PAGE_TOKEN_TTL_S = 12 * 3600  # a working day; restart serve for a new link
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MEDIA_ROUTES: dict[str, LegKind] = {
    "/v1.0/media-streams": "twilio",
    "/v1.0/chan-websocket": "chan_websocket",
    "/v1.0/browser": "browser",
}


async def _principal(api: Api, token: str, access_key: str, header: str) -> Principal | None:
    """Who holds these credentials; ``None`` where none were given; :class:`AuthError`."""
    cfg, store = api.services.cfg, api.services.store
    if token:
        return await active(store, media_token_decode(token, cfg.jwt_secret))
    if access_key:
        return await authenticate(f"AccessKey {access_key}", store, cfg.jwt_secret)
    if header:
        return await authenticate(header, store, cfg.jwt_secret)
    return None


def _grant(principal: Principal, agent_id: str = "") -> dict[str, str]:
    granted = {"customer_id": principal.customer_id}
    if _UUID.match(agent_id):
        granted["agent_id"] = agent_id
    return granted


def _authorizer(api: Api, principal: Principal | None, url_agent_id: str) -> Authorize:
    """The socket's URL or header named its caller (``principal``), or else its handshake
    must: Twilio's ``<Stream>`` URL takes no query string, so there the credentials come as
    ``<Parameter name="access_key" .../>`` (or ``token``) in the start message."""

    async def authorize(params: Mapping[str, Any]) -> dict[str, str] | None:
        if principal is not None:
            return _grant(principal, url_agent_id)
        token, key = str(params.get("token", "")), str(params.get("access_key", ""))
        try:
            found = await _principal(api, token, key, "")
        except AuthError:
            return None
        return None if found is None else _grant(found)

    return authorize


class MediaSockets:
    """ASGI in front of Quart (``app.asgi_app = MediaSockets(app.asgi_app, ...)``): a WebSocket
    to one of :data:`MEDIA_ROUTES` is served here, anything else passes on to Quart."""

    def __init__(self, app: ASGIFramework, api: Api, calls: WebsocketCalls) -> None:
        self.app, self.api, self.calls = app, api, calls

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        route = _route(scope) if scope["type"] == "websocket" else ""
        if route == LINK_PATH:  # another node's call, into a conference bridge held here
            await _conference_link(self.api, scope, receive, send)  # type: ignore[arg-type]
            return
        kind = MEDIA_ROUTES.get(route)
        if kind is None:
            await self.app(scope, receive, send)
            return
        socket = AsgiWebsocket(scope, receive, send)  # type: ignore[arg-type]
        try:
            await socket.connected()
        except MessageSocketClosed:
            return  # gone before the handshake ended
        await _media_socket(self.api, self.calls, kind, socket)


async def _conference_link(
    api: Api, scope: WebsocketScope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    """An inter-node conference link: its one-use ticket is its credential
    (:mod:`control.conference_links`); without conferences here, refused like a bad ticket."""
    socket = await open_socket(scope, receive, send)
    if socket is None:
        return
    ticket = dict(parse_qsl(scope["query_string"].decode("latin-1"))).get("ticket", "")
    conferences = api.services.conferences
    if conferences is None:
        await socket.close(CLOSE_UNAUTHORIZED, "unauthorized: no conferences on this node")
        return
    await conferences.serve_link(ticket, socket)


def _route(scope: WebsocketScope) -> str:
    """The path below Hypercorn's ``root_path``, as Quart routes it."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _media_socket(
    api: Api, calls: WebsocketCalls, kind: LegKind, socket: AsgiWebsocket
) -> None:
    """Rate limit, authenticate, accept, then the call (or a close with a code and why)."""
    scope = socket.scope
    subprotocol = "media" if "media" in scope.get("subprotocols", ()) else None
    headers = Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]])
    args: dict[str, str] = {}
    for name, value in parse_qsl(scope["query_string"].decode("latin-1")):
        args.setdefault(name, value)  # the first of repeated parameters, as Quart's args.get
    peer = scope.get("client")
    # The REST API's per-IP bucket: a client opening sockets in a loop is held back too.
    remote = api.client_addr(str(peer[0]) if peer else "", headers)
    if api.ip_buckets.take(f"ip:{remote}", trio.current_time()):
        calls.count_refusal(kind, "rate_limited")
        await socket.accept(subprotocol)
        await socket.close(CLOSE_TRY_AGAIN_LATER, "rate limited: try again later")
        return
    try:
        principal = await _principal(
            api, args.get("token", ""), args.get("access_key", ""), headers.get("Authorization", "")
        )
        if principal is None and kind != "twilio":
            raise AuthError("missing credentials")
    except AuthError as exc:
        calls.count_refusal(kind, "unauthorized")
        await socket.accept(subprotocol)
        await socket.close(CLOSE_UNAUTHORIZED, f"unauthorized: {exc}"[:120])
        return
    await socket.accept(subprotocol)
    authorize = _authorizer(api, principal, args.get("agent_id", ""))
    await calls.serve(kind, socket, authorize, remote_addr=remote)


async def page_link(services: Services) -> str:
    """The page's address with a page token in its fragment (never sent to the server, kept
    out of access logs), for the default customer: what a local single user opens. Empty where
    there is no default customer (a MariaDB deployment bootstrapped otherwise)."""
    customers = await services.store.find("customers", name=DEFAULT_CUSTOMER_NAME)
    if not customers:
        return ""
    claims = {
        "customer_id": customers[0]["id"],
        "role": "agent_user",
        "sub": "page",
        "exp": int(time.time()) + PAGE_TOKEN_TTL_S,
    }
    http = services.cfg.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    scheme = "https" if services.cfg.tls else "http"
    token = jwt_encode(claims, services.cfg.jwt_secret)
    return f"{scheme}://{host}:{http.port}/#token={token}"


def register(api: Api, calls: WebsocketCalls) -> None:
    cfg = api.services.cfg
    api.app.asgi_app = MediaSockets(api.app.asgi_app, api, calls)  # type: ignore[method-assign]

    @api.route(
        "POST",
        "/v1.0/media-tokens",
        summary="Mint a media token: put it in a media WebSocket URL as ?token=",
        status=201,
    )
    async def create_media_token(ctx: Ctx) -> dict[str, Any]:
        token = media_token(ctx.principal, cfg.jwt_secret)
        return {
            "token": token,
            "expires_in": MEDIA_TOKEN_TTL_S,
            "customer_id": ctx.principal.customer_id,
            "paths": sorted(MEDIA_ROUTES),
        }

    @api.app.get("/")
    async def page() -> Response:
        return await send_from_directory(STATIC_DIR, "index.html")
