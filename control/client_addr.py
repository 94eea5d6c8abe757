"""The client's address behind trusted reverse proxies (``--trusted-proxy CIDR``).

Why: behind a TLS proxy every connection comes from the proxy, so per-IP rate limits and logs
would see one client. ``X-Forwarded-For`` and ``Forwarded`` (RFC 7239) name the real one, but any
client can send those headers: they are read only when the connection itself comes from a trusted
proxy, and then only as far back as the chain stays within trusted proxies (walking from the
right, the first address that is not a trusted proxy is the client). A client can therefore never
pick its own rate-limit bucket. ``Forwarded`` wins over ``X-Forwarded-For`` when both are sent.

Pure: addresses and header values in, an address out.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_FOR = re.compile(r'(?:^|[;,\s])for\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)', re.IGNORECASE)
MAX_HOPS = 32  # a longer chain is not a real deployment; ignore the excess (leftmost) hops


class ProxyConfigError(ValueError):
    """A ``--trusted-proxy`` value is not an address or a CIDR network."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ProxyConfigError(f"--trusted-proxy: {value!r} is not a CIDR ({exc})") from None
    return tuple(out)


def _address(text: str) -> Address | None:
    """An address from a header hop: bare, ``[v6]:port``, ``v4:port`` or quoted; else None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # "unknown", an obfuscated "_token", or garbage


def _hops(forwarded: Sequence[str], x_forwarded_for: Sequence[str]) -> list[str]:
    if forwarded:
        return [m.group(1) for m in _FOR.finditer(",".join(forwarded))]
    return [hop for value in x_forwarded_for for hop in value.split(",") if hop.strip()]


def _trusted(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str,
    trusted: tuple[Network, ...],
    forwarded: Sequence[str] = (),
    x_forwarded_for: Sequence[str] = (),
) -> str:
    """The address to rate-limit and log: ``peer`` unless ``peer`` is a trusted proxy."""
    current = _address(peer)
    if current is None or not trusted or not _trusted(current, trusted):
        return peer
    for hop in reversed(_hops(forwarded, x_forwarded_for)[-MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            break  # a hop we cannot read: trust nothing further left
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)
