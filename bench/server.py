"""The process under test: start it, wait until it listens, sample its CPU and memory.

CPU and RSS are read with psutil for the whole process tree (``serve`` supervises its agent
process), so a server that moves work into a child does not look cheaper than it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(RuntimeError):
    """The server under test exited or never listened; carries the tail of its output."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_listening(
    host: str, port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServerStartError(f"nothing listened on {host}:{port} within {timeout_s} s")


@contextlib.contextmanager
def launched(
    command: Sequence[str],
    host: str,
    port: int,
    log_path: Path,
    timeout_s: float = 20.0,
    cwd: Path = REPO_ROOT,
) -> Iterator[int]:
    """Run ``command`` in ``cwd`` until the block ends; yields its pid once ``host:port``
    accepts (``python -m`` imports from ``cwd`` first: another source tree runs its own code)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                wait_listening(host, port, timeout_s, proc)
            except ServerStartError as exc:
                tail = log_path.read_bytes()[-2000:].decode(errors="replace")
                raise ServerStartError(f"{' '.join(command)}: {exc}\n{tail}") from None
            yield proc.pid
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float  # the whole tree
    rss_bytes: int
    # The named processes and the serve workers among their children, without the rest of
    # their children (serve without its agent): ``serve --workers N``'s parent only supervises,
    # its workers carry the calls.
    root_cpu_s: float
    # Each named process with its descendants, in the order named: serve and an agent that it
    # does not supervise are two trees, and a comparison needs each one's share.
    tree_cpu_s: tuple[float, ...] = ()


WORKER_MODULE = "callbridge.workers"  # what a worker of ``serve --workers N`` runs


def is_serve_worker(proc: psutil.Process) -> bool:
    """Whether ``proc`` is one of the media processes of ``serve --workers N``."""
    return WORKER_MODULE in proc.cmdline()


def tree_usage(pids: Sequence[int]) -> Usage:
    """CPU seconds (user + system) and RSS of ``pids`` and all their descendants, now."""
    cpu, rss, root_cpu = 0.0, 0, 0.0
    trees: list[float] = []
    seen: set[int] = set()
    for pid in pids:
        tree = 0.0
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                tree += times.user + times.system
                rss += proc.memory_info().rss
                if proc.pid == pid or is_serve_worker(proc):
                    root_cpu += times.user + times.system
        cpu += tree
        trees.append(tree)
    return Usage(cpu, rss, root_cpu, tuple(trees))
