"""TLS on the control plane's listener (issue 20): ``--tls-cert/--tls-key`` checked at start-up,
HTTPS with HTTP/2 by ALPN, plain HTTP to the TLS port refused cleanly, and a Twilio media-streams
call over ``wss://`` with the ``websockets`` client. The certificate is made in the test by
``openssl``; clients trust it through ``SSL_CERT_FILE`` as they would a private CA."""

from __future__ import annotations

import argparse
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from conftest import open_plane_for
from live import serve_app

from control import config as control_config
from control.tls import TlsConfigError, TlsFiles, check_tls_files
from media.codecs.g711 import ulaw_to_pcm16
from media.config import ConfigError
from media.twilio import OutboundMedia, TwilioPeer
from tests.control.certs import lone_key, self_signed
from tests.control.test_e2e_websocket_legs import SID, Plane, plane, twilio_chunks
from tests.media.conftest import best_snr_db, tone
from tests.media.ws_client import play

__all__ = ["plane"]  # the e2e plane fixture, used here with TLS on

# Written by the module's fixture before any test uses them (the e2e plane fixture takes its
# configuration as a parameter, fixed when tests are collected).
_DIR = Path(tempfile.mkdtemp(prefix="callbridge-tls-"))
TLS = TlsFiles(str(_DIR / "cert.pem"), str(_DIR / "key.pem"))
OTHER_KEY = str(_DIR / "other-key.pem")


@pytest.fixture(scope="module", autouse=True)
def certificate() -> Iterator[None]:
    """A self-signed certificate for 127.0.0.1 and localhost, and a key that is not its own."""
    self_signed(TLS)
    lone_key(OTHER_KEY)
    yield
    shutil.rmtree(_DIR, ignore_errors=True)


@pytest.fixture
def trust_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard clients (urllib, websockets) verify against the test certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", TLS.cert_path)


def test_certificate_problems_are_one_clear_error(tmp_path: Path) -> None:
    assert check_tls_files("", "") is None
    assert check_tls_files(TLS.cert_path, TLS.key_path) == TLS
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ((TLS.cert_path, ""), "give both or neither"),
        ((str(tmp_path / "absent.pem"), TLS.key_path), "absent.pem: no such file"),
        ((TLS.cert_path, str(tmp_path)), "no such file"),  # a directory
        ((str(garbage), TLS.key_path), "not a PEM certificate and key"),
        ((TLS.cert_path, OTHER_KEY), f"--tls-key {OTHER_KEY} is not the key of --tls-cert"),
    ]
    for (cert, key), message in cases:
        with pytest.raises(TlsConfigError, match=message):
            check_tls_files(cert, key)


def test_serve_flags_reach_the_config_or_stop_start_up() -> None:
    parser = argparse.ArgumentParser()
    control_config.add_arguments(parser)
    ns = parser.parse_args(["--tls-cert", TLS.cert_path, "--tls-key", TLS.key_path])
    assert control_config.from_args(ns).tls == TLS
    assert control_config.from_args(parser.parse_args([])).tls is None
    ns = parser.parse_args(["--tls-cert", TLS.cert_path, "--tls-key", OTHER_KEY])
    with pytest.raises(ConfigError, match="is not the key of"):
        control_config.from_args(ns)


def _get_https(port: int) -> bytes:
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=5) as resp:
        body: bytes = resp.read()
        return body


def _alpn(port: int) -> str | None:
    context = ssl.create_default_context(cafile=TLS.cert_path)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def _plain_http(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return raw.recv(1024)  # the handshake fails: closed, no HTTP answer, no hang
        except ConnectionResetError:
            return b""


async def test_https_with_http2_and_plain_http_refused_cleanly(
    tmp_path: object, nursery: trio.Nursery, trust_it: None
) -> None:
    async with await open_plane_for("sqlite", tmp_path) as plane:
        port = await serve_app(nursery, plane.app, TLS)
        assert b'"status":"ok"' in await trio.to_thread.run_sync(_get_https, port)
        assert await trio.to_thread.run_sync(_alpn, port) == "h2"
        answer = await trio.to_thread.run_sync(_plain_http, port)
        assert not answer.startswith(b"HTTP/"), answer
        # the server is unharmed by it
        assert b'"status":"ok"' in await trio.to_thread.run_sync(_get_https, port)
        nursery.cancel_scope.cancel()


async def twilio_echo_snr_db(host_port: str, plane: Plane) -> float:
    """A Twilio media-streams call over ``wss://host_port`` to the echo agent: the echo's SNR."""
    peer = TwilioPeer(SID)
    src = tone(1000, 1.5)
    url = f"wss://{host_port}/v1.0/media-streams?access_key={plane.access_key}"
    first = [peer.connected(), peer.start({"agent_id": plane.agent_id})]
    session = await trio.to_thread.run_sync(
        lambda: play(url, first, twilio_chunks(peer, src), peer.stop())
    )
    out = [TwilioPeer(SID).parse(m) for m in session.received]
    echoed = b"".join(ulaw_to_pcm16(m.ulaw) for m in out if isinstance(m, OutboundMedia))
    return best_snr_db(src, echoed, max_delay=4000)[0]


@pytest.mark.parametrize("plane", [{"tls": TLS}], indirect=True)
async def test_a_twilio_media_stream_over_wss_echoes(plane: Plane, trust_it: None) -> None:
    assert await twilio_echo_snr_db(plane.http, plane) > 25


def test_serve_with_a_mismatched_key_says_so_in_one_line_and_exits(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "callbridge", "serve", "--agent", "echo", "--tls-cert",
         TLS.cert_path, "--tls-key", OTHER_KEY, "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (
        f"callbridge serve: --tls-key {OTHER_KEY} is not the key of --tls-cert {TLS.cert_path}"
    ), proc.stderr
    assert "Traceback" not in proc.stderr
