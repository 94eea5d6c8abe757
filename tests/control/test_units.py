"""Pure pieces: token buckets, JWT, the HTTP client's bounds."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from control.auth import AuthError, jwt_decode, jwt_encode
from control.httpclient import MAX_RESPONSE_BYTES, HttpClientError, post
from control.ratelimit import TokenBuckets, retry_after_header


def test_token_bucket_burst_refill_and_retry_after() -> None:
    b = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [b.take("k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("k", 0.0)
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait) == "1"
    assert b.take("other", 0.0) == 0.0  # keys are independent
    assert b.take("k", 0.5) == 0.0  # refilled one token after 0.5 s
    assert b.take("k", 100.0) == 0.0 and b.take("k", 100.0) == 0.0  # capped at burst
    with pytest.raises(ValueError):
        TokenBuckets(0, 1)


def test_token_bucket_table_stays_bounded() -> None:
    b = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=100)
    for i in range(1000):
        b.take(f"ip{i}", float(i) / 1000)
    assert len(b._buckets) <= 100


def test_jwt_roundtrip_and_refusals() -> None:
    claims = {"customer_id": "c", "role": "customer_manager", "sub": "u", "exp": 2_000}
    p = jwt_decode(jwt_encode(claims, "s"), "s", now_s=1_000)
    assert (p.customer_id, p.role, p.actor) == ("c", "customer_manager", "jwt:u")
    for token, secret, now in [
        (jwt_encode(claims, "s"), "s", 3_000),  # expired
        (jwt_encode(claims, "s"), "", 1_000),  # no secret configured
        (jwt_encode({**claims, "role": "root"}, "s"), "s", 1_000),
        (jwt_encode({**claims, "customer_id": ""}, "s"), "s", 1_000),
        (jwt_encode({**claims, "exp": True}, "s"), "s", 1_000),
        ("a.b", "s", 1_000),
        ("!!.??.**", "s", 1_000),
    ]:
        with pytest.raises(AuthError):
            jwt_decode(token, secret, now_s=now)


async def test_http_client_bounds(nursery: trio.Nursery) -> None:
    with pytest.raises(HttpClientError, match="unsupported"):
        await post("ftp://example.org/x", b"", {}, 1.0)

    async def handler(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        if huge[0]:
            size = MAX_RESPONSE_BYTES + 10
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            await stream.send_all(b"x" * size)
        else:
            await trio.sleep(5)  # never answers

    huge = [True]
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(HttpClientError, match="over"):
        await post(f"http://127.0.0.1:{port}/", b"{}", {}, 2.0)
    huge[0] = False
    with pytest.raises(HttpClientError, match="no response within"):
        await post(f"http://127.0.0.1:{port}/", b"{}", {}, 0.2)
    with pytest.raises(HttpClientError):
        await post("http://127.0.0.1:9/", b"{}", {}, 1.0)  # refused
