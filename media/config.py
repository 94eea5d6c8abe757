"""The media core's configuration: one typed object, validated once at start-up (style 8)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

from proto.stock_pipecat import split_agent_url

AgentMode = Literal["echo", "local", "remote"]
AgentLinkKind = Literal["ws", "mux"]
AgentLinkChoice = Literal["auto", "ws", "mux"]
MAX_PLAYOUT_HOLD_MS = 60  # below the pacer's catch-up window (media.leg_side)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the flag."""


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, flag: str) -> HostPort:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{flag}: expected HOST:PORT, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MediaConfig:
    audiosocket: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 9000))
    # "current": 0x12 is slin16 (Asterisk today); "draft": 0x11 is slin16 (an older draft).
    audiosocket_numbering: Literal["current", "draft"] = "current"
    agent: str = "local"  # local (the offline voice agent) | echo | ws://HOST:PORT[,ws://...]
    agent_listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8000))
    # ws: one WebSocket per call (any agent); mux: each agent process's calls over one
    # connection (callbridge's own agents only: media/agent_mux.py); auto: mux to the agents
    # serve starts itself (echo/local), ws to the URLs given with --agent (see link_kind)
    agent_link: AgentLinkChoice = "auto"
    agent_workers: int = 1  # supervised agent processes, on agent_listen's port + 0..N-1
    leg_idle_timeout_s: float = 5.0  # caller sent nothing for this long: hang up
    leg_send_timeout_s: float = 2.0  # caller's side stopped reading for this long: hang up
    agent_connect_timeout_s: float = 5.0  # agent link handshake deadline
    playout_max_ms: int = 30_000  # agent audio queued for playout, per call
    playout_hold_ms: int = 0  # jitter allowance of the outbound pacing grid (media.pacing)
    uplink_queue_ms: int = 1_000  # caller audio waiting for the agent link, per call
    max_frame_ms: int = 100  # largest inbound AudioSocket audio frame accepted
    max_calls: int = 2_000
    record_dir: str | None = None  # two-channel WAV per call (caller left, agent right)

    def __post_init__(self) -> None:
        for name in ("leg_idle_timeout_s", "leg_send_timeout_s", "agent_connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.playout_max_ms < 100 or self.uplink_queue_ms < 40:
            raise ConfigError("playout_max_ms >= 100 and uplink_queue_ms >= 40 are required")
        if not 0 <= self.playout_hold_ms <= MAX_PLAYOUT_HOLD_MS:
            raise ConfigError(f"--playout-hold-ms must be within 0..{MAX_PLAYOUT_HOLD_MS}")
        if not 20 <= self.max_frame_ms <= 1000:
            raise ConfigError("max_frame_ms must be within 20..1000")
        if self.agent not in ("echo", "local") and not self.agent.startswith(("ws://", "wss://")):
            raise ConfigError(
                f"--agent: expected echo, local or ws://HOST:PORT, got {self.agent!r}"
            )
        if self.agent_mode == "remote":
            for url in self.agent_urls:
                if not url.startswith(("ws://", "wss://")):
                    raise ConfigError(f"--agent: expected ws://HOST:PORT in the list, got {url!r}")
                try:
                    split_agent_url(url)  # ?agent_protocol=pipecat for a stock pipecat agent
                except ValueError as exc:
                    raise ConfigError(f"--agent: {exc}") from None
        self._check_agent_workers()
        self._check_agent_link()

    def _check_agent_workers(self) -> None:
        if self.agent_workers < 1:
            raise ConfigError(f"--agent-workers: expected 1 or more, got {self.agent_workers}")
        if self.agent_workers > 1 and self.agent_mode == "remote":
            raise ConfigError(
                "--agent-workers starts agents of its own (--agent echo|local); agents you run"
                " are listed instead: --agent ws://HOST:PORT,ws://HOST:PORT"
            )
        if self.agent_listen.port + self.agent_workers - 1 > 65535:
            raise ConfigError("--agent-listen: its port + --agent-workers passes 65535")

    def _check_agent_link(self) -> None:
        if self.agent_link not in ("auto", "ws", "mux"):
            raise ConfigError(f"--agent-link: expected auto, ws or mux, got {self.agent_link!r}")
        if self.agent_link == "mux" and "agent_protocol=pipecat" in self.agent:
            raise ConfigError(
                "--agent-link mux needs callbridge's own agent; a stock pipecat agent"
                " (?agent_protocol=pipecat) takes one WebSocket per call: --agent-link ws"
            )

    @property
    def agent_mode(self) -> AgentMode:
        return "remote" if self.agent.startswith(("ws://", "wss://")) else self.agent  # type: ignore[return-value]

    @property
    def link_kind(self) -> AgentLinkKind:
        """How calls reach the agent, ``auto`` resolved: multiplexed to serve's own agent
        processes, one WebSocket per call to an agent the operator runs (which may not speak
        the multiplexed protocol: a stock pipecat transport does not)."""
        if self.agent_link != "auto":
            return self.agent_link
        return "ws" if self.agent_mode == "remote" else "mux"

    @property
    def agent_listens(self) -> tuple[HostPort, ...]:
        """Where the supervised agents listen: one port each (:mod:`media.agent_pool` says why)."""
        host, port = self.agent_listen.host, self.agent_listen.port
        return tuple(HostPort(host, port + j) for j in range(self.agent_workers))

    @property
    def agent_urls(self) -> tuple[str, ...]:
        """Where calls connect: the remote URLs, or the supervised children's addresses."""
        if self.agent_mode == "remote":
            return tuple(url.strip() for url in self.agent.split(","))
        return tuple(f"ws://{listen}" for listen in self.agent_listens)

    @property
    def agent_url(self) -> str:
        """:attr:`agent_urls` as ``--agent`` takes them (a media worker's agents)."""
        return ",".join(self.agent_urls)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = MediaConfig()
    g = parser.add_argument_group("media core")
    g.add_argument(
        "--audiosocket",
        default=str(d.audiosocket),
        metavar="HOST:PORT",
        help="AudioSocket TCP listener (default %(default)s)",
    )
    g.add_argument(
        "--audiosocket-numbering",
        choices=("current", "draft"),
        default=d.audiosocket_numbering,
        help="slin16 is kind 0x12 (current Asterisk) or 0x11 (older draft) (default %(default)s)",
    )
    g.add_argument(
        "--agent",
        default=d.agent,
        help="local (the offline pipecat voice agent as a child process; the default), echo "
        "(plays the caller's audio back) or ws://HOST:PORT (an agent you run; add "
        "?agent_protocol=pipecat for a stock pipecat bot on ProtobufFrameSerializer; several, "
        "comma-separated: each call goes to the one with the fewest live calls)",
    )
    g.add_argument(
        "--agent-link",
        choices=("auto", "ws", "mux"),
        default=d.agent_link,
        help="ws: one WebSocket per call to the agent (any agent, pipecat's own transport"
        " included); mux: all calls of this media process over one connection to each of"
        " callbridge's own agent processes, framed by call, read and written once per tick;"
        " auto: mux to the agents serve starts (--agent echo|local), ws to --agent ws://..."
        " (default %(default)s)",
    )
    g.add_argument(
        "--agent-listen",
        default=str(d.agent_listen),
        metavar="HOST:PORT",
        help="where a supervised echo/local agent listens; with --agent-workers N, agent j "
        "listens on PORT+j (default %(default)s)",
    )
    g.add_argument(
        "--agent-workers",
        type=int,
        default=d.agent_workers,
        metavar="N",
        help="N supervised agent processes (echo/local), each restarted on its own; a new call "
        "goes to the healthy one with the fewest live calls, and a crash ends only that "
        "agent's calls. With --workers, the media workers share them (default %(default)s)",
    )
    timeouts = (
        ("--leg-idle-timeout", d.leg_idle_timeout_s, "hang up a caller that sent nothing for S s"),
        ("--leg-send-timeout", d.leg_send_timeout_s, "hang up a caller that stopped reading"),
        ("--agent-connect-timeout", d.agent_connect_timeout_s, "end a call whose agent is not up"),
    )
    for flag, default, text in timeouts:
        g.add_argument(
            flag, type=float, default=default, metavar="S", help=f"{text} (default {default})"
        )
    g.add_argument(
        "--playout-max-ms",
        type=int,
        default=d.playout_max_ms,
        metavar="MS",
        help="agent audio queued per call, in ms; beyond it audio is dropped and counted"
        " (default %(default)s)",
    )
    g.add_argument(
        "--playout-hold-ms",
        type=int,
        default=d.playout_hold_ms,
        metavar="MS",
        help="jitter allowance for audio that reaches a call frame by frame just in time (an"
        " echo, an agent streaming in real time): such frames leave evenly on the 20 ms grid"
        " as long as they come within MS of the stream's earliest, at the cost of up to MS"
        f" more delay on every frame (0..{MAX_PLAYOUT_HOLD_MS}; default %(default)s: none)",
    )
    g.add_argument(
        "--max-calls",
        type=int,
        default=d.max_calls,
        metavar="N",
        help="calls at once; more are refused (default %(default)s)",
    )
    g.add_argument(
        "--record-dir",
        default=None,
        metavar="DIR",
        help="record every call to DIR/<call id>.wav (caller left, agent right); off by default",
    )


def from_args(ns: argparse.Namespace) -> MediaConfig:
    return MediaConfig(
        audiosocket=HostPort.parse(ns.audiosocket, "--audiosocket"),
        audiosocket_numbering=ns.audiosocket_numbering,
        agent=ns.agent,
        agent_listen=HostPort.parse(ns.agent_listen, "--agent-listen"),
        agent_link=ns.agent_link,
        agent_workers=ns.agent_workers,
        leg_idle_timeout_s=ns.leg_idle_timeout,
        leg_send_timeout_s=ns.leg_send_timeout,
        agent_connect_timeout_s=ns.agent_connect_timeout,
        playout_max_ms=ns.playout_max_ms,
        playout_hold_ms=ns.playout_hold_ms,
        max_calls=ns.max_calls,
        record_dir=ns.record_dir,
    )
