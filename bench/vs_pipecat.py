"""``callbridge bench vs-pipecat``: the same callers and echo work, served by callbridge and by
what a pipecat user deploys for phone calls (:mod:`bench.pipecat_baseline`), one after the other
in one run, reported as ratios (pipecat / callbridge: above 1 means callbridge does better).
Both servers stay up for the whole run; with ``--rounds`` they take turns, first one then the
other first, and the ratios reported are the medians of the rounds' ratios.

The legs differ until callbridge serves Twilio Media Streams: pipecat gets Twilio JSON over
WebSocket (base64 mu-law), callbridge gets AudioSocket (raw slin). The output says so. The
callbridge side counts ``serve`` and its supervised echo agent together (``server``), and the
agent process alone (``agent``), which is the figure issue 7's 5x target is about.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from typing import Any

from bench.measure import STEP_COLUMNS, Step, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.server import tree_usage
from bench.stats import ratio
from bench.targets import add_calls_arguments, callbridge_target, pipecat_target
from media.config import ConfigError

LEG_NOTE = (
    "legs differ: pipecat is driven over Twilio Media Streams (WebSocket JSON, base64 mu-law), "
    "callbridge over AudioSocket (TCP, slin 8 kHz) until its Twilio leg is served"
)


def add_vs_pipecat_arguments(p: argparse.ArgumentParser) -> None:
    add_calls_arguments(p, default_calls=20)
    p.add_argument(
        "--pipecat-vad",
        action="store_true",
        help="Silero VAD in each pipecat pipeline (callbridge's echo agent has none)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the two servers this many times; ratios are medians (default 1)",
    )


def agent_cpu_pct_per_call(step: Step) -> float:
    """CPU of serve's children (the supervised echo agent) per call, % of one core."""
    return 100 * (step.server_cpu_s - step.root_cpu_s) / step.window_s / step.n_calls


def compare(ours: dict[str, Any], theirs: dict[str, Any], ours_agent_pct: float) -> dict[str, Any]:
    """pipecat / callbridge for each figure; ``None`` where a side has no figure."""
    return {
        "cpu_per_call": ratio(theirs["server_cpu_pct_per_call"], ours["server_cpu_pct_per_call"]),
        "agent_cpu_per_call": ratio(theirs["server_cpu_pct_per_call"], ours_agent_pct),
        "p99_lateness": ratio(theirs["lateness"]["p99_ms"], ours["lateness"]["p99_ms"]),
        "memory_per_call": ratio(theirs["rss_per_call_kb"], ours["rss_per_call_kb"]),
    }


def median_ratios(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each ratio's median over the rounds that have it: one noisy round does not decide."""
    keys = rounds[0]["ratios"].keys()
    out: dict[str, float | None] = {}
    for key in keys:
        values = [r["ratios"][key] for r in rounds if r["ratios"][key] is not None]
        out[key] = round(float(statistics.median(values)), 3) if values else None
    return out


def run_vs_pipecat(ns: argparse.Namespace) -> int:
    if ns.calls < 1 or ns.rounds < 1:
        raise ConfigError("--calls and --rounds must be >= 1")
    folder = results_folder("vs-pipecat", ns.results_dir)
    rounds: list[dict[str, Any]] = []
    lateness: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        ours_target = stack.enter_context(callbridge_target(ns, folder))
        theirs_target = stack.enter_context(pipecat_target(folder, ns.pipecat_vad))
        fresh_rss = {t.label: tree_usage(t.pids).rss_bytes for t in (ours_target, theirs_target)}
        for index in range(ns.rounds):
            # Alternate who goes first: the machine's load drifts over a run.
            order = [ours_target, theirs_target][:: 1 if index % 2 == 0 else -1]
            steps = {
                t.label: run_step(
                    t,
                    ns.calls,
                    ns.seconds,
                    ns.seed + index,
                    ns.workers,
                    rss_baseline_bytes=fresh_rss[t.label],
                )
                for t in order
            }
            ours_step, theirs_step = steps[ours_target.label], steps[theirs_target.label]
            ours = step_summary(ours_step, lateness_limit_ms=5.0)
            theirs = step_summary(theirs_step, lateness_limit_ms=5.0)
            ours["agent_cpu_pct_per_call"] = round(agent_cpu_pct_per_call(ours_step), 3)
            ratios = compare(ours, theirs, ours["agent_cpu_pct_per_call"])
            rounds.append({"callbridge": ours, "pipecat": theirs, "ratios": ratios})
            for step in (ours_step, theirs_step):
                lateness.setdefault(step.target.label, []).extend(step.lateness_ms().tolist())
    medians = median_ratios(rounds)
    params = {
        "calls": ns.calls,
        "seconds": ns.seconds,
        "rounds": ns.rounds,
        "pipecat_vad": ns.pipecat_vad,
    }
    result = {"rounds": rounds, "ratios_pipecat_over_callbridge": medians, "note": LEG_NOTE}
    write_json(folder, "vs-pipecat", ns.seed, params, result)
    from bench.plots import plot_cdf

    plot_cdf(
        folder / "vs-pipecat-lateness-cdf.png",
        lateness,
        "outbound frame lateness (ms)",
        f"Lateness, {ns.calls} echo calls, {ns.rounds} round(s)",
    )
    rows = [step_row(r[side]) for r in rounds for side in ("callbridge", "pipecat")]
    print(format_table([h for h, _ in STEP_COLUMNS], rows))
    agent = [r["callbridge"]["agent_cpu_pct_per_call"] for r in rounds]
    print(f"\ncallbridge agent process alone, % of a core per call: {agent}")
    headers = ["pipecat / callbridge", *[f"round {i + 1}" for i in range(ns.rounds)], "median"]
    table = [[key, *[r["ratios"][key] for r in rounds], medians[key]] for key in medians]
    print(format_table(headers, table))
    print(f"note: {LEG_NOTE}\nresults: {folder}")
    return 0
