"""``callbridge bench capacity``: ramp N full-duplex echo calls and find where real time breaks.

For each N: server CPU and memory per call, outbound frame lateness p50/p99/max, missing frames,
and the load generator's own CPU. The headline is the largest N whose p99 lateness stays under
the limit (5 ms) with every call connected and < 1 % of frames missing, and that N divided by
the cores the server used there (``callbridge serve`` is one Trio process: at most one core).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench.measure import STEP_COLUMNS, add_ramp_argument, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.server import is_serve_worker
from bench.targets import Target, add_leg_argument, add_target_arguments, callbridge_target
from bench.variants import (
    SWITCHES,
    Variant,
    parse_core,
    parse_flushes,
    parse_holds,
    parse_links,
    parse_tick,
    variants,
)
from media.agent_mux import FLUSH_SWITCH
from media.config import ConfigError
from media.tick import BATCH_SWITCH
from media.tick import ENV_SWITCH as TICK_SWITCH


def add_capacity_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--steps",
        default="10,50,100,200,300",
        metavar="N,N,...",
        help="numbers of concurrent calls to try, in order (default %(default)s)",
    )
    p.add_argument(
        "--step-seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="audio each caller sends per step (default %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="load generator processes (default: one per 150 callers)",
    )
    p.add_argument(
        "--lateness-limit-ms",
        type=float,
        default=5.0,
        help="p99 outbound lateness a passing step stays under (default %(default)s)",
    )
    p.add_argument(
        "--stop-after-fail", action="store_true", help="skip the remaining steps once one fails"
    )
    p.add_argument(
        "--serve-workers",
        default="",
        metavar="N,N,...",
        help="run the whole ramp against `serve --workers N` for each N, one serve after the"
        " other in the same run (their ratios are what to read on a shared machine), each with"
        " --redis-url, which more than one worker needs (default: serve's own default)",
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        metavar="URL",
        help="the Redis `--serve-workers` runs share their state through (default %(default)s)",
    )
    p.add_argument(
        "--media-tick",
        default="",
        metavar="off,on",
        help="start one serve per value, the media core's shared tick and reader"
        f" ({TICK_SWITCH}, media/tick.py) off or on, and run every step against each in"
        " turn: before and after in one run",
    )
    p.add_argument(
        "--media-batch",
        default="",
        metavar="off,on",
        help="start one serve per value, the media core's batched resampling"
        f" ({BATCH_SWITCH}, media/resample_batch.py) off or on, and run every step against"
        " each in turn: before and after in one run (with the other switches: every"
        " combination)",
    )
    p.add_argument(
        "--mux-flush-ms",
        default="",
        metavar="MS,MS",
        help="start one serve per value, the multiplexed agent link's write coalescing"
        f" ({FLUSH_SWITCH}, media/agent_mux.py; 0: every scheduling round), and run every"
        " step against each in turn (with --agent-link mux)",
    )
    p.add_argument(
        "--agent-link",
        default="",
        metavar="ws,mux",
        help="start one serve per value, --agent-link ws (a WebSocket per call) or mux (all"
        " calls over one connection to the agent, media/agent_mux.py), and run every step"
        " against each in turn: before and after in one run (with --media-tick: every pair)",
    )
    p.add_argument(
        "--playout-hold-ms",
        default="",
        metavar="MS,MS",
        help="start one serve per value of its --playout-hold-ms (the pacing grid's jitter"
        " allowance, media/pacing.py), and run every step against each in turn (with the other"
        " switches: every combination)",
    )
    p.add_argument(
        "--core",
        default="",
        metavar="before,after",
        help="start one serve per value, the media core as the issue found it (before: a"
        " reader and a pacer task per call, a WebSocket per call to the agent, per-call"
        " resampling) and as it is by default (after: one reader and one tick per process, the"
        " multiplexed link, batched resampling), and run every step against each in turn"
        " (not with the other switches)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin serve (every thread, its workers and its agent) to CPU 0 and the load"
        " generator (and this process) to the other CPUs, as taskset would",
    )
    p.add_argument(
        "--agent-apart",
        action="store_true",
        help="with --pin: serve's agent processes on the generator's CPUs, serve alone on"
        " CPU 0 (its agent's CPU is still counted)",
    )
    add_ramp_argument(p)
    add_leg_argument(p)
    add_target_arguments(p)


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--steps: expected N,N,... got {text!r}") from None
    if not steps or any(n < 1 for n in steps):
        raise ConfigError(f"--steps: every N must be >= 1, got {text!r}")
    return steps


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest passing N, and calls per fully used core at that N."""
    passing = [r for r in rows if r["passes"]]
    if not passing:
        return {"max_calls_passing": None, "calls_per_core": None}
    best = max(passing, key=lambda r: r["n_calls"])
    cpu = best["server_cpu_pct"]
    per_core = round(best["n_calls"] * 100 / cpu, 1) if cpu else None
    return {
        "max_calls_passing": best["n_calls"],
        "calls_per_core": per_core,
        "server_cpu_pct_at_max": cpu,
    }


