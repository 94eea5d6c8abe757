"""Certificates made in the test by the ``openssl`` command (no ``cryptography`` package here)."""

from __future__ import annotations

import shutil
import subprocess

from control.tls import TlsFiles
from tests.conftest import require_service

_CURVE = ("-pkeyopt", "ec_paramgen_curve:prime256v1")
_EC = ("-newkey", "ec", *_CURVE, "-nodes")


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        require_service("openssl", "the openssl command makes the test certificate")
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def self_signed(tls: TlsFiles) -> None:
    """A certificate for 127.0.0.1 and localhost, valid two days, and its key."""
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    _openssl(
        *("req", "-x509", *_EC, "-keyout", tls.key_path, "-out", tls.cert_path, "-days", "2"),
        *("-subj", "/CN=localhost", "-addext", san),
    )


def lone_key(path: str) -> None:
    """A private key that belongs to no certificate."""
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", path
    )
