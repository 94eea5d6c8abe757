"""``--trusted-proxy``: X-Forwarded-For / Forwarded name the client only when the connection comes
from a trusted proxy, and a client can never pick its own rate-limit bucket (issue 20)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator

import pytest
import trio
from conftest import Plane, open_plane_for
from live import serve_app

from control.client_addr import ProxyConfigError, client_address, parse_networks
from control.httpclient import request

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8:1::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "xff", "client"),
    [
        ("203.0.113.9", [], ["198.51.100.1"], "203.0.113.9"),  # not a proxy: headers ignored
        ("10.0.0.5", [], ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.5", [], ["198.51.100.66, 198.51.100.1"], "198.51.100.1"),  # spoofed left part
        ("10.0.0.5", [], ["198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two trusted hops
        ("10.0.0.5", [], ["198.51.100.1", "10.1.2.3"], "198.51.100.1"),  # header sent twice
        ("10.0.0.5", [], [], "10.0.0.5"),  # a proxy that names nobody
        ("10.0.0.5", [], ["nonsense"], "10.0.0.5"),
        ("10.0.0.5", [], ["10.9.9.9"], "10.9.9.9"),  # all trusted: the leftmost
        ("10.0.0.5", ['for=198.51.100.7;proto=https, for="[2001:db8::5]:443"'], [], "2001:db8::5"),
        ("10.0.0.5", ["for=198.51.100.7:1234"], ["192.0.2.1"], "198.51.100.7"),  # Forwarded wins
        ("10.0.0.5", ["for=unknown"], [], "10.0.0.5"),
        ("2001:db8:1::7", [], ["198.51.100.1"], "198.51.100.1"),
        ("<local>", [], ["198.51.100.1"], "<local>"),
    ],
)
def test_client_address(peer: str, forwarded: list[str], xff: list[str], client: str) -> None:
    assert client_address(peer, PROXIES, forwarded, xff) == client


def test_no_trusted_proxy_means_headers_never_count() -> None:
    assert client_address("127.0.0.1", (), [], ["198.51.100.1"]) == "127.0.0.1"


def test_a_bad_cidr_is_a_clear_error() -> None:
    assert parse_networks(["127.0.0.1"]) == (ipaddress.ip_network("127.0.0.1/32"),)
    with pytest.raises(ProxyConfigError, match=re.escape("'10.0.0/33' is not a CIDR")):
        parse_networks(["10.0.0/33"])


async def _statuses(port: int, xff: str, n: int) -> list[int]:
    """``n`` unauthenticated API requests: 401 while the IP bucket lasts, then 429."""
    url = f"http://127.0.0.1:{port}/v1.0/agents"
    return [
        (await request("GET", url, b"", {"X-Forwarded-For": xff}, 5.0)).status_code
        for _ in range(n)
    ]


@pytest.fixture(params=["untrusted", "trusted"])
async def served(
    request: pytest.FixtureRequest, tmp_path: object
) -> AsyncIterator[tuple[str, Plane, int]]:
    trusted = parse_networks(["127.0.0.0/8"]) if request.param == "trusted" else ()
    limits = {"rate_per_s": 0.001, "rate_burst": 3, "trusted_proxies": trusted}
    async with (
        await open_plane_for("sqlite", tmp_path, **limits) as plane,
        trio.open_nursery() as nursery,
    ):
        yield request.param, plane, await serve_app(nursery, plane.app)
        nursery.cancel_scope.cancel()


async def test_a_spoofed_forwarded_for_moves_the_bucket_only_through_a_trusted_proxy(
    served: tuple[str, Plane, int],
) -> None:
    mode, _, port = served
    assert await _statuses(port, "198.51.100.1", 4) == [401, 401, 401, 429]
    fresh = await _statuses(port, "198.51.100.2", 1)
    if mode == "untrusted":
        assert fresh == [429]  # the header is ignored: still the connection's own bucket
    else:
        assert fresh == [401]  # the proxy's word counts: another client, another bucket
        # a client that prepends a fake address still lands in its own bucket
        assert await _statuses(port, "198.51.100.3, 198.51.100.1", 1) == [429]
