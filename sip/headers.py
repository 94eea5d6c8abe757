"""Values inside SIP headers (RFC 3261 19, 20, 25): name-addr, Via and SIP URIs.

Only what a UA needs to route: the URI and tag of From/To/Contact, the sent-by and branch of a
Via, and host/port of a ``sip:`` URI. Malformed values raise :class:`SipHeaderError`.
"""

from __future__ import annotations

from dataclasses import dataclass

SIP_PORT = 5060


class SipHeaderError(ValueError):
    """A header value does not parse; the message names the header."""


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;lr`` -> ``{"a": "1", "lr": ""}`` (names lower-cased)."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if part:
            name, _, value = part.partition("=")
            params[name.strip().lower()] = value.strip()
    return params


@dataclass(frozen=True, slots=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f"{self.display} " if self.display else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{display}<{self.uri}>{params}"


def parse_name_addr(value: str, header: str = "From") -> NameAddr:
    """From/To/Contact/Refer-To/Route: ``"Bob" <sip:bob@host>;tag=x`` or ``sip:bob@host;tag=x``."""
    value = value.strip()
    if "<" in value:
        display, _, rest = value.partition("<")
        uri, close, params = rest.partition(">")
        if not close:
            raise SipHeaderError(f"{header}: unclosed <")
        display = display.strip()
    else:
        # RFC 3261 20.10: without <>, parameters after the URI belong to the header.
        display = ""
        uri, _, params = value.partition(";")
    uri = uri.strip()
    if ":" not in uri or " " in uri:
        raise SipHeaderError(f"{header}: bad URI {uri[:40]!r}")
    return NameAddr(display, uri, parse_params(params))


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def _split_host_port(text: str, what: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            raise SipHeaderError(f"{what}: bad IPv6 host")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SipHeaderError(f"{what}: empty host")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipHeaderError(f"{what}: bad port {port_text[:10]!r}")
    return host, int(port_text)


def parse_via(value: str) -> Via:
    """``SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK...;rport``."""
    protocol, _, rest = value.strip().partition(" ")
    parts = protocol.split("/")
    if len(parts) != 3 or parts[0] != "SIP" or parts[1] != "2.0":
        raise SipHeaderError(f"Via: bad protocol {protocol[:20]!r}")
    sent_by, _, params = rest.strip().partition(";")
    host, port = _split_host_port(sent_by, "Via")
    return Via(parts[2].upper(), host, port, parse_params(params))


@dataclass(frozen=True, slots=True)
class SipUri:
    user: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port or SIP_PORT


def parse_uri(uri: str) -> SipUri:
    """``sip:user@host:port;params`` (no DNS: the transport resolves names)."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipHeaderError(f"URI: not a SIP URI {uri[:40]!r}")
    rest = rest.partition("?")[0]
    hostpart, _, params = rest.partition(";")
    user, at, hostport = hostpart.rpartition("@")
    host, port = _split_host_port(hostport, "URI")
    return SipUri(user if at else "", host, port, parse_params(params))
