"""A minimal HTTP/1.1 client on Trio and h11, for webhooks, webhook tools and ARI's REST calls.

Why not a client library: the process is Trio, httpx is not installed here and the need is one
request at a time. h11 (already a Hypercorn dependency) does the protocol; this module only
moves bytes. One connection per request (``Connection: close``), a deadline over the whole
exchange, the response body capped so a hostile receiver cannot make us buffer without limit.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11
import trio

MAX_RESPONSE_BYTES = 256 * 1024


class HttpClientError(Exception):
    """The request could not be completed (connect, TLS, protocol, deadline, oversize)."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    body: bytes


async def post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float, *, verify_tls: bool = True
) -> HttpResponse:
    return await request("POST", url, body, headers, timeout_s, verify_tls=verify_tls)


async def request(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    *,
    verify_tls: bool = True,
) -> HttpResponse:
    """``verify_tls=False`` is a receiver's own opt-out (a self-signed development endpoint);
    https:// is verified against the system's CAs and the host name otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpClientError(f"unsupported URL {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    with trio.move_on_after(timeout_s) as scope:
        try:
            return await _exchange(
                parts.scheme,
                parts.hostname,
                port,
                (method, host_header, target),
                body,
                headers,
                max_response_bytes,
                _tls_context(verify_tls),
            )
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, ssl.SSLError) as exc:
            raise HttpClientError(f"{method} {url}: {_why(exc)}") from exc
    assert scope.cancelled_caught
    raise HttpClientError(f"{method} {url}: no response within {timeout_s:g} s")


def _why(exc: BaseException) -> str:
    """The reason to report: trio wraps a TLS failure (certificate not trusted, wrong host) in
    a BrokenResourceError with no text of its own; the SSL error it carries says what went
    wrong."""
    cause = exc.__cause__ or exc.__context__
    return str(exc) or (str(cause) if cause is not None else "") or type(exc).__name__


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _exchange(
    scheme: str,
    host: str,
    port: int,
    head: tuple[str, str, str],  # method, Host header, target
    body: bytes,
    headers: dict[str, str],
    max_response_bytes: int,
    tls: ssl.SSLContext,
) -> HttpResponse:
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if scheme == "https":
        stream = trio.SSLStream(stream, tls, server_hostname=host)
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        method, host_header, target = head
        request_headers = [
            ("Host", host_header),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers.items(),
        ]
        out = conn.send(h11.Request(method=method, target=target, headers=request_headers))
        out += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        status, chunks, size = 0, [], 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > max_response_bytes:
                    raise HttpClientError(f"response over {max_response_bytes} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return HttpResponse(status, b"".join(chunks))
