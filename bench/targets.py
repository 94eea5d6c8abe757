"""What the load is pointed at: ``callbridge serve`` started for the run, a server the user
already runs (``--target``), or pipecat's baseline app; each yields a :class:`Target`."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bench.server import free_port, launched, python_command
from media.config import ConfigError, HostPort


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    host: str
    port: int
    pids: tuple[int, ...]  # process trees whose CPU and memory count as the server's
    protocol: Literal["audiosocket", "twilio", "rtp"] = "audiosocket"
    path: str = "/"
    description: str = ""
    pid_names: tuple[str, ...] = ()  # what each of ``pids`` is, where a report splits them
    http_port: int = 0  # serve's control plane, when the bench started serve


def add_serve_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the `callbridge serve` started here (repeatable)",
    )


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """``--target`` and ``--server-pid`` to bench a server already running; ``--serve-arg``."""
    p.add_argument(
        "--target",
        metavar="HOST:PORT",
        default=None,
        help="an AudioSocket server already running, instead of starting serve",
    )
    p.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="with --target: a pid whose process tree counts as the server (repeatable)",
    )
    p.add_argument(
        "--target-leg",
        choices=("audiosocket", "twilio", "rtp"),
        default="audiosocket",
        help="with --target: what the callers speak (twilio: Media Streams over WebSocket; "
        "rtp: SIP calls with PCMU over RTP, HOST:PORT being the SIP listener)",
    )
    p.add_argument(
        "--target-path",
        default="/",
        metavar="PATH",
        help="with --target-leg twilio: the WebSocket path (default %(default)s)",
    )
    add_serve_argument(p)


def add_calls_arguments(p: argparse.ArgumentParser, default_calls: int) -> None:
    """One load step: how many calls, how long, how many generator processes."""
    p.add_argument(
        "--calls", type=int, default=default_calls, help="concurrent calls (default %(default)s)"
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="audio per call (default %(default)s)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="load generator processes (default: one per 150 calls)",
    )
    add_serve_argument(p)


def add_leg_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--leg",
        choices=("audiosocket", "twilio", "rtp"),
        default="audiosocket",
        help="what the callers of the serve started here speak (twilio: Media Streams over "
        "WebSocket at /v1.0/media-streams; rtp: SIP calls to --sip with PCMU over RTP; "
        "default %(default)s)",
    )


def first_access_key(serve_log: Path) -> str:
    """The admin access key a fresh ``serve`` logs once on its new SQLite database."""
    for line in serve_log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("access_key"):
                return str(record["access_key"])
    raise ConfigError(f"no access key in {serve_log}: was its database new?")


def serve_command(
    audiosocket_port: int,
    agent: str,
    folder: Path,
    extra: Sequence[str],
    http_port: int | None = None,
) -> list[str]:
    """``callbridge serve`` on free loopback ports, its database inside the results folder."""
    return python_command(
        "-m",
        "callbridge",
        "--log-level",
        "WARNING",
        "serve",
        "--audiosocket",
        f"127.0.0.1:{audiosocket_port}",
        "--agent",
        agent,
        "--agent-listen",
        f"127.0.0.1:{free_port()}",
        "--http",
        f"127.0.0.1:{http_port or free_port()}",
        "--db",
        f"sqlite:///{folder / 'bench-serve.db'}",
        *extra,
    )


@contextlib.contextmanager
def callbridge_target(
    ns: argparse.Namespace, folder: Path, agent: str = "echo"
) -> Iterator[Target]:
    """The server ``ns`` names with ``--target``, or a fresh ``callbridge serve``."""
    if getattr(ns, "target", None):
        hp = HostPort.parse(ns.target, "--target")
        pids = tuple(ns.server_pid)
        leg, path = ns.target_leg, ns.target_path
        yield Target("external", hp.host, hp.port, pids, leg, path, f"external {leg} {hp} {pids}")
        return
    if getattr(ns, "server_pid", None):
        raise ConfigError("--server-pid needs --target")
    if getattr(ns, "target_leg", "audiosocket") != "audiosocket":
        raise ConfigError("--target-leg needs --target: serve is benched over AudioSocket")
    port, http_port = free_port(), free_port()
    for stale in folder.glob("bench-serve.db*"):  # a fresh database logs a fresh access key
        stale.unlink()
    leg = getattr(ns, "leg", "audiosocket")
    extra = list(ns.serve_arg)
    if leg == "rtp":  # one source places every call: lift the per-source INVITE limit
        sip_port = free_port()
        extra += ["--sip", f"127.0.0.1:{sip_port}", "--sip-invite-rate", "1000000",
                  "--sip-invite-burst", "1000000"]  # fmt: skip
    command = serve_command(port, agent, folder, extra, http_port)
    # serve listens on AudioSocket last, after the control plane (and its media routes) and
    # after its agent is ready: the offline agent loads its models first (tens of seconds here)
    start_timeout_s = 20.0 if agent == "echo" or agent.startswith("ws") else 180.0
    with launched(command, "127.0.0.1", port, folder / "serve.log", start_timeout_s) as pid:
        description = " ".join(command[1:])
        protocol: Literal["audiosocket", "twilio", "rtp"]
        if leg == "rtp":
            host_port, protocol, path = sip_port, "rtp", "/"
        elif leg == "twilio":
            host_port, protocol = http_port, "twilio"
            path = f"/v1.0/media-streams?access_key={first_access_key(folder / 'serve.log')}"
        else:
            host_port, protocol, path = port, "audiosocket", "/"
        yield Target(
            "callbridge", "127.0.0.1", host_port, (pid,), protocol, path, description,
            http_port=http_port,
        )  # fmt: skip


@contextlib.contextmanager
def pipecat_target(folder: Path, vad: bool) -> Iterator[Target]:
    """pipecat's FastAPI + Twilio serializer app (:mod:`bench.pipecat_baseline`) on a free port."""
    from bench.pipecat_baseline import PATH

    port = free_port()
    command = python_command("-m", "bench.pipecat_baseline", "--port", str(port))
    if vad:
        command.append("--vad")
    label = "pipecat+vad" if vad else "pipecat"
    with launched(command, "127.0.0.1", port, folder / f"{label}.log", timeout_s=60) as pid:
        yield Target(label, "127.0.0.1", port, (pid,), "twilio", PATH, " ".join(command[1:]))
