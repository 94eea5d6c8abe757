"""``callbridge bench api``: the control plane's REST and event latency under steady load.

A thin driver over :mod:`control.loadtest`, which does the measuring: the real Hypercorn +
Quart-Trio app and storage in one process, loaded by a second process on an open-loop schedule
(GET ``/v1.0/calls/{id}`` and POST ``/v1.0/conferences``, half each, latency counted from each
request's scheduled slot), while call state changes made through the media core's hooks are timed
to their arrival at a WebSocket subscriber. Run once per storage backend: embedded SQLite, and
MariaDB + Redis when both answer on loopback (skipped, and said so, when they do not).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
from typing import Any
from urllib.parse import urlsplit

from bench.progress import Progress
from bench.report import format_table, results_folder, write_json
from bench.server import REPO_ROOT, python_command
from media.config import ConfigError

DEFAULT_MYSQL = os.environ.get("CALLBRIDGE_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
DEFAULT_REDIS = os.environ.get("CALLBRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
PATHS = ("GET", "POST", "event_to_ws")


def add_api_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate-per-s", type=float, default=100.0, help="requests/s (default 100)")
    p.add_argument("--seconds", type=float, default=8.0, help="load per backend (default 8)")
    p.add_argument("--mysql", default=DEFAULT_MYSQL, metavar="URL", help="MariaDB to use")
    p.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL", help="Redis to use")
    p.add_argument(
        "--backends",
        default="sqlite,mysql+redis",
        help="comma-separated: sqlite, mysql+redis (default both)",
    )


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        with socket.create_connection(address, 2):
            return True
    except OSError:
        return False


def loadtest(db: str, redis: str, rate_per_s: float, seconds: float) -> dict[str, Any]:
    """One :mod:`control.loadtest` run in its own process; its JSON result."""
    cmd = python_command(
        "-m", "control.loadtest", "--db", db, "--rate-per-s", str(rate_per_s), "--seconds"
    )
    cmd.append(str(seconds))
    if redis:
        cmd += ["--redis", redis]
    out = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    if out.returncode != 0 or "{" not in out.stdout:
        raise RuntimeError(f"control.loadtest failed ({out.returncode}): {out.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(out.stdout[out.stdout.index("{") :])
    return result


def run_api(ns: argparse.Namespace) -> int:
    backends = [b.strip() for b in ns.backends.split(",") if b.strip()]
    unknown = set(backends) - {"sqlite", "mysql+redis"}
    if unknown or not backends or ns.rate_per_s <= 0 or ns.seconds <= 0:
        raise ConfigError("--backends takes sqlite and/or mysql+redis; rate and seconds > 0")
    folder = results_folder("api", ns.results_dir)
    results: dict[str, Any] = {}
    with Progress(f"api x{len(backends)}", len(backends)) as bar:
        for i, backend in enumerate(backends):
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    results[backend] = loadtest(
                        f"sqlite:///{tmp}/api.db", "", ns.rate_per_s, ns.seconds
                    )
            elif reachable(ns.mysql, 3306) and reachable(ns.redis, 6379):
                results[backend] = loadtest(ns.mysql, ns.redis, ns.rate_per_s, ns.seconds)
            else:
                results[backend] = {"skipped": f"MariaDB {ns.mysql} or Redis {ns.redis} down"}
            bar.update(i + 1)
    params = {"rate_per_s": ns.rate_per_s, "seconds": ns.seconds, "backends": backends}
    write_json(folder, "api", ns.seed, params, results)
    measured = {b: r for b, r in results.items() if "skipped" not in r}
    if measured:
        from bench.plots import plot_grouped_bars

        plot_grouped_bars(
            folder / "api-latency.png",
            [f"{path} {q}" for path in PATHS for q in ("p50", "p99")],
            {
                b: [r[path].get(f"{q}_ms") for path in PATHS for q in ("p50", "p99")]
                for b, r in measured.items()
            },
            "ms",
            f"Control plane latency at {ns.rate_per_s:g} requests/s",
        )
    print(summary_table(results))
    print(f"results: {folder}")
    return 0


def summary_table(results: dict[str, Any]) -> str:
    rows: list[list[object]] = []
    for backend, r in results.items():
        if "skipped" in r:
            rows.append([backend, "skipped", None, None, None, None])
            continue
        for path in PATHS:
            s = r[path]
            lost = r["events_lost"] if path == "event_to_ws" else r["errors"]
            rows.append([backend, path, s.get("n"), s.get("p50_ms"), s.get("p99_ms"), lost])
    headers = ["backend", "what", "n", "p50 ms", "p99 ms", "errors/lost"]
    return format_table(headers, rows)
