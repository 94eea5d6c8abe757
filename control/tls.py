"""TLS for the control plane's listener (``serve --tls-cert FILE --tls-key FILE``).

Why: Twilio Media Streams connect only to ``wss://``, browsers give the page's microphone only
to a secure origin, and access keys should not cross a network in the clear. Hypercorn does the
TLS (and offers HTTP/2 by ALPN); this module checks the files once at start-up so that a missing,
unreadable or mismatched certificate/key is one clear error naming the file, not a traceback from
deep inside the server when the first client connects.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from hypercorn.config import Config as HypercornConfig


class TlsConfigError(ValueError):
    """The certificate or key cannot serve: the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert_path: str
    key_path: str


def check_tls_files(cert_path: str, key_path: str) -> TlsFiles | None:
    """Both or neither; each readable; the key matches the certificate."""
    if not cert_path and not key_path:
        return None
    if not cert_path or not key_path:
        raise TlsConfigError("--tls-cert and --tls-key go together: give both or neither")
    for flag, path in (("--tls-cert", cert_path), ("--tls-key", key_path)):
        if not os.path.isfile(path):
            raise TlsConfigError(f"{flag} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise TlsConfigError(f"{flag} {path}: not readable by this process")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(reason).upper():
            raise TlsConfigError(
                f"--tls-key {key_path} is not the key of --tls-cert {cert_path}"
            ) from None
        raise TlsConfigError(
            f"--tls-cert {cert_path} / --tls-key {key_path}: not a PEM certificate and key"
            f" ({reason})"
        ) from None
    return TlsFiles(cert_path, key_path)


def apply_tls(config: HypercornConfig, tls: TlsFiles | None) -> None:
    """Serve HTTPS and ``wss://`` (HTTP/2 offered by ALPN, Hypercorn's default) when set."""
    if tls is not None:
        config.certfile = tls.cert_path
        config.keyfile = tls.key_path
