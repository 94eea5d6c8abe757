"""Who is calling: JWT (HS256, RFC 7519 with ``exp`` required) or ``AccessKey ak_...``.

Pure functions plus one async lookup. Access keys are stored as SHA-256 of the whole token (a
high-entropy secret needs no slow hash) with a short non-secret prefix for display. JWT is small
enough to do with ``hmac`` here; only HS256 is accepted (``alg`` is checked, never trusted, so
``none`` and RS/HS confusion cannot happen).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from control.store import Store
from proto import safe_json

Role = Literal["platform_admin", "customer_admin", "customer_manager", "agent_user"]
ROLES: tuple[Role, ...] = ("platform_admin", "customer_admin", "customer_manager", "agent_user")
# What each role may do: platform_admin also manages customers (/v1.0/customers) and is its own
# customer's admin, admin everything of its customer, manager everything but keys and webhooks'
# secrets, agent_user reads and acts on calls only. No route mints a platform_admin key: only
# `callbridge db create-accesskey --role platform_admin`, run by whoever holds the database.
_RANK = {"agent_user": 0, "customer_manager": 1, "customer_admin": 2, "platform_admin": 3}
# A JWT's header and claims are parsed before its signature can be trusted: keep them small.
MAX_JWT_PART_BYTES = 4096


class AuthError(Exception):
    """Credentials missing, malformed, expired or unknown; the message is safe to return."""


@dataclass(frozen=True, slots=True)
class Principal:
    customer_id: str
    role: Role
    actor: str  # "accesskey:<id>" or "jwt:<sub>", for audit rows

    def allows(self, needed: Role) -> bool:
        return _RANK[self.role] >= _RANK[needed]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise AuthError("malformed token") from exc


def jwt_encode(claims: dict[str, Any], secret: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def jwt_decode(
    token: str, secret: str, now_s: float | None = None, audience: str = ""
) -> Principal:
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed token")
    try:
        header = safe_json.loads(_unb64url(parts[0]), max_chars=MAX_JWT_PART_BYTES)
        claims = safe_json.loads(_unb64url(parts[1]), max_chars=MAX_JWT_PART_BYTES)
    except ValueError as exc:
        raise AuthError("malformed token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise AuthError("unsupported token algorithm")
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
    if not secret or not hmac.compare_digest(expected.digest(), _unb64url(parts[2])):
        raise AuthError("bad token signature")
    if not isinstance(claims, dict):
        raise AuthError("malformed token")
    if (claims.get("aud") == MEDIA_AUDIENCE) != (audience == MEDIA_AUDIENCE):
        raise AuthError("a media token opens media sockets only, and only it does")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AuthError("token has no exp")
    if exp <= (time.time() if now_s is None else now_s):
        raise AuthError("token expired")
    customer_id, role = claims.get("customer_id"), claims.get("role", "agent_user")
    if not isinstance(customer_id, str) or not customer_id or role not in ROLES:
        raise AuthError("token lacks customer_id or a valid role")
    return Principal(customer_id, role, f"jwt:{claims.get('sub', '')}")


MEDIA_AUDIENCE = "callbridge-media"
MEDIA_TOKEN_TTL_S = 300
"""Media tokens ride in a WebSocket URL (``?token=``), where proxies and browser history may keep
them: they open media sockets only, and only for minutes."""


def media_token(principal: Principal, secret: str, ttl_s: int = MEDIA_TOKEN_TTL_S) -> str:
    claims = {
        "customer_id": principal.customer_id,
        "role": "agent_user",
        "aud": MEDIA_AUDIENCE,
        "sub": principal.actor,
        "exp": int(time.time()) + ttl_s,
    }
    return jwt_encode(claims, secret)


def media_token_decode(token: str, secret: str) -> Principal:
    """The principal behind a media token; a REST token (no media ``aud``) is refused."""
    return jwt_decode(token, secret, audience=MEDIA_AUDIENCE)


def new_access_key() -> tuple[str, str, str]:
    """A fresh key: (token shown once, its SHA-256 to store, its display prefix)."""
    token = "ak_" + secrets.token_urlsafe(32)
    return token, hash_access_key(token), token[:10]


def hash_access_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def access_key_cache_key(store: Store, digest: str) -> str:
    return f"callbridge:{store.db.prefix}accesskey:{digest}"


async def _access_key_row(store: Store, digest: str) -> dict[str, Any] | None:
    """Cache-aside on Redis when configured (revocation invalidates it); unknown keys are never
    cached, so random guesses cannot fill the cache."""
    cache_key = access_key_cache_key(store, digest)
    if store.cache is not None:
        hit = await store.cache.get(cache_key)
        if hit is not None:
            row: dict[str, Any] = json.loads(hit)
            return row
    rows = await store.find("accesskeys", token_hash=digest)
    if not rows:
        return None
    if store.cache is not None:
        await store.cache.set(cache_key, json.dumps(rows[0]), store.cache_ttl_s)
    return rows[0]


async def inactive_customer(store: Store, customer_id: str) -> str:
    """Why ``customer_id`` may not act ("unknown", "disabled"), or "" when it may. Cached with
    the customer row (Redis, when configured); disabling invalidates it (control/customers.py)."""
    row = await store.get("customers", customer_id, None)
    if row is None:
        return "unknown"
    if row.get("status", "active") != "active":
        return "disabled"
    return ""


async def active(store: Store, principal: Principal) -> Principal:
    """A token's principal, if its customer may act: a JWT (REST or media) outlives any
    revocation (it is not stored), so its customer is checked instead."""
    problem = await inactive_customer(store, principal.customer_id)
    if problem:
        raise AuthError(f"the token's customer is {problem}")
    return principal


async def authenticate(header: str, store: Store, jwt_secret: str) -> Principal:
    """The principal behind an ``Authorization`` header value, or :class:`AuthError`."""
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if not credential:
        raise AuthError("missing credentials")
    if scheme.lower() == "bearer":
        return await active(store, jwt_decode(credential, jwt_secret))
    if scheme == "AccessKey":
        if not credential.startswith("ak_") or len(credential) > 128:
            raise AuthError("malformed access key")
        key = await _access_key_row(store, hash_access_key(credential))
        if key is None:
            raise AuthError("unknown access key")
        if key["tm_expire"] and key["tm_expire"] <= _now_text():
            raise AuthError("access key expired")
        return Principal(key["customer_id"], key["role"], f"accesskey:{key['id']}")
    raise AuthError("unsupported authorization scheme")
