"""Configuration of the SIP listener and its RTP legs: one typed object, validated once."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field, replace

from media.config import ConfigError, HostPort
from sip.digest import Credentials
from sip.headers import SipHeaderError, parse_uri

PASSWORD_ENV = "CALLBRIDGE_SIP_PASSWORD"  # never a flag: it would show in ps and shell history


@dataclass(frozen=True, slots=True)
class SipConfig:
    listen: HostPort
    advertise: str = ""  # address put in Via, Contact and SDP; default: the listen host
    rtp_port_min: int = 10_000
    rtp_port_max: int = 20_000
    invite_rate_per_s: float = 10.0  # per source address; a proxy in front counts as one
    invite_burst: int = 50
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722")
    outbound: HostPort | None = None  # where outbound INVITEs go (a trunk or Kamailio)
    ring_timeout_s: float = 60.0  # an outbound call unanswered this long is cancelled
    auth_user: str = ""  # digest user for challenges; default: the --sip-register user
    auth_password: str = field(default="", repr=False)
    register: str = ""  # address-of-record to register, sip:user@registrar[:port]
    register_expires_s: int = 600

    def __post_init__(self) -> None:
        if not 0 < self.rtp_port_min < self.rtp_port_max <= 65534:
            raise ConfigError(f"--rtp-ports: bad range {self.rtp_port_min}-{self.rtp_port_max}")
        if self.invite_rate_per_s <= 0 or self.invite_burst < 1:
            raise ConfigError("--sip-invite-rate must be > 0 and --sip-invite-burst >= 1")
        try:
            address = ipaddress.ip_address(self.public_host)
        except ValueError:
            raise ConfigError(f"--sip-advertise: not an IP address: {self.public_host!r}") from None
        if address.is_unspecified:
            raise ConfigError("--sip listens on every address: give --sip-advertise an IP")
        if self.register:
            try:
                uri = parse_uri(self.register)
            except SipHeaderError:
                raise ConfigError(f"--sip-register: not a SIP URI: {self.register!r}") from None
            if not uri.user:
                raise ConfigError("--sip-register: the URI needs a user, sip:user@host")
        if self.ring_timeout_s <= 0 or not 60 <= self.register_expires_s <= 86_400:
            raise ConfigError("--sip-ring-timeout > 0, --sip-register-expires 60..86400")

    @property
    def credentials(self) -> Credentials | None:
        """Digest credentials for challenges to our INVITEs and REGISTERs, if configured."""
        user = self.auth_user or (parse_uri(self.register).user if self.register else "")
        return Credentials(user, self.auth_password) if user and self.auth_password else None

    def outbound_route(self, destination: str) -> tuple[str, str, HostPort] | None:
        """(Request-URI, the trunk's host for From, next hop) for a number or a SIP URI, or
        None without a trunk. A number is a user at the trunk; a SIP URI (``sip:bob@pbx``) is
        the Request-URI as it stands, still sent through the trunk, which routes it onwards.
        Raises :class:`SipHeaderError` for a URI that is not one, or that carries headers
        (``?X=..``): a transfer target must not write the INVITE's headers."""
        hop = self.outbound
        if hop is None and self.register:
            host, port = parse_uri(self.register).address
            hop = HostPort(host, port)
        if hop is None:
            return None
        host = f"[{hop.host}]" if ":" in hop.host else hop.host
        if destination.lower().startswith(("sip:", "sips:")):
            if "?" in destination or any(c.isspace() or c in '<>"' for c in destination):
                raise SipHeaderError(f"URI: headers or separators in {destination[:40]!r}")
            parse_uri(destination)  # raises for a URI without a host
            return destination, host, hop
        return f"sip:{destination}@{host}:{hop.port}", host, hop

    @property
    def public_host(self) -> str:
        return self.advertise or self.listen.host


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("SIP (calls straight to callbridge, e.g. behind Kamailio)")
    g.add_argument(
        "--sip",
        default="",
        metavar="HOST:PORT",
        help="SIP UDP listener, e.g. 127.0.0.1:5060 (default: off)",
    )
    g.add_argument(
        "--sip-advertise",
        default="",
        metavar="IP",
        help="address in Via, Contact and SDP (default: the --sip host)",
    )
    g.add_argument(
        "--rtp-ports",
        default="10000-20000",
        metavar="MIN-MAX",
        help="RTP UDP port range (default %(default)s)",
    )
    g.add_argument(
        "--sip-invite-rate",
        type=float,
        default=10.0,
        metavar="PER_S",
        help="new INVITEs accepted per second from one source address; a proxy in front counts"
        " as one (default %(default)s)",
    )
    g.add_argument(
        "--sip-invite-burst",
        type=int,
        default=50,
        metavar="N",
        help="INVITEs accepted at once above --sip-invite-rate (default %(default)s)",
    )
    g.add_argument(
        "--sip-outbound",
        default="",
        metavar="HOST:PORT",
        help="where POST /v1.0/calls sends INVITEs (trunk/proxy); default: the registrar",
    )
    g.add_argument(
        "--sip-ring-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="cancel an outbound call unanswered after S s (default %(default)s)",
    )
    g.add_argument(
        "--sip-register",
        default="",
        metavar="SIP_URI",
        help=f"register sip:user@host[:port] (digest password from ${PASSWORD_ENV}; default: off)",
    )
    g.add_argument(
        "--sip-register-expires",
        type=int,
        default=600,
        metavar="S",
        help="registration lifetime asked of the registrar, refreshed before it ends"
        " (default %(default)s)",
    )
    g.add_argument(
        "--sip-auth-user",
        default="",
        metavar="USER",
        help=f"digest user for challenges (default: the --sip-register user; ${PASSWORD_ENV})",
    )


def _rtp_ports(ns: argparse.Namespace) -> tuple[int, int]:
    low, sep, high = str(ns.rtp_ports).partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ConfigError(f"--rtp-ports: expected MIN-MAX, got {ns.rtp_ports!r}")
    return int(low), int(high)


def rtp_from_args(ns: argparse.Namespace) -> SipConfig:
    """The RTP side alone, for legs attached by SDP through the API (``POST /v1.0/rtp-offers``):
    the port range, and the address our answers carry (``--sip-advertise``, else loopback)."""
    low, high = _rtp_ports(ns)
    sip = HostPort.parse(ns.sip, "--sip") if ns.sip else HostPort("127.0.0.1", 0)
    advertise = ns.sip_advertise or ("127.0.0.1" if sip.host in ("0.0.0.0", "::") else "")
    return SipConfig(listen=sip, advertise=advertise, rtp_port_min=low, rtp_port_max=high)


def rtp_default() -> SipConfig:
    """RTP legs on loopback with the default port range (tests, embedded use)."""
    return SipConfig(listen=HostPort("127.0.0.1", 0))


def for_worker(cfg: SipConfig, worker_id: int, workers: int) -> SipConfig:
    """Worker ``worker_id`` of ``serve --workers N``: SIP on the listen port + its id, RTP from
    its own slice of the port range. One UDP port per worker because a SIP transaction or
    dialog lives in the process that holds it, and ``SO_REUSEPORT`` would hash a proxy in front
    (one source address) onto one worker; disjoint RTP slices so that a port names its worker.
    Raises :class:`ConfigError` where a port or a slice does not fit."""
    if workers <= 1:
        return cfg
    if cfg.register:
        raise ConfigError(
            "--sip-register with --workers > 1: each worker has a SIP port of its own, and one"
            " registration would send every call to one of them; put Kamailio in front (its"
            " dispatcher list names each worker's port) and register it instead"
        )
    port = cfg.listen.port + worker_id if cfg.listen.port else 0  # 0: each picked by the kernel
    if port > 65535:
        raise ConfigError(f"--sip: worker {worker_id} would listen on port {port} (> 65535)")
    low, high = rtp_slice(cfg.rtp_port_min, cfg.rtp_port_max, worker_id, workers)
    listen = HostPort(cfg.listen.host, port)
    return replace(cfg, listen=listen, rtp_port_min=low, rtp_port_max=high)


def rtp_slice(port_min: int, port_max: int, worker_id: int, workers: int) -> tuple[int, int]:
    """Worker ``worker_id``'s share of ``port_min``-``port_max``: whole RTP/RTCP pairs (an even
    port and the odd one above it, as a call binds them), as even a split as the pairs allow."""
    pairs = range(port_min + port_min % 2, port_max + 1, 2)
    if len(pairs) < workers:
        raise ConfigError(
            f"--rtp-ports {port_min}-{port_max} holds {len(pairs)} RTP port pair(s) for"
            f" {workers} workers: each worker takes its calls' RTP from a slice of its own and"
            " needs at least one pair (an even port and the odd one above it) per call; widen"
            " the range"
        )
    share = pairs[worker_id * len(pairs) // workers : (worker_id + 1) * len(pairs) // workers]
    return share[0], min(share[-1] + 1, 65534)


def from_args(ns: argparse.Namespace) -> SipConfig | None:
    if not ns.sip:
        return None
    low, high = _rtp_ports(ns)
    outbound = getattr(ns, "sip_outbound", "")
    return SipConfig(
        listen=HostPort.parse(ns.sip, "--sip"),
        advertise=ns.sip_advertise,
        rtp_port_min=low,
        rtp_port_max=high,
        invite_rate_per_s=ns.sip_invite_rate,
        invite_burst=ns.sip_invite_burst,
        outbound=HostPort.parse(outbound, "--sip-outbound") if outbound else None,
        ring_timeout_s=getattr(ns, "sip_ring_timeout", 60.0),
        auth_user=getattr(ns, "sip_auth_user", ""),
        auth_password=os.environ.get(PASSWORD_ENV, ""),
        register=getattr(ns, "sip_register", ""),
        register_expires_s=getattr(ns, "sip_register_expires", 600),
    )
