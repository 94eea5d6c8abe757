"""Media WebSockets on the control plane's port, the media tokens that open them, and the page.

- ``/v1.0/media-streams``: Twilio Media Streams (JSON, base64 mu-law 8 kHz).
- ``/v1.0/chan-websocket``: Asterisk chan_websocket (sub-protocol ``media``; see
  ``sip/asterisk/README.md`` for the ARI externalMedia call and the dialplan).
- ``/v1.0/browser``: the page's leg, chan_websocket's protocol with binary slin16.

Many media clients cannot set headers (browsers, Asterisk's ``websocket_client.conf``), so a
socket authenticates with, in this order: ``?token=`` (a media token from
``POST /v1.0/media-tokens``: minutes long, opens media sockets only), ``?access_key=ak_...``, or
the ``Authorization`` header. A refusal still upgrades, then closes with 4401 and a reason, so
every client sees why. ``?agent_id=`` picks the caller's agent, as do Twilio's custom parameter
``agent_id`` and the chan_websocket channel variable ``AGENT_ID``; only the authenticated
customer's agents can be picked.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, cast

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
from media.websocket_calls import LegKind, WebsocketCalls

STATIC_DIR = Path(__file__).parent / "static"
CLOSE_UNAUTHORIZED = 4401
PAGE_TOKEN_TTL_S = 12 * 3600  # a working day; restart serve for a new link
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MEDIA_ROUTES: dict[str, LegKind] = {
    "/v1.0/media-streams": "twilio",
    "/v1.0/chan-websocket": "chan_websocket",
    "/v1.0/browser": "browser",
}


async def socket_principal(api: Api) -> Principal:
    """Who opened this media socket; raises :class:`AuthError`."""
    cfg, store = api.services.cfg, api.services.store
    token = websocket.args.get("token", "")
    if token:
        return media_token_decode(token, cfg.jwt_secret)
    key = websocket.args.get("access_key", "")
    header = f"AccessKey {key}" if key else websocket.headers.get("Authorization", "")
    return await authenticate(header, store, cfg.jwt_secret)


def _register_socket(api: Api, path: str, kind: LegKind, calls: WebsocketCalls) -> None:
    async def media_socket() -> None:
        subprotocol = "media" if "media" in websocket.requested_subprotocols else None
        try:
            principal = await socket_principal(api)
        except AuthError as exc:
            calls.count_refusal(kind, "unauthorized")
            await websocket.accept(subprotocol=subprotocol)
            await websocket.close(CLOSE_UNAUTHORIZED, f"unauthorized: {exc}"[:120])
            return
        await websocket.accept(subprotocol=subprotocol)
        params = {"customer_id": principal.customer_id}
        agent_id = websocket.args.get("agent_id", "")
        if _UUID.match(agent_id):
            params["agent_id"] = agent_id
        remote = websocket.remote_addr or ""
        await calls.serve(kind, cast(MessageSocket, websocket), remote_addr=remote, params=params)

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
    return f"http://{host}:{http.port}/#token={jwt_encode(claims, services.cfg.jwt_secret)}"


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
