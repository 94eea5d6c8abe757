"""The control plane's configuration: one typed object from flags and environment (style 8).

Secrets come from the environment only (``CALLBRIDGE_JWT_SECRET``), never from flags, so they do
not show in ``ps``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field

from control.client_addr import Network, ProxyConfigError, parse_networks
from control.db.base import DatabaseUrl, DatabaseUrlError, check_prefix
from control.mcp_servers import McpConfigError, McpStdioServer, parse_stdio_flags
from control.tls import TlsConfigError, TlsFiles, check_tls_files
from media.config import ConfigError, HostPort

DEFAULT_DB = "sqlite:///callbridge.db"
MAX_WORKERS = 256
_NODE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ControlConfig:
    http: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8080))
    db: DatabaseUrl = field(default_factory=lambda: DatabaseUrl.parse(DEFAULT_DB))
    db_prefix: str = ""
    # Embedded SQLite only: apply pending migrations at start-up (documented; never for MariaDB).
    auto_migrate: bool = True
    redis: str = ""  # redis://host:port/db, empty: in-process bus, no cache
    jwt_secret: str = ""
    rate_per_s: float = 50.0  # token bucket refill, per customer and per client IP
    rate_burst: int = 100
    max_body_bytes: int = 64 * 1024
    webhook_attempts: int = 5
    webhook_timeout_s: float = 5.0
    webhook_backoff_s: float = 1.0  # first retry delay; doubles each attempt
    tool_timeout_s: float = 5.0
    # MCP servers (control/mcp_agents.py): stdio ones only from the operator (serve --mcp-stdio)
    mcp_stdio: tuple[McpStdioServer, ...] = ()
    mcp_list_timeout_s: float = 5.0  # at call start; a server slower than this is left out
    mcp_call_timeout_s: float = 8.0  # under the agent's 10 s, so the LLM hears our reason
    record_dir: str | None = None  # serve --record-dir: recordings served with call summaries
    summary_settle_s: float = 1.0  # after a hang-up, for the agent's last transcripts to land
    cache_ttl_s: int = 30
    ws_ping_s: float = 30.0
    ws_dead_s: float = 60.0
    # Scale-out (control/nodes.py): this node's identity, kept across restarts so that a restarted
    # node ends the calls it held before it died; empty: HOSTNAME:HTTP_PORT.
    node_id: str = ""
    node_ttl_s: float = 10.0  # heartbeat lifetime: a node silent this long has its calls reaped
    command_timeout_s: float = 2.0  # a call command routed to another node answers 503 after this
    # Where other nodes open this node's conference links (control/conference_links.py);
    # empty: ws://HOST:PORT of --http (a wildcard host by this host's name).
    node_url: str = ""
    # serve --workers (callbridge/workers.py): media processes of this node, and which one this
    # process is; a worker serves HTTP on the socket its parent bound (http_fd), not on ``http``.
    workers: int = 1
    worker_id: int = 0
    http_fd: int | None = None
    # Conference links with workers: worker j's own listener, on --http's host at link_port + j
    # (0: a port the kernel picks); link_fd is the one its parent bound for this worker.
    link_port: int = 0
    link_fd: int | None = None
    tls: TlsFiles | None = None  # HTTPS and wss:// on the listener (control/tls.py)
    # Connections from these may name the client in X-Forwarded-For / Forwarded (client_addr.py).
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def node(self) -> str:
        """This node's identity: ``node_id``, or HOSTNAME:HTTP_PORT (stable across restarts)."""
        return self.node_id or f"{socket.gethostname()[:56]}:{self.http.port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("control plane")
    g.add_argument(
        "--http",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="control plane HTTP listener (default %(default)s)",
    )
    g.add_argument(
        "--tls-cert",
        default="",
        metavar="FILE",
        help="PEM certificate (chain): serve HTTPS and wss:// on --http (default: plain HTTP)",
    )
    g.add_argument(
        "--tls-key", default="", metavar="FILE", help="PEM private key of --tls-cert (default none)"
    )
    g.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="CIDR",
        help="a reverse proxy whose X-Forwarded-For/Forwarded name the client, for rate limits and"
        " logs; repeat for more (default none: the headers are ignored)",
    )
    add_db_arguments(g)
    g.add_argument(
        "--redis",
        default="",
        metavar="URL",
        help="redis://HOST:PORT/DB for cache-aside and cross-node events (default: none, one"
        " node's in-process cache and events)",
    )
    g.add_argument(
        "--rate-per-s",
        type=float,
        default=50.0,
        metavar="PER_S",
        help="API requests per second per customer and per IP (default %(default)s)",
    )
    g.add_argument(
        "--rate-burst",
        type=int,
        default=100,
        metavar="N",
        help="requests allowed at once above --rate-per-s (token bucket size; default %(default)s)",
    )
    g.add_argument(
        "--node-id",
        default=os.environ.get("CALLBRIDGE_NODE_ID", ""),
        metavar="ID",
        help="this node's identity among nodes sharing the database; keep it across restarts"
        " (default HOSTNAME:HTTP_PORT)",
    )
    g.add_argument(
        "--node-url",
        default=os.environ.get("CALLBRIDGE_NODE_URL", ""),
        metavar="URL",
        help="where other nodes reach this one's HTTP listener for conference audio"
        " (http://HOST:PORT; default: --http, a wildcard host by this host's name; with"
        " --workers its host, at each worker's --link-port)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="media processes behind the same listeners, one core each; more than 1 needs --redis"
        " (events, caches and call commands shared as between nodes; default %(default)s, what the"
        " embedded SQLite setup wants)",
    )
    g.add_argument(
        "--link-port",
        type=int,
        default=0,
        metavar="BASE",
        help="with --workers N: worker j takes the conference links to the bridges it holds on"
        " --http's host at port BASE+j (what other nodes must reach; with --node-url, at its"
        " host), since the shared --http listener may hand a link to a sibling (default: ports"
        " the kernel picks)",
    )
    g.add_argument(
        "--node-ttl",
        type=float,
        default=10.0,
        metavar="S",
        help="heartbeat lifetime in Redis: calls of a node silent this long are ended as"
        " node_lost by a survivor (default %(default)s)",
    )
    g.add_argument(
        "--mcp-stdio",
        action="append",
        default=[],
        metavar="NAME[@CUSTOMER]=CMD",
        help='a stdio MCP server agents may name as a tool ({"type": "mcp", "name":'
        " NAME}), for every customer or one customer id; repeat for more (default none;"
        " customers' own servers are URLs in their agents)",
    )
    g.add_argument(
        "--webhook-attempts",
        type=int,
        default=5,
        metavar="N",
        help="deliveries tried before giving up (default %(default)s)",
    )


