"""The control plane's app on a real Hypercorn (Trio worker) on a free loopback port.

Quart's in-process test client skips the HTTP/1.1 and WebSocket layers; the tests that are about
those layers (keep-alive, close codes) go through this instead.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from control.tls import TlsFiles, apply_tls


async def serve_app(nursery: trio.Nursery, app: Any, tls: TlsFiles | None = None) -> int:
    """Start ``app`` in ``nursery`` (over TLS with ``tls``); returns its port. Cancel the
    nursery to stop it."""
    cfg = HypercornConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    apply_tls(cfg, tls)
    binds: list[str] = await nursery.start(serve, app, cfg)
    return int(binds[0].rsplit(":", 1)[1])