def parse_workers(text: str) -> list[int | None]:
    """``--serve-workers``: worker counts to compare; none given is one run on serve's default."""
    if not text.strip():
        return [None]
    return list(parse_steps(text))


def wait_workers(target_pid: int, http_port: int, count: int, timeout_s: float = 120.0) -> None:
    """The parent of ``serve --workers`` binds the ports before its workers start (connections
    wait in the kernel's queue): wait until every worker runs and HTTP answers, then a settle.
    Workers start one after the other, each once the previous one is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = psutil.Process(target_pid).children(recursive=True)
        workers = [c for c in children if is_serve_worker(c)]
        if len(workers) == count:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=30):
                time.sleep(5.0)  # the last worker's control plane and listeners
                return
        time.sleep(0.5)
    raise ConfigError(f"serve --workers {count}: workers did not all start in {timeout_s:g} s")


SERVE_CPU = 0


def pin_serve(pid: int, agent_apart: bool = False) -> None:
    """Every thread of serve and of its children (its workers, its echo agent: the server
    whose CPU the bench reports) onto :data:`SERVE_CPU`; with ``agent_apart`` its agent
    processes onto the generator's CPUs instead (serve alone on its core, as the issue's
    "serve pinned to one core" reads; the agent's CPU is still counted)."""
    root = psutil.Process(pid)
    generator_cpus = set(os.sched_getaffinity(0)) - {SERVE_CPU}
    for proc in (root, *root.children(recursive=True)):
        apart = agent_apart and proc.pid != pid and not is_serve_worker(proc)
        cpus = generator_cpus if apart and generator_cpus else {SERVE_CPU}
        for thread in proc.threads():
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(thread.id, cpus)


def pin_bench() -> None:
    """This process, and so whatever it starts from now on, off :data:`SERVE_CPU`."""
    others = set(os.sched_getaffinity(0)) - {SERVE_CPU}
    if not others:
        raise ConfigError("--pin needs at least 2 CPUs")
    os.sched_setaffinity(0, others)


