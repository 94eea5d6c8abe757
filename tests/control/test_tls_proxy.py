"""Behind a TLS proxy (issue 20): nginx, configured with the very snippet ``control/README.md``
shows, terminates TLS in front of a plain-HTTP ``serve --trusted-proxy 127.0.0.1/32``. A Twilio
media-streams call runs over ``wss://`` through it, and the per-IP rate limit follows the real
client (each client connects from its own loopback address), whatever X-Forwarded-For it sends."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from control.client_addr import parse_networks
from control.tls import TlsFiles
from tests.conftest import end_process, require_service
from tests.control.certs import self_signed
from tests.control.test_e2e_audiosocket import _free_port
from tests.control.test_e2e_websocket_legs import Plane, plane
from tests.control.test_tls import twilio_echo_snr_db

__all__ = ["plane"]  # the e2e plane fixture, here behind nginx

README = Path(__file__).parents[2] / "control" / "README.md"
_DIR = Path(tempfile.mkdtemp(prefix="callbridge-proxy-"))
TLS = TlsFiles(str(_DIR / "cert.pem"), str(_DIR / "key.pem"))
BEHIND_NGINX = {
    "trusted_proxies": parse_networks(["127.0.0.1/32"]),
    "rate_burst": 3,
    "rate_per_s": 0.001,
}


def readme_snippet() -> str:
    found = re.search(r"```nginx\n(.*?)```", README.read_text(), re.DOTALL)
    assert found, "control/README.md has no nginx snippet"
    return re.sub(r"(?m)^  ", "", found.group(1))


def nginx_conf(snippet: str, listen_port: int, upstream: str, tmp: Path) -> str:
    server = (
        snippet.replace("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;")
        .replace("/etc/ssl/voice.pem", TLS.cert_path)
        .replace("/etc/ssl/voice.key", TLS.key_path)
        .replace("127.0.0.1:8080", upstream)
    )
    temps = "".join(
        f"{kind}_temp_path {tmp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\nmaster_process off;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} warn;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temps}{server}\n}}\n"
    )


@pytest.fixture(scope="module", autouse=True)
def certificate() -> Iterator[None]:
    self_signed(TLS)
    yield
    shutil.rmtree(_DIR, ignore_errors=True)


@pytest.fixture
def nginx_in_front(plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    binary = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if binary is None:
        require_service("nginx", "apt-get install nginx-light")
    assert binary is not None
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(readme_snippet(), port, plane.http, tmp_path))
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
    monkeypatch.setenv("SSL_CERT_FILE", TLS.cert_path)
    try:
        _wait_listening(port, proc)
        yield port
    finally:
        end_process(proc, 5)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not listen")


def _status_from(source_ip: str, port: int, spoofed: str) -> int:
    """One unauthenticated API request through nginx, from ``source_ip``, claiming ``spoofed``."""
    context = ssl.create_default_context(cafile=TLS.cert_path)
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port, source_address=(source_ip, 0), context=context, timeout=5
    )
    try:
        conn.request("GET", "/v1.0/agents", headers={"X-Forwarded-For": spoofed})
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("plane", [BEHIND_NGINX], indirect=True)
async def test_behind_nginx_the_bucket_is_the_real_clients(nginx_in_front: int) -> None:
    def statuses(source_ip: str, n: int) -> list[int]:
        return [_status_from(source_ip, nginx_in_front, f"198.51.100.{i}") for i in range(n)]

    # a fresh spoofed address each time, yet one client, one bucket: 401 until it is empty
    assert await trio.to_thread.run_sync(statuses, "127.0.0.5", 4) == [401, 401, 401, 429]
    # another client behind the same proxy has its own bucket
    assert await trio.to_thread.run_sync(statuses, "127.0.0.6", 1) == [401]


@pytest.mark.parametrize("plane", [BEHIND_NGINX], indirect=True)
async def test_a_twilio_media_stream_over_wss_through_nginx(
    plane: Plane, nginx_in_front: int
) -> None:
    assert await twilio_echo_snr_db(f"127.0.0.1:{nginx_in_front}", plane) > 25
