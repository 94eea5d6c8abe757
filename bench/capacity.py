"""``callbridge bench capacity``: ramp N full-duplex echo calls and find where real time breaks.

For each N: server CPU and memory per call, outbound frame lateness p50/p99/max, missing frames,
and the load generator's own CPU. The headline is the largest N whose p99 lateness stays under
the limit (5 ms) with every call connected and < 1 % of frames missing, and that N divided by
the cores the server used there (``callbridge serve`` is one Trio process: at most one core).
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.measure import STEP_COLUMNS, add_ramp_argument, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.targets import add_leg_argument, add_target_arguments, callbridge_target
from media.config import ConfigError


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


def run_capacity(ns: argparse.Namespace) -> int:
    steps = parse_steps(ns.steps)
    folder = results_folder("capacity", ns.results_dir)
    rows: list[dict[str, Any]] = []
    lateness: dict[str, list[float]] = {}
    with callbridge_target(ns, folder) as target:
        for n in steps:
            step = run_step(
                target, n, ns.step_seconds, ns.seed + n, ns.workers, ramp_rate=ns.ramp_rate
            )
            rows.append(step_summary(step, ns.lateness_limit_ms))
            lateness[f"N={n}"] = step.lateness_ms().tolist()
            if ns.stop_after_fail and not rows[-1]["passes"]:
                break
    result: dict[str, Any] = {
        "steps": rows,
        "headline": headline(rows),
        "server": target.description,
    }
    params = {
        "steps": steps,
        "step_seconds": ns.step_seconds,
        "lateness_limit_ms": ns.lateness_limit_ms,
        "ramp_rate": ns.ramp_rate,
        "leg": f"{target.protocol}, 8 kHz",
    }
    write_json(folder, "capacity", ns.seed, params, result)
    from bench.plots import plot_cdf, plot_vs_n

    n_values = [r["n_calls"] for r in rows]
    plot_cdf(
        folder / "capacity-lateness-cdf.png",
        lateness,
        "outbound frame lateness (ms)",
        "Frame lateness against the 20 ms grid",
    )
    plot_vs_n(
        folder / "capacity-cpu.png",
        n_values,
        {"server CPU % per call": [r["server_cpu_pct_per_call"] for r in rows]},
        "% of one core per call",
        "Server CPU per call",
    )
    plot_vs_n(
        folder / "capacity-lateness.png",
        n_values,
        {q: [r["lateness"][f"{q}_ms"] for r in rows] for q in ("p50", "p99", "max")},
        "lateness (ms)",
        "Outbound lateness against N",
    )
    print(format_table([h for h, _ in STEP_COLUMNS], [step_row(r) for r in rows]))
    head = result["headline"]
    print(
        f"\nlargest N with p99 lateness < {ns.lateness_limit_ms} ms: "
        f"{head['max_calls_passing']} (calls per core: {head['calls_per_core']})"
    )
    print(f"results: {folder}")
    return 0