@contextlib.contextmanager
def tick_target(ns: argparse.Namespace, folder: Path, variant: Variant) -> Iterator[Target]:
    """A serve of its own (in a folder of its own) with the shared tick ``off`` or ``on`` and
    the agent link ``ws`` or ``mux``."""
    sub = folder / variant.label.replace(" ", "-")
    sub.mkdir(exist_ok=True)
    saved = {name: os.environ.get(name) for name in SWITCHES}
    os.environ.update(variant.environment())
    run_ns = argparse.Namespace(**vars(ns))
    if variant.link:
        run_ns.serve_arg = [*run_ns.serve_arg, "--agent-link", variant.link]
    if variant.hold_ms:
        run_ns.serve_arg = [*run_ns.serve_arg, "--playout-hold-ms", variant.hold_ms]
    try:
        with callbridge_target(run_ns, sub) as target:
            if ns.pin:
                pin_serve(target.pids[0], ns.agent_apart)
            yield dataclasses.replace(target, label=variant.label)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def alternate(ns: argparse.Namespace, folder: Path, ticks: list[Variant]) -> dict[str, Any]:
    """Every step against each serve in turn (all started first): the machine's load, which
    drifts over a run, weighs on both alike."""
    rows: list[dict[str, Any]] = []
    lateness: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(tick_target(ns, folder, tick)) for tick in ticks]
        for n in parse_steps(ns.steps):
            for target in targets:
                step = run_step(
                    target, n, ns.step_seconds, ns.seed + n, ns.workers, ramp_rate=ns.ramp_rate
                )
                rows.append(step_summary(step, ns.lateness_limit_ms))
                lateness[f"{target.label} N={n}"] = step.lateness_ms().tolist()
        servers = {t.label: t.description for t in targets}
    return {"rows": rows, "lateness": lateness, "server": servers, "protocol": "audiosocket"}


def ramp(ns: argparse.Namespace, folder: Path, workers: int | None) -> dict[str, Any]:
    """The steps against one serve; its rows, lateness samples and description."""
    steps = parse_steps(ns.steps)
    run_ns = argparse.Namespace(**vars(ns))
    if workers is not None:  # every count on Redis: the runs differ in their workers only
        run_ns.serve_arg = [*ns.serve_arg, "--workers", str(workers), "--redis", ns.redis_url]
    rows: list[dict[str, Any]] = []
    lateness: dict[str, list[float]] = {}
    with callbridge_target(run_ns, folder) as target:
        if workers is not None and workers > 1 and not ns.target:
            wait_workers(target.pids[0], target.http_port, workers)
        if ns.pin and not ns.target:
            pin_serve(target.pids[0], ns.agent_apart)
        for n in steps:
            step = run_step(
                target, n, ns.step_seconds, ns.seed + n, ns.workers, ramp_rate=ns.ramp_rate
            )
            rows.append(step_summary(step, ns.lateness_limit_ms))
            lateness[f"N={n}"] = step.lateness_ms().tolist()
            if ns.stop_after_fail and not rows[-1]["passes"]:
                break
    return {
        "rows": rows,
        "lateness": lateness,
        "server": target.description,
        "protocol": target.protocol,
    }


def run_capacity(ns: argparse.Namespace) -> int:
    steps = parse_steps(ns.steps)
    folder = results_folder("capacity", ns.results_dir)
    ticks = variants(
        parse_tick(ns.media_tick),
        parse_links(ns.agent_link),
        parse_tick(ns.media_batch, "--media-batch"),
        parse_flushes(ns.mux_flush_ms),
        parse_holds(ns.playout_hold_ms),
    )
    ticks = [] if ticks == [Variant(None, None)] else ticks
    if ns.core:
        if ticks:
            raise ConfigError("--core names both switches' values: not with the others")
        ticks = parse_core(ns.core)
    affinity = os.sched_getaffinity(0)
    if ns.pin:
        pin_bench()
    try:
        return _run_capacity(ns, steps, folder, ticks)
    finally:
        os.sched_setaffinity(0, affinity)