def add_db_arguments(g: argparse._ActionsContainer) -> None:
    g.add_argument(
        "--db",
        default=os.environ.get("CALLBRIDGE_DB", DEFAULT_DB),
        metavar="URL",
        help="sqlite:///FILE or mysql://USER@HOST:PORT/DB (default %(default)s)",
    )
    g.add_argument(
        "--db-prefix", default="", metavar="PREFIX", help="table name prefix (default none)"
    )


def parse_db(ns: argparse.Namespace) -> tuple[DatabaseUrl, str]:
    try:
        return DatabaseUrl.parse(ns.db), check_prefix(ns.db_prefix)
    except DatabaseUrlError as exc:
        raise ConfigError(f"--db: {exc}") from exc


def from_args(ns: argparse.Namespace) -> ControlConfig:
    db, prefix = parse_db(ns)
    redis = getattr(ns, "redis", "")
    if redis and not redis.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--redis: expected redis://HOST:PORT/DB, got {redis!r}")
    rate, burst = getattr(ns, "rate_per_s", 50.0), getattr(ns, "rate_burst", 100)
    if rate <= 0 or burst < 1:
        raise ConfigError("--rate-per-s and --rate-burst must be positive")
    attempts = getattr(ns, "webhook_attempts", 5)
    if not 1 <= attempts <= 20:
        raise ConfigError("--webhook-attempts must be 1..20")
    http = HostPort.parse(ns.http, "--http")
    node_id = getattr(ns, "node_id", "")
    if node_id and not _NODE_ID.match(node_id):
        raise ConfigError(f"--node-id: 1-64 of A-Z a-z 0-9 . _ : - expected, got {node_id!r}")
    workers = getattr(ns, "workers", 1)
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be within 1..{MAX_WORKERS}")
    if workers > 1 and not redis:
        raise ConfigError(
            "--workers > 1 needs --redis: the workers share events, caches and call commands"
            " through it, as nodes do"
        )
    link_port = getattr(ns, "link_port", 0)
    if link_port and (workers < 2 or not 1024 <= link_port <= 65535 - workers + 1):
        raise ConfigError(
            "--link-port: a port 1024..65535 for worker 0, with --workers 2 or more (worker j"
            " on BASE+j); one process takes its links on --http"
        )
    node_url = getattr(ns, "node_url", "")
    if node_url and not re.match(r"^(http|ws)://[^/?#\s]+/?$", node_url):
        raise ConfigError(f"--node-url: expected http://HOST:PORT, got {node_url!r}")
    node_ttl_s = getattr(ns, "node_ttl", 10.0)
    if not 1.0 <= node_ttl_s <= 300.0:
        raise ConfigError("--node-ttl must be within 1..300 seconds")
    try:
        tls = check_tls_files(getattr(ns, "tls_cert", ""), getattr(ns, "tls_key", ""))
        proxies = parse_networks(getattr(ns, "trusted_proxy", []))
        mcp_stdio = parse_stdio_flags(getattr(ns, "mcp_stdio", []))
    except (TlsConfigError, ProxyConfigError, McpConfigError) as exc:
        raise ConfigError(str(exc)) from None
    return ControlConfig(
        http=http,
        node_id=node_id,
        node_ttl_s=node_ttl_s,
        node_url=node_url,
        workers=workers,
        link_port=link_port,
        tls=tls,
        trusted_proxies=proxies,
        db=db,
        db_prefix=prefix,
        redis=redis,
        jwt_secret=os.environ.get("CALLBRIDGE_JWT_SECRET", ""),
        rate_per_s=rate,
        rate_burst=burst,
        webhook_attempts=attempts,
        record_dir=getattr(ns, "record_dir", None),
        mcp_stdio=mcp_stdio,
    )
