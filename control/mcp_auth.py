"""Credentials for a customer's streamable-HTTP MCP server, and what its refusal means.

A server takes a static header (the agent entry's ``headers``, e.g. ``Authorization: Bearer ...``)
or an OAuth 2.0 client-credentials grant (RFC 6749 4.4; the entry's ``oauth``: token URL, client
id and secret, scope). The grant's token is fetched on first use (client authentication by HTTP
Basic, RFC 6749 2.3.1), kept until shortly before it expires and shared by every session with
the same client, and sent as ``Authorization: Bearer``. A 401 from the MCP server drops that
token and fetches a fresh one, once (a token revoked or expired early).

A refusal that stays (a 401 or 403 from the server, a token URL that refuses the client) is
recorded for its session as :class:`McpRefused`: control/mcp_tools.py turns it into the tool
error ``mcp_unauthorized``, in words, instead of a generic failure. The client secret and the
tokens are never logged, put in an exception or shown by ``repr``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import httpx2
from pydantic import BaseModel, ValidationError

MAX_CACHED_TOKENS = 512
EXPIRY_MARGIN_S = 30.0  # a token is renewed this long before the expiry it was given
DEFAULT_LIFETIME_S = 3600.0  # for a token answered without expires_in (a 401 still renews it)
REFUSED = frozenset({401, 403})


class McpRefused(Exception):
    """The MCP server, or its token URL, refused our credentials; the message says how (no
    secret in it)."""


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A client-credentials grant: where to ask, and as whom."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str = ""


class _TokenAnswer(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: float | None = None


@dataclass(slots=True)
class _Token:
    value: str = field(repr=False)
    renew_at: float


class TokenCache:
    """Tokens by client, until their renewal time; bounded (the oldest goes first)."""

    def __init__(self, max_size: int = MAX_CACHED_TOKENS) -> None:
        self.max_size = max_size
        self._tokens: dict[OAuthClient, _Token] = {}
        self.fetched = 0  # how many tokens were fetched (the tests)

    def get(self, client: OAuthClient) -> str:
        token = self._tokens.get(client)
        if token is None or token.renew_at <= time.monotonic():
            return ""
        return token.value

    def put(self, client: OAuthClient, value: str, lifetime_s: float) -> None:
        self._tokens.pop(client, None)
        while len(self._tokens) >= self.max_size:
            del self._tokens[next(iter(self._tokens))]
        margin = min(EXPIRY_MARGIN_S, lifetime_s / 2)
        self._tokens[client] = _Token(value, time.monotonic() + lifetime_s - margin)
        self.fetched += 1

    def drop(self, client: OAuthClient, value: str) -> None:
        token = self._tokens.get(client)
        if token is not None and token.value == value:
            del self._tokens[client]


TOKENS = TokenCache()  # one per process: the control plane's sessions share their clients' tokens


def token_request(client: OAuthClient) -> httpx2.Request:
    form = {"grant_type": "client_credentials"}
    if client.scope:
        form["scope"] = client.scope
    basic = httpx2.BasicAuth(client.client_id, client.client_secret)
    request = httpx2.Request("POST", client.token_url, data=form)
    return next(basic.auth_flow(request))  # the same request, with its Authorization header


def read_token(client: OAuthClient, response: httpx2.Response) -> tuple[str, float]:
    """(token, lifetime in seconds) from the token URL's answer; :class:`McpRefused` saying why
    there is none."""
    who = f"the token URL refused client {client.client_id!r}"
    if response.status_code != 200:
        try:
            error = str(response.json().get("error", ""))[:64]
        except (ValueError, AttributeError):
            error = ""
        raise McpRefused(f"{who}: HTTP {response.status_code} {error}".strip())
    try:
        answer = _TokenAnswer.model_validate_json(response.content)
    except ValidationError:
        raise McpRefused(f"{who}: its answer has no access_token") from None
    if answer.token_type.lower() != "bearer":
        raise McpRefused(f"{who}: token type {answer.token_type[:32]!r}, not Bearer")
    lifetime = answer.expires_in if answer.expires_in and answer.expires_in > 0 else None
    return answer.access_token, lifetime or DEFAULT_LIFETIME_S


class McpAuth(httpx2.Auth):
    """One session's credentials: the grant's token on each request (when configured), and a
    lasting refusal recorded in ``refusals``."""

    def __init__(
        self, oauth: OAuthClient | None, refusals: list[Exception], tokens: TokenCache = TOKENS
    ) -> None:
        self.oauth = oauth
        self.refusals = refusals
        self.tokens = tokens

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        for _attempt in range(2 if self.oauth is not None else 1):
            token = ""
            if self.oauth is not None:
                token = self.tokens.get(self.oauth)
                if not token:
                    answer = yield token_request(self.oauth)
                    await answer.aread()
                    token = self._take(self.oauth, answer)
                if token:
                    request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401 or self.oauth is None or not token:
                break
            self.tokens.drop(self.oauth, token)  # revoked or expired early: a fresh one, once
        if response.status_code in REFUSED:
            reason = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            self.refusals.append(McpRefused(f"{reason} from the MCP server"))

    def _take(self, oauth: OAuthClient, answer: httpx2.Response) -> str:
        try:
            token, lifetime_s = read_token(oauth, answer)
        except McpRefused as exc:
            self.refusals.append(exc)  # the request goes without a token: the server says 401
            return ""
        self.tokens.put(oauth, token, lifetime_s)
        return token


def refusal(faults: list[Exception]) -> McpRefused | None:
    """The first refusal among a session's faults."""
    return next((f for f in faults if isinstance(f, McpRefused)), None)