def _run_capacity(
    ns: argparse.Namespace, steps: list[int], folder: Path, ticks: list[Variant]
) -> int:
    if ticks and (ns.target or ns.serve_workers):
        raise ConfigError(
            "--media-tick, --media-batch and --agent-link start serves of their own: not with"
            " --target,"
            " --serve-workers"
        )
    if ticks:
        runs: dict[Any, dict[str, Any]] = {"tick": alternate(ns, folder, ticks)}
    else:
        runs = {w: ramp(ns, folder, w) for w in parse_workers(ns.serve_workers)}
    if len(runs) > 1:
        print_workers_comparison(runs)
    rows: list[dict[str, Any]] = runs[next(iter(runs))]["rows"]
    lateness: dict[str, list[float]] = runs[next(iter(runs))]["lateness"]
    by_target = {label: [r for r in rows if r["target"] == label] for label in row_labels(rows)}
    result: dict[str, Any] = {
        "steps": rows,
        "headline": headline(rows) if len(by_target) == 1 else None,
        "by_target": {label: headline(r) for label, r in by_target.items()},
        "server": runs[next(iter(runs))]["server"],
        "by_workers": {
            str(w): {"steps": r["rows"], "headline": headline(r["rows"]), "server": r["server"]}
            for w, r in runs.items()
        },
    }
    params = {
        "steps": steps,
        "step_seconds": ns.step_seconds,
        "lateness_limit_ms": ns.lateness_limit_ms,
        "ramp_rate": ns.ramp_rate,
        "leg": f"{runs[next(iter(runs))]['protocol']}, 8 kHz",
        "media_tick": [v.tick for v in ticks if v.tick],
        "agent_link": [v.link for v in ticks if v.link],
        "media_batch": [v.batch for v in ticks if v.batch],
        "mux_flush_ms": [v.flush_ms for v in ticks if v.flush_ms],
        "core": [v.name for v in ticks if v.name],
        "playout_hold_ms": [v.hold_ms for v in ticks if v.hold_ms],
        "agent_apart": bool(ns.pin and ns.agent_apart),
        "pinned": f"serve on CPU {SERVE_CPU}, the rest on {sorted(os.sched_getaffinity(0))}"
        if ns.pin
        else None,
    }
    write_json(folder, "capacity", ns.seed, params, result)
    plot(folder, by_target, lateness)
    print(format_table([h for h, _ in STEP_COLUMNS], [step_row(r) for r in rows]))
    for label, head in result["by_target"].items():
        print(
            f"\n{label}: largest N with p99 lateness < {ns.lateness_limit_ms} ms: "
            f"{head['max_calls_passing']} (calls per core: {head['calls_per_core']})"
        )
    print(f"results: {folder}")
    return 0


def row_labels(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in rows))


def plot(
    folder: Path, by_target: dict[str, list[dict[str, Any]]], lateness: dict[str, list[float]]
) -> None:
    """The lateness CDF of every step, CPU per call and lateness against N (per serve)."""
    from bench.plots import plot_cdf, plot_vs_n

    first = next(iter(by_target.values()))
    n_values = [r["n_calls"] for r in first]
    prefix = {label: "" if len(by_target) == 1 else f"{label} " for label in by_target}
    plot_cdf(
        folder / "capacity-lateness-cdf.png",
        lateness,
        "outbound frame lateness (ms)",
        "Frame lateness against the 20 ms grid",
    )
    plot_vs_n(
        folder / "capacity-cpu.png",
        n_values,
        {
            f"{prefix[label]}server CPU % per call": [r["server_cpu_pct_per_call"] for r in rs]
            for label, rs in by_target.items()
        },
        "% of one core per call",
        "Server CPU per call",
    )
    plot_vs_n(
        folder / "capacity-lateness.png",
        n_values,
        {
            f"{prefix[label]}{q}": [r["lateness"][f"{q}_ms"] for r in rs]
            for label, rs in by_target.items()
            for q in ("p50", "p99", "max")
        },
        "lateness (ms)",
        "Outbound lateness against N",
    )


def print_workers_comparison(runs: dict[int | None, dict[str, Any]]) -> None:
    """Per worker count: CPU per call at each N, and the headline (same run: read the ratios)."""
    for workers, run in runs.items():
        print(f"\n--- serve --workers {workers} ---")
        print(format_table([h for h, _ in STEP_COLUMNS], [step_row(r) for r in run["rows"]]))
        head = headline(run["rows"])
        print(f"largest N passing: {head['max_calls_passing']}, calls per core: "
              f"{head['calls_per_core']}")  # fmt: skip
