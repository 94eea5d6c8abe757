"""HTTP Digest authentication as SIP uses it (RFC 3261 22.4, RFC 7616, RFC 2617), sans-I/O.

The client side only: read a ``WWW-Authenticate``/``Proxy-Authenticate`` challenge, pick the
strongest algorithm we support (SHA-256 over MD5, each also as ``-sess``), and compute the
``Authorization``/``Proxy-Authorization`` value with ``qop=auth`` (or RFC 2069's form when the
server offers no qop). ``auth-int`` is not supported: a challenge that requires it is refused.
Challenges come from the network: anything malformed raises :class:`DigestError`, never another
exception. The password is never part of a repr, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

ALGORITHMS = {"SHA-256": hashlib.sha256, "MD5": hashlib.md5}
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")
MAX_ATTEMPTS = 3  # answered challenges per request before we give up (a loop guard)
_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|{_TOKEN})\s*(,|$)')


class DigestError(ValueError):
    """A challenge we cannot parse or answer; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # upper case: MD5, MD5-SESS, SHA-256, SHA-256-SESS
    qop: tuple[str, ...] = ()  # what the server offers; empty: RFC 2069 compatibility
    opaque: str | None = None
    stale: bool = False

    @property
    def hash_name(self) -> str:
        return self.algorithm.removesuffix("-SESS")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_params(text: str) -> dict[str, str]:
    """``a="x, y", b=tok`` -> ``{"a": "x, y", "b": "tok"}`` (names lower-cased)."""
    params: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None:
            raise DigestError("bad_challenge", f"unparsable parameters at {position}")
        params[match.group(1).lower()] = _unquote(match.group(2))
        position = match.end()
    return params


def parse_challenge(value: str) -> Challenge:
    """One ``Digest realm="...", nonce="...", ...`` challenge, or :class:`DigestError`."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError("unsupported_scheme", scheme[:20])
    params = parse_params(rest.strip())
    if "realm" not in params or not params.get("nonce"):
        raise DigestError("bad_challenge", "realm and nonce are required")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in _PREFERENCE:
        raise DigestError("unsupported_algorithm", algorithm[:20])
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise DigestError("unsupported_qop", ",".join(qop)[:40])
    if algorithm.endswith("-SESS") and not qop:  # the cnonce it hashes travels only with qop
        raise DigestError("unsupported_qop", f"{algorithm} without qop")
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def choose_challenge(values: list[str]) -> Challenge:
    """The strongest challenge we can answer among several (RFC 7616 3.7), else DigestError."""
    usable: list[Challenge] = []
    error = DigestError("no_challenge")
    for value in values:
        try:
            usable.append(parse_challenge(value))
        except DigestError as exc:
            error = exc
    if not usable:
        raise error
    return min(usable, key=lambda c: _PREFERENCE.index(c.algorithm))


def _h(challenge: Challenge, text: str) -> str:
    return ALGORITHMS[challenge.hash_name](text.encode()).hexdigest()


def response_digest(challenge: Challenge, creds: Credentials, method: str, uri: str,
                    cnonce: str, nc: int) -> str:  # fmt: skip
    """The ``response`` value (RFC 7616 3.4.1; RFC 2617 3.2.2.1 without qop)."""
    ha1 = _h(challenge, f"{creds.username}:{challenge.realm}:{creds.password}")
    if challenge.algorithm.endswith("-SESS"):
        ha1 = _h(challenge, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _h(challenge, f"{method}:{uri}")
    if not challenge.qop:
        return _h(challenge, f"{ha1}:{challenge.nonce}:{ha2}")
    return _h(challenge, f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(challenge: Challenge, creds: Credentials, method: str, uri: str,
                  cnonce: str, nc: int) -> str:  # fmt: skip
    """The ``Authorization``/``Proxy-Authorization`` header value answering ``challenge``."""
    response = response_digest(challenge, creds, method, uri, cnonce, nc)
    parts = [
        f"username={_quote(creds.username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm.replace('-SESS', '-sess')}",
    ]
    if challenge.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f"cnonce={_quote(cnonce)}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


@dataclass(slots=True)
class DigestClient:
    """One client's answers to challenges: the current challenge, ``nc`` per nonce, and when
    to give up (a repeated challenge for a nonce we already answered means a wrong password,
    unless the server says ``stale``)."""

    creds: Credentials
    cnonce: Callable[[], str]
    challenge: Challenge | None = None
    header: str = "Authorization"  # or Proxy-Authorization, after a 407
    nc: int = 0
    attempts: int = 0

    def on_challenge(self, status: int, values: list[str]) -> None:
        """Take a 401/407's challenges; raise :class:`DigestError` when we should give up."""
        challenge = choose_challenge(values)
        if self.attempts >= MAX_ATTEMPTS:
            raise DigestError("too_many_challenges")
        previous = self.challenge
        if previous is not None and previous.nonce == challenge.nonce and not challenge.stale:
            raise DigestError("rejected", f"credentials of {self.creds.username!r} refused")
        self.attempts += 1
        self.challenge, self.nc = challenge, 0
        self.header = "Proxy-Authorization" if status == 407 else "Authorization"

    def answer(self, method: str, uri: str) -> tuple[str, str] | None:
        """The header for the next request, or None before any challenge; counts ``nc``."""
        if self.challenge is None:
            return None
        self.nc += 1
        value = authorization(self.challenge, self.creds, method, uri, self.cnonce(), self.nc)
        return self.header, value

    def reset_attempts(self) -> None:
        """A request was accepted: later challenges (a new nonce) may be answered again."""
        self.attempts = 0
