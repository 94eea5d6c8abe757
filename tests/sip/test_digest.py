"""Digest authentication (sip/digest.py) against RFC 7616's worked example, an independent
implementation (requests' HTTPDigestAuth), and malformed challenges from the network."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from requests.auth import HTTPDigestAuth

from sip.digest import (
    Challenge,
    Credentials,
    DigestClient,
    DigestError,
    authorization,
    choose_challenge,
    parse_challenge,
    response_digest,
)

# RFC 7616 3.9.1
RFC_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
MUFASA = Credentials("Mufasa", "Circle of Life")
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("alg", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_worked_example(alg: str, expected: str) -> None:
    challenge = parse_challenge(RFC_CHALLENGE.format(alg=alg))
    assert challenge.qop == ("auth", "auth-int") and challenge.algorithm == alg
    value = authorization(challenge, MUFASA, "GET", "/dir/index.html", RFC_CNONCE, 1)
    assert f'response="{expected}"' in value
    assert "qop=auth, nc=00000001" in value
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in value


def _params(value: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


@pytest.mark.parametrize(
    ("alg", "qop"),
    [("MD5", "auth"), ("SHA-256", "auth"), ("MD5-sess", "auth"), ("MD5", None), ("SHA-256", None)],
)
def test_matches_requests_digest_implementation(alg: str, qop: str | None) -> None:
    theirs = HTTPDigestAuth("alice", 'p@ss "word"')
    theirs.init_per_thread_state()
    chal = {"realm": "sip.example.org", "nonce": "abc123", "algorithm": alg, "opaque": "xyz"}
    if qop:
        chal["qop"] = qop
    theirs._thread_local.chal = chal
    uri = "sip:+15551234@sip.example.org"
    reference = _params(theirs.build_digest_header("INVITE", uri) or "")
    header = f'Digest realm="sip.example.org", nonce="abc123", algorithm={alg}, opaque="xyz"'
    challenge = parse_challenge(header + (f', qop="{qop}"' if qop else ""))
    creds = Credentials("alice", 'p@ss "word"')
    cnonce = reference.get("cnonce", "")
    # requests digests the URL's path; give ours the same digest-uri
    ours = response_digest(challenge, creds, "INVITE", reference["uri"], cnonce, 1)
    assert ours == reference["response"]


def test_the_strongest_challenge_is_chosen_and_unusable_ones_skipped() -> None:
    chosen = choose_challenge(
        [
            'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
            'Digest realm="r", nonce="n2", algorithm=SHA-512-256, qop="auth"',
            'Digest realm="r", nonce="n3", algorithm=SHA-256, qop="auth"',
            'Basic realm="r"',
        ]
    )
    assert (chosen.nonce, chosen.algorithm) == ("n3", "SHA-256")


def test_without_qop_the_rfc2069_form_is_used() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n"')
    value = authorization(challenge, Credentials("u", "p"), "REGISTER", "sip:r", "c", 1)
    assert "qop" not in value and "cnonce" not in value and "algorithm=MD5" in value


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "unsupported_scheme"),
        ('Basic realm="x"', "unsupported_scheme"),
        ('Digest realm="x"', "bad_challenge"),
        ('Digest nonce="n"', "bad_challenge"),
        ('Digest realm="x", nonce=""', "bad_challenge"),
        ('Digest realm="x, nonce="n"', "bad_challenge"),
        ('Digest realm="x" nonce="n"', "bad_challenge"),
        ('Digest realm="x", nonce="n", algorithm=SHA-1', "unsupported_algorithm"),
        ('Digest realm="x", nonce="n", qop="auth-int"', "unsupported_qop"),
        ('Digest realm="x", nonce="n", algorithm=MD5-sess', "unsupported_qop"),
        ("Digest ,,,", "bad_challenge"),
    ],
)
def test_malformed_challenges_are_clear_errors(header: str, reason: str) -> None:
    with pytest.raises(DigestError) as caught:
        parse_challenge(header)
    assert caught.value.reason == reason


@given(st.text(max_size=300))
def test_any_header_parses_or_raises_digest_error(text: str) -> None:
    for value in (text, "Digest " + text):
        with contextlib.suppress(DigestError):
            parse_challenge(value)


def test_client_counts_nc_and_gives_up_on_a_repeated_nonce() -> None:
    client = DigestClient(MUFASA, cnonce=lambda: "cn")
    assert client.answer("INVITE", "sip:x") is None
    client.on_challenge(407, ['Digest realm="r", nonce="n1", qop="auth"'])
    first = client.answer("INVITE", "sip:x")
    second = client.answer("BYE", "sip:x")
    assert first is not None and second is not None
    assert first[0] == "Proxy-Authorization" and "nc=00000001" in first[1]
    assert "nc=00000002" in second[1]
    with pytest.raises(DigestError, match="rejected"):
        client.on_challenge(407, ['Digest realm="r", nonce="n1", qop="auth"'])
    client.on_challenge(401, ['Digest realm="r", nonce="n1", qop="auth", stale=true'])
    answer = client.answer("INVITE", "sip:x")
    assert answer is not None and answer[0] == "Authorization" and "nc=00000001" in answer[1]
    assert "Circle of Life" not in repr(client)


def test_client_stops_after_too_many_challenges() -> None:
    client = DigestClient(MUFASA, cnonce=lambda: "cn")
    for n in range(3):
        client.on_challenge(401, [f'Digest realm="r", nonce="n{n}"'])
    with pytest.raises(DigestError, match="too_many"):
        client.on_challenge(401, ['Digest realm="r", nonce="n9"'])


def test_quoted_values_are_escaped_both_ways() -> None:
    challenge = parse_challenge(r'Digest realm="a \"b\" c", nonce="n\\1"')
    assert (challenge.realm, challenge.nonce) == ('a "b" c', "n\\1")
    value = authorization(challenge, Credentials('u"x', "p"), "INVITE", "sip:x", "c", 1)
    assert r'realm="a \"b\" c"' in value and r'username="u\"x"' in value
    assert isinstance(challenge, Challenge)
