"""``callbridge serve --ari URL --ari-user USER --ari-app NAME``: one typed object (style 8).

The password comes from ``CALLBRIDGE_ARI_PASSWORD`` only: a flag would show it in ``ps`` and in
shell history. It is kept out of ``repr`` so that no log line can carry it.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from media.config import ConfigError, HostPort

PASSWORD_ENV = "CALLBRIDGE_ARI_PASSWORD"
_APP_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TransferMode = Literal["blind", "warm"]
MediaTransport = Literal["audiosocket", "websocket"]


@dataclass(frozen=True, slots=True)
class AriConfig:
    url: str  # http://HOST:PORT/ari
    user: str
    password: str = field(repr=False)
    app: str = "callbridge"
    # Where Asterisk connects for ExternalMedia: our AudioSocket listener as Asterisk reaches it.
    media_host: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 9000))
    # ...or chan_websocket: Asterisk dials this websocket_client.conf connection, whose URI is
    # our /v1.0/chan-websocket route (with an access key).
    media_transport: MediaTransport = "audiosocket"
    media_connection: str = "callbridge"
    # Transfers: originate the target through this dial string ({target} is replaced) and
    # bridge it with the caller; without one, the caller continues in this dialplan context.
    transfer_dial: str = ""
    transfer_context: str = "callbridge-transfer"
    transfer_mode: TransferMode = "blind"  # warm: the agent stays until it ends the call
    outbound_dial: str = ""  # POST /v1.0/calls leg asterisk: the dial string ({destination})
    ring_timeout_s: int = 30
    request_timeout_s: float = 5.0  # each REST call's deadline
    setup_timeout_s: float = 10.0  # Stasis entry -> our AudioSocket connected
    max_setups: int = 64  # calls being set up at once; more wait their turn
    record_dir: str | None = None  # --record-dir: Asterisk records each call's bridge too

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--ari: expected http://HOST:PORT, got {self.url!r}")
        if not self.user:
            raise ConfigError("--ari-user is required with --ari")
        if not self.password:
            raise ConfigError(f"--ari needs the ARI password in the {PASSWORD_ENV} environment")
        if self.media_transport == "websocket" and not _APP_NAME.match(self.media_connection):
            raise ConfigError(
                f"--ari-media-connection: a websocket_client.conf id, got {self.media_connection!r}"
            )
        if not _APP_NAME.match(self.app):
            raise ConfigError(f"--ari-app: letters, digits, _ . - only, got {self.app!r}")
        for name in ("transfer_dial", "outbound_dial"):
            value = getattr(self, name)
            if (
                value
                and "{" in value
                and not any(k in value for k in ("{target}", "{destination}"))
            ):
                raise ConfigError(
                    f"--ari-{name.replace('_', '-')}: unknown placeholder in {value!r}"
                )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Asterisk ARI (Stasis application)")
    g.add_argument(
        "--ari",
        metavar="URL",
        help=f"Asterisk's ARI, e.g. http://127.0.0.1:8088 (password in ${PASSWORD_ENV};"
        " default: off)",
    )
    g.add_argument(
        "--ari-user", default="", metavar="USER", help="ari.conf user (required with --ari)"
    )
    g.add_argument(
        "--ari-app",
        default="callbridge",
        metavar="NAME",
        help="Stasis app name (default %(default)s)",
    )
    g.add_argument(
        "--ari-media-host",
        metavar="HOST:PORT",
        help="our AudioSocket listener as Asterisk reaches it (default: --audiosocket); with"
        " --workers N, worker 0's own listener for it, at this port on --audiosocket's host (a"
        " free one where it is --audiosocket's port)",
    )
    g.add_argument(
        "--ari-media",
        choices=("audiosocket", "websocket"),
        default="audiosocket",
        help="ExternalMedia to our AudioSocket listener, or to our chan_websocket route through"
        " a websocket_client.conf connection (default %(default)s; slin16 either way)",
    )
    g.add_argument(
        "--ari-media-connection",
        default="callbridge",
        metavar="ID",
        help="with --ari-media websocket: the websocket_client.conf connection id"
        " (default %(default)s)",
    )
    g.add_argument(
        "--ari-transfer-dial",
        default="",
        metavar="DIAL",
        help="transfer by originating DIAL ({target} replaced), e.g. PJSIP/{target}@trunk"
        " (default: none, see --ari-transfer-context)",
    )
    g.add_argument(
        "--ari-transfer-context",
        default="callbridge-transfer",
        metavar="CONTEXT",
        help="without --ari-transfer-dial: the caller continues at TARGET@CONTEXT"
        " (default %(default)s)",
    )
    g.add_argument(
        "--ari-transfer-mode",
        choices=("blind", "warm"),
        default="blind",
        help="warm: the agent stays on the call until it ends it (default %(default)s)",
    )
    g.add_argument(
        "--ari-outbound-dial",
        default="",
        metavar="DIAL",
        help="POST /v1.0/calls leg asterisk dials this ({destination} replaced; default: none)",
    )


def from_args(ns: argparse.Namespace, audiosocket: HostPort) -> AriConfig | None:
    if not getattr(ns, "ari", None):
        return None
    url = ns.ari.rstrip("/")
    if not urlsplit(url).path:
        url += "/ari"
    media = audiosocket
    transport: MediaTransport = "websocket" if ns.ari_media == "websocket" else "audiosocket"
    if ns.ari_media_host:
        media = HostPort.parse(ns.ari_media_host, "--ari-media-host")
    elif audiosocket.host in ("0.0.0.0", "::", "") and transport == "audiosocket":
        raise ConfigError("--ari-media-host is required when --audiosocket listens on all hosts")
    return AriConfig(
        url=url,
        user=ns.ari_user,
        password=os.environ.get(PASSWORD_ENV, ""),
        app=ns.ari_app,
        media_host=media,
        media_transport=transport,
        media_connection=ns.ari_media_connection,
        transfer_dial=ns.ari_transfer_dial,
        transfer_context=ns.ari_transfer_context,
        transfer_mode=ns.ari_transfer_mode,
        outbound_dial=ns.ari_outbound_dial,
        record_dir=getattr(ns, "record_dir", None),
    )
