"""``callbridge bench``: one subcommand per measurement (issue 7).

Each prints a summary table and writes JSON (seed + machine description) and PNG plots under
``bench/results/<name>-<timestamp>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("resample", help="our resampler against the alternatives: cost and quality")
    _common(p)
    p.add_argument("--frames", type=int, default=500, help="20 ms frames timed per direction")
    from bench.capacity import add_capacity_arguments
    from bench.hop import add_hop_arguments
    from bench.vs_pipecat import add_vs_pipecat_arguments

    p = sub.add_parser("capacity", help="ramp N echo calls; CPU, memory and lateness per N")
    _common(p)
    add_capacity_arguments(p)
    p = sub.add_parser("hop", help="latency the media core adds, leg -> agent and back")
    _common(p)
    add_hop_arguments(p)
    from bench.soak import add_soak_arguments

    p = sub.add_parser("soak", help="long calls: memory growth of serve and its agent over time")
    _common(p)
    add_soak_arguments(p)
    p = sub.add_parser("vs-pipecat", help="callbridge against pipecat's own telephony setup")
    _common(p)
    add_vs_pipecat_arguments(p)
    from bench.api import add_api_arguments
    from bench.turn import add_turn_arguments

    p = sub.add_parser("turn", help="voice-to-voice latency with the real offline agent")
    _common(p)
    add_turn_arguments(p)
    from bench.conversations import add_conversations_arguments
    from bench.turn_stt import add_stt_arguments

    p = sub.add_parser("conversations", help="N callers talking to the offline agent at once")
    _common(p)
    add_conversations_arguments(p)

    p = sub.add_parser("stt", help="Whisper's 30 s window against the short window: CPU, words")
    _common(p)
    add_stt_arguments(p)
    p = sub.add_parser("api", help="control plane REST and event latency under load")
    _common(p)
    add_api_arguments(p)
    from bench.bridge import add_bridge_arguments

    p = sub.add_parser("bridge", help="conferences: mixer and media core CPU per participant")
    _common(p)
    add_bridge_arguments(p)
    from bench.ab import add_ab_arguments

    p = sub.add_parser("ab", help="a git revision against the working tree, same calls at once")
    _common(p)
    add_ab_arguments(p)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=7, help="seed of every random choice (default 7)")
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write into DIR instead of bench/results/<name>-<timestamp>/",
    )


def run(ns: argparse.Namespace) -> int:
    if ns.bench == "api":
        from bench.api import run_api

        return run_api(ns)
    if ns.bench == "turn":
        from bench.turn import run_turn

        return run_turn(ns)
    if ns.bench == "conversations":
        from bench.conversations import run_conversations

        return run_conversations(ns)
    if ns.bench == "stt":
        from bench.turn_stt import run_stt

        return run_stt(ns)
    if ns.bench == "resample":
        from bench.resample import run_resample, summary_table

        folder, rows = run_resample(ns.seed, ns.frames, ns.results_dir)
        print(summary_table(rows))
        print(f"\nresults: {folder}")
        return 0
    if ns.bench == "capacity":
        from bench.capacity import run_capacity

        return run_capacity(ns)
    if ns.bench == "hop":
        from bench.hop import run_hop

        return run_hop(ns)
    if ns.bench == "soak":
        from bench.soak import run_soak

        return run_soak(ns)
    if ns.bench == "bridge":
        from bench.bridge import run_bridge

        return run_bridge(ns)
    if ns.bench == "ab":
        from bench.ab import run_ab

        return run_ab(ns)
    from bench.vs_pipecat import run_vs_pipecat

    return run_vs_pipecat(ns)
