"""Media tokens: short-lived, for media sockets only, and no REST token opens a media socket."""

from __future__ import annotations

import time

import pytest

from control.auth import (
    AuthError,
    Principal,
    jwt_decode,
    jwt_encode,
    media_token,
    media_token_decode,
)

ADMIN = Principal("c1", "customer_admin", "accesskey:k1")


def test_a_media_token_names_its_customer_with_the_least_role() -> None:
    principal = media_token_decode(media_token(ADMIN, "s" * 32), "s" * 32)
    assert principal == Principal("c1", "agent_user", "jwt:accesskey:k1")


def test_media_and_rest_tokens_do_not_stand_in_for_each_other() -> None:
    media = media_token(ADMIN, "secret")
    with pytest.raises(AuthError, match="media"):
        jwt_decode(media, "secret")
    rest = jwt_encode({"customer_id": "c1", "exp": time.time() + 60}, "secret")
    with pytest.raises(AuthError, match="media"):
        media_token_decode(rest, "secret")


def test_a_media_token_expires_and_needs_the_key() -> None:
    with pytest.raises(AuthError, match="expired"):
        media_token_decode(media_token(ADMIN, "secret", ttl_s=-1), "secret")
    with pytest.raises(AuthError, match="signature"):
        media_token_decode(media_token(ADMIN, "secret"), "other")
