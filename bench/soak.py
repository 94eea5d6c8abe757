"""``callbridge bench soak``: long calls, memory over time.

pipecat and LiveKit users report native memory growing over long calls. This holds N full-duplex
calls up for many minutes and samples the RSS of ``serve`` and of its agent process every few
seconds. The figure is the growth rate after warm-up (least-squares slope, KiB per minute, and per
call), with the start and end RSS; a flat line is the pass. Lateness and drops over the whole
run come from the same callers, so a server that stays small by falling behind shows it.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.loadgen import LoadGenerator, plan_callers
from bench.measure import ramp_seconds
from bench.progress import Progress
from bench.report import format_table, results_folder, write_json
from bench.targets import Target, add_calls_arguments, callbridge_target
from media.config import ConfigError

KIB = 1024


def add_soak_arguments(p: argparse.ArgumentParser) -> None:
    add_calls_arguments(p, default_calls=20)
    p.set_defaults(seconds=600.0)
    p.add_argument(
        "--sample-every", type=float, default=5.0, metavar="S", help="RSS sampling period"
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds left out of the growth fit: caches, pools, allocator arenas (default 60)",
    )
    p.add_argument("--agent", default="echo", help="agent serve runs: echo or local")


@dataclass(slots=True)
class Samples:
    """RSS of the serve process alone and of its children (the agent), against time."""

    t_s: list[float] = field(default_factory=list)
    serve_rss: list[int] = field(default_factory=list)
    agent_rss: list[int] = field(default_factory=list)

    def take(self, pid: int, t_s: float) -> None:
        serve, agent = 0, 0
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            serve = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    agent += child.memory_info().rss
        self.t_s.append(t_s)
        self.serve_rss.append(serve)
        self.agent_rss.append(agent)


def growth(t_s: list[float], rss: list[int], warmup_s: float) -> dict[str, float | None]:
    """Start/end RSS after warm-up and the least-squares slope, KiB per minute."""
    t, r = np.asarray(t_s), np.asarray(rss, dtype=np.float64)
    keep = t >= warmup_s
    if keep.sum() < 3:
        return {"start_kib": None, "end_kib": None, "slope_kib_per_min": None}
    slope_per_s = float(np.polyfit(t[keep], r[keep], 1)[0])
    return {
        "start_kib": round(float(r[keep][0]) / KIB),
        "end_kib": round(float(r[keep][-1]) / KIB),
        "slope_kib_per_min": round(slope_per_s * 60 / KIB, 1),
    }


def _drive(target: Target, ns: argparse.Namespace, samples: Samples) -> list[Any]:
    plans = plan_callers(
        target.host,
        target.port,
        ns.calls,
        ns.seconds,
        ns.seed,
        workers=ns.workers or 1,
        protocol=target.protocol,
        path=target.path,
        ramp_s=ramp_seconds(ns.seconds),
        warmup_s=ns.warmup,
    )
    gen = LoadGenerator(plans)
    gen.start()
    try:
        start_at = gen.go()
        end = start_at + ramp_seconds(ns.seconds) + ns.seconds
        with Progress(f"soak N={ns.calls}", end - time.monotonic()) as bar:
            while (now := time.monotonic()) < end:
                samples.take(target.pids[0], now - start_at)
                bar.update(now - start_at)
                time.sleep(min(ns.sample_every, max(0.0, end - now)))
        return gen.collect(timeout_s=60 + ns.seconds)
    finally:
        gen.stop()


def run_soak(ns: argparse.Namespace) -> int:
    if ns.seconds < ns.warmup + 3 * ns.sample_every:
        raise ConfigError("--seconds must leave at least three samples after --warmup")
    folder = results_folder("soak", ns.results_dir)
    samples = Samples()
    with callbridge_target(ns, folder, agent=ns.agent) as target:
        callers = _drive(target, ns, samples)
    lateness = np.asarray([x for c in callers for x in c.lateness_ms], dtype=np.float64)
    result = {
        "serve": growth(samples.t_s, samples.serve_rss, ns.warmup),
        "agent": growth(samples.t_s, samples.agent_rss, ns.warmup),
        "lateness_p99_ms": round(float(np.percentile(lateness, 99)), 2) if lateness.size else None,
        "calls_completed": sum(1 for c in callers if c.connected and c.error is None),
        "samples": {"t_s": samples.t_s, "serve": samples.serve_rss, "agent": samples.agent_rss},
        "server": target.description,
    }
    params = {"calls": ns.calls, "seconds": ns.seconds, "warmup_s": ns.warmup, "agent": ns.agent}
    write_json(folder, "soak", ns.seed, params, result)
    _plot(folder, samples, ns.calls)
    rows = []
    for name in ("serve", "agent"):
        g: dict[str, Any] = result[name]  # type: ignore[assignment]
        slope = g["slope_kib_per_min"]
        per_call = None if slope is None else round(slope / ns.calls, 2)
        rows.append([name, g["start_kib"], g["end_kib"], slope, per_call])
    headers = ["process", "RSS start KiB", "RSS end KiB", "KiB/min", "KiB/min per call"]
    print(format_table(headers, rows))
    p99 = result["lateness_p99_ms"]
    late = f"{p99} ms" if p99 is not None else "none (no agent audio after --warmup to time)"
    print(f"\np99 lateness over the run: {late}; results: {folder}")
    return 0


def _plot(folder: Path, samples: Samples, calls: int) -> None:
    import matplotlib.pyplot as plt

    from bench.plots import _save

    fig, ax = plt.subplots(figsize=(7, 4))
    minutes = [t / 60 for t in samples.t_s]
    for label, rss in (("serve", samples.serve_rss), ("agent", samples.agent_rss)):
        ax.plot(minutes, [r / KIB / KIB for r in rss], label=f"{label} RSS")
    title = f"Memory over {calls} long calls"
    _save(fig, ax, folder / "soak-rss.png", "minutes into the run", "MiB", title)
