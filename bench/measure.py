"""One load step: N callers against a :class:`~bench.targets.Target` for a few seconds, with the
server's CPU and memory sampled over the window in which every caller is connected and sending.

CPU per call is the server tree's CPU time over that window divided by the window and N, as a
percentage of one core; the load generator's CPU is sampled the same way and reported apart.
Memory per call is the server tree's RSS under load minus its RSS just before, divided by N.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from bench.loadgen import CallerResult, LoadGenerator, plan_callers
from bench.progress import Progress
from bench.server import tree_usage
from bench.stats import summarize_ms
from bench.targets import Target
from media.config import ConfigError

CALLERS_PER_WORKER = 150
SETTLE_S = 0.5  # after the last caller connected, before the CPU window opens


@dataclass(frozen=True, slots=True)
class Step:
    """The raw outcome of one step; :func:`step_summary` turns it into the JSON row."""

    target: Target
    n_calls: int
    window_s: float
    server_cpu_s: float
    root_cpu_s: float  # serve and its workers without their other children (without its agent)
    tree_cpu_s: tuple[float, ...]  # each of ``target.pids`` with its descendants
    loadgen_cpu_s: float
    machine_busy_s: float  # every core's busy time over the window, whoever used it
    rss_before_bytes: int
    rss_loaded_bytes: int
    callers: list[CallerResult]
    # The whole step (connects to hang-ups), not the window: CPU per frame handled does not
    # depend on how much CPU the server could get, only on what each frame cost it.
    step_server_cpu_s: float = 0.0
    step_root_cpu_s: float = 0.0

    def lateness_ms(self) -> np.ndarray:
        return np.asarray([x for c in self.callers for x in c.lateness_ms], dtype=np.float64)


def add_ramp_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ramp-rate",
        type=float,
        default=0.0,
        metavar="CALLS_PER_S",
        help="connect callers at this rate (default: all within one second)",
    )


def ramp_seconds(duration_s: float) -> float:
    """Connects are spread over this long so the step does not start with a SYN flood."""
    return min(1.0, duration_s / 5)


def run_step(
    target: Target,
    n_calls: int,
    duration_s: float,
    seed: int,
    workers: int = 0,
    *,
    tag_dtmf: bool = False,
    rss_baseline_bytes: int | None = None,
    ramp_rate: float = 0.0,
) -> Step:
    """Drive ``n_calls`` callers for ``duration_s`` (audio per caller) and sample the server.

    Memory per call is counted from ``rss_baseline_bytes`` (the server's RSS when it was fresh)
    when given, else from its RSS just before this step: a server that keeps what earlier steps
    grew would otherwise look free.

    ``ramp_rate`` (calls per second; 0: all within a second) spreads the connects wider; then
    every caller talks that much longer, so the measured window still lasts ``duration_s``
    with all callers connected. Real call arrival rates are a few per second: a whole step
    arriving in one second measures call setup (the control plane's storage), not media."""
    ramp_s = ramp_seconds(duration_s)
    extra_s = 0.0
    if ramp_rate > 0:
        ramp_s = max(ramp_s, n_calls / ramp_rate)
        extra_s = ramp_s
    warmup_s = min(1.0, duration_s / 3)
    if duration_s + extra_s < ramp_s + SETTLE_S + 0.5:
        raise ConfigError(f"a step needs at least {ramp_s + SETTLE_S + 0.5:.1f} s")
    workers = workers or math.ceil(n_calls / CALLERS_PER_WORKER)
    plans = plan_callers(
        target.host,
        target.port,
        n_calls,
        duration_s + extra_s,
        seed,
        workers=workers,
        protocol=target.protocol,
        path=target.path,
        ramp_s=ramp_s,
        warmup_s=warmup_s,
        tag_dtmf=tag_dtmf,
    )
    gen = LoadGenerator(plans)
    before = tree_usage(target.pids)
    gen.start()
    try:
        start_at = gen.go()
        window = (start_at + ramp_s + SETTLE_S, start_at + duration_s + extra_s - 0.05)
        end = start_at + ramp_s + duration_s + extra_s + plans[0].grace_s
        with Progress(f"{target.label} N={n_calls}", end - time.monotonic()) as bar:
            begin = time.monotonic()
            _wait(bar, begin, window[0])
            server0, gen0 = tree_usage(target.pids), tree_usage(gen.pids)
            busy0, sampled0 = machine_busy_s(), time.monotonic()
            _wait(bar, begin, window[1])
            server1, gen1 = tree_usage(target.pids), tree_usage(gen.pids)
            busy1, sampled1 = machine_busy_s(), time.monotonic()
            _wait(bar, begin, end)
        callers = gen.collect(timeout_s=30 + duration_s)
    finally:
        gen.stop()
    after = tree_usage(target.pids)
    return Step(
        target=target,
        n_calls=n_calls,
        window_s=sampled1 - sampled0,  # as sampled: a starved parent may wake up late
        server_cpu_s=server1.cpu_s - server0.cpu_s,
        root_cpu_s=server1.root_cpu_s - server0.root_cpu_s,
        tree_cpu_s=tuple(
            b - a for a, b in zip(server0.tree_cpu_s, server1.tree_cpu_s, strict=True)
        ),
        loadgen_cpu_s=gen1.cpu_s - gen0.cpu_s,
        machine_busy_s=busy1 - busy0,
        rss_before_bytes=before.rss_bytes if rss_baseline_bytes is None else rss_baseline_bytes,
        rss_loaded_bytes=server1.rss_bytes,
        callers=callers,
        step_server_cpu_s=after.cpu_s - before.cpu_s,
        step_root_cpu_s=after.root_cpu_s - before.root_cpu_s,
    )


def machine_busy_s() -> float:
    """CPU seconds all cores have spent not idle since boot."""
    times = psutil.cpu_times()._asdict()
    # guest time is already inside user time on Linux; idle and iowait are not work.
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(times.get(name, 0.0) for name in busy))


def _wait(bar: Progress, begin: float, until: float) -> None:
    while (now := time.monotonic()) < until:
        bar.update(now - begin)
        time.sleep(min(0.1, until - now))


def step_summary(step: Step, lateness_limit_ms: float) -> dict[str, Any]:
    """The JSON row of one step; ``passes`` is p99 lateness under the limit with no call lost."""
    callers = step.callers
    sent = sum(c.frames_sent for c in callers)
    received = sum(c.frames_received for c in callers)
    missing_pct = 100 * max(sent - received, 0) / sent if sent else None
    errors = [c.error for c in callers if c.error]
    lateness = summarize_ms(step.lateness_ms())
    cpu_pct = 100 * step.server_cpu_s / step.window_s if step.target.pids else None
    connected = sum(c.connected for c in callers)
    p99 = lateness["p99_ms"]
    passes = (
        connected == step.n_calls
        and p99 is not None
        and p99 < lateness_limit_ms
        and missing_pct is not None
        and missing_pct < 1.0
    )
    return {
        "target": step.target.label,
        "n_calls": step.n_calls,
        "connected": connected,
        "errors": len(errors),
        "first_errors": errors[:3],
        "window_s": round(step.window_s, 3),
        "server_cpu_pct": _round(cpu_pct),
        "server_cpu_pct_per_call": _round(cpu_pct / step.n_calls if cpu_pct is not None else None),
        "root_cpu_pct_per_call": _round(
            100 * step.root_cpu_s / step.window_s / step.n_calls if step.target.pids else None
        ),
        # Each named process tree (serve, an agent it does not supervise) per call, by name.
        "process_cpu_pct_per_call": {
            name: round(100 * cpu_s / step.window_s / step.n_calls, 3)
            for name, cpu_s in zip(step.target.pid_names, step.tree_cpu_s, strict=False)
        },
        "loadgen_cpu_pct": round(100 * step.loadgen_cpu_s / step.window_s, 2),
        # What everything else on the host took meanwhile (% of one core): on a shared machine
        # this says how far the figures can be trusted.
        "others_cpu_pct": round(
            100 * (step.machine_busy_s - step.server_cpu_s - step.loadgen_cpu_s) / step.window_s, 1
        ),
        "machine_cores": psutil.cpu_count(),
        "rss_before_mb": round(step.rss_before_bytes / 2**20, 2),
        "rss_loaded_mb": round(step.rss_loaded_bytes / 2**20, 2),
        "rss_per_call_kb": round(
            (step.rss_loaded_bytes - step.rss_before_bytes) / 1024 / step.n_calls, 1
        )
        if step.target.pids
        else None,
        "frames_sent": sent,
        "frames_received": round(received, 1),
        # server CPU per audio frame it took in or sent out, over the whole step (us)
        "server_us_per_frame": _round(_per_frame_us(step.step_server_cpu_s, sent + received), 1),
        "root_us_per_frame": _round(_per_frame_us(step.step_root_cpu_s, sent + received), 1),
        "missing_pct": _round(missing_pct),
        "lateness": lateness,
        "interarrival": summarize_ms([x for c in callers for x in c.interarrival_ms]),
        "round_trip": summarize_ms([x for c in callers for x in c.round_trips_ms()]),
        "loadgen_send_lateness": summarize_ms([x for c in callers for x in c.send_lateness_ms]),
        "passes": passes,
    }


def _per_frame_us(cpu_s: float, frames: float) -> float | None:
    return 1e6 * cpu_s / frames if frames else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


STEP_COLUMNS = (
    ("target", "target"),
    ("N", "n_calls"),
    ("conn", "connected"),
    ("cpu %", "server_cpu_pct"),
    ("cpu %/call", "server_cpu_pct_per_call"),
    ("us/frame", "server_us_per_frame"),
    ("KB/call", "rss_per_call_kb"),
    ("late p50", ("lateness", "p50_ms")),
    ("late p99", ("lateness", "p99_ms")),
    ("late max", ("lateness", "max_ms")),
    ("rtt p50", ("round_trip", "p50_ms")),
    ("miss %", "missing_pct"),
    ("gen cpu %", "loadgen_cpu_pct"),
    ("gen late p99", ("loadgen_send_lateness", "p99_ms")),
    ("others cpu %", "others_cpu_pct"),
    ("ok", "passes"),
)


def step_row(summary: dict[str, Any]) -> list[object]:
    row: list[object] = []
    for _, key in STEP_COLUMNS:
        row.append(summary[key[0]][key[1]] if isinstance(key, tuple) else summary[key])
    return row
