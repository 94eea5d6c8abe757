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

``/`` is the page (``control/static/``, no build step). ``serve`` logs a link to it whose
fragment holds a page token (:func:`page_link`); the page keeps it in the tab's sessionStorage.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import trio
from quart import Response, send_from_directory, websocket

from control.api import Api, Ctx
from control.auth import (
    MEDIA_TOKEN_TTL_S,
    AuthError,
    Principal,
    authenticate,
    jwt_encode,
    media_token,
    media_token_decode,
)
from control.bootstrap import DEFAULT_CUSTOMER_NAME
from control.services import Services
from media.message_socket import MessageSocket
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
        return media_token_decode(token, cfg.jwt_secret)
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


def _authorizer(api: Api, principal: Principal | None) -> Authorize:
    """The socket's URL or header named its caller (``principal``), or else its handshake
    must: Twilio's ``<Stream>`` URL takes no query string, so there the credentials come as
    ``<Parameter name="access_key" .../>`` (or ``token``) in the start message."""
    url_agent_id = websocket.args.get("agent_id", "")

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


def _register_socket(api: Api, path: str, kind: LegKind, calls: WebsocketCalls) -> None:
    async def media_socket() -> None:
        subprotocol = "media" if "media" in websocket.requested_subprotocols else None
        # The REST API's per-IP bucket: a client opening sockets in a loop is held back too.
        remote = api.client_addr(websocket.remote_addr or "", websocket.headers)
        if api.ip_buckets.take(f"ip:{remote}", trio.current_time()):
            calls.count_refusal(kind, "rate_limited")
            await websocket.accept(subprotocol=subprotocol)
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "rate limited: try again later")
            return
        args, header = websocket.args, websocket.headers.get("Authorization", "")
        try:
            principal = await _principal(
                api, args.get("token", ""), args.get("access_key", ""), header
            )
            if principal is None and kind != "twilio":
                raise AuthError("missing credentials")
        except AuthError as exc:
            calls.count_refusal(kind, "unauthorized")
            await websocket.accept(subprotocol=subprotocol)
            await websocket.close(CLOSE_UNAUTHORIZED, f"unauthorized: {exc}"[:120])
            return
        await websocket.accept(subprotocol=subprotocol)
        socket = cast(MessageSocket, websocket)
        await calls.serve(kind, socket, _authorizer(api, principal), remote_addr=remote)

    api.app.websocket(path, endpoint=f"WS {path}")(media_socket)


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
    for path, kind in MEDIA_ROUTES.items():
        _register_socket(api, path, kind, calls)

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
