"""``callbridge bench vs-pipecat``: the same callers and echo work, served by callbridge and by
what a pipecat user deploys for phone calls (:mod:`bench.pipecat_baseline`), reported as ratios
(pipecat / callbridge: above 1 means callbridge does better). Like is compared with like only:

- **the same leg**: both servers are driven over Twilio Media Streams (WebSocket JSON, base64
  mu-law 8 kHz), callbridge's at ``/v1.0/media-streams``. ``--audiosocket`` adds callbridge over
  AudioSocket as an extra row, labelled so, that no ratio uses.
- **whole server against whole server**: callbridge's figure is ``serve`` plus its agent process
  (started apart, so that each one's share is reported too); pipecat's is its one process.
- **VAD on both sides or on neither** (``--vad off|on|both``): with VAD, pipecat runs its stock
  ``SileroVADAnalyzer`` in every pipeline and callbridge's agent runs the offline agent's VAD
  (:mod:`bench.vad_echo_agent`); without, pipecat's pipeline and callbridge's echo agent only echo.
- **agent against agent only where it means something**: pipecat's process is transport and
  pipeline at once, so there is no pipecat figure for "the agent alone" to divide by. What both
  agents do alike is the VAD: with ``--vad both`` the VAD's own cost per call (the VAD server's
  CPU minus the same server's without VAD, within a round) is compared.

Every server stays up for the whole run; with ``--rounds`` they take turns, in reverse order
every other round (the machine's load drifts), and the ratios reported are the medians of the
rounds' ratios. Servers are compared within a round, never across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.measure import STEP_COLUMNS, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.server import free_port, launched, python_command, tree_usage
from bench.stats import ratio
from bench.targets import (
    Target,
    add_calls_arguments,
    first_access_key,
    pipecat_target,
    serve_command,
)
from media.config import ConfigError

VAD_MODES = {"off": (False,), "on": (True,), "both": (False, True)}
AUDIOSOCKET = " (AudioSocket)"  # suffix of the extra rows: another leg, in no ratio
NOTE = (
    "same leg: pipecat and callbridge are both driven over Twilio Media Streams (WebSocket JSON, "
    "base64 mu-law 8 kHz); rows marked (AudioSocket) are callbridge over another leg and enter "
    "no ratio. callbridge = serve + its agent process; pipecat = its one process (transport and "
    "pipeline). +vad: Silero VAD on both sides (pipecat's SileroVADAnalyzer per pipeline; "
    "callbridge's agent runs the offline agent's shared-session VAD); no +vad: on neither."
)
RATIO_LABELS = {
    "server_cpu_per_call": "CPU per call, whole server (serve + agent vs pipecat)",
    "p99_lateness": "p99 lateness",
    "memory_per_call": "RSS per call, whole server",
    "vad_cpu_per_call": "VAD's own CPU per call (agent vs agent: +vad minus no VAD)",
}


def add_vs_pipecat_arguments(p: argparse.ArgumentParser) -> None:
    add_calls_arguments(p, default_calls=10)
    p.add_argument(
        "--vad",
        choices=tuple(VAD_MODES),
        default="both",
        help="Silero VAD on neither side, on both, or both configurations (default %(default)s)",
    )
    p.add_argument(
        "--audiosocket",
        action="store_true",
        help="also drive callbridge over AudioSocket (an extra row, in no ratio)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the servers this many times; ratios are medians (default 1)",
    )


def _suffix(vad: bool) -> str:
    return "+vad" if vad else ""


@contextlib.contextmanager
def callbridge_sides(
    ns: argparse.Namespace, folder: Path, vad: bool, audiosocket: bool
) -> Iterator[list[Target]]:
    """``serve`` with its agent started apart (echo, or echo behind our VAD), over Twilio Media
    Streams, and over AudioSocket too when asked: the same two processes behind both."""
    label = f"callbridge{_suffix(vad)}"
    home = folder / label
    home.mkdir(exist_ok=True)
    agent_port = free_port()
    listen = f"127.0.0.1:{agent_port}"
    module = ("bench.vad_echo_agent",) if vad else ("callbridge", "agent", "--echo")
    agent_cmd = python_command("-m", *module, "--listen", listen)
    with launched(agent_cmd, "127.0.0.1", agent_port, home / "agent.log", 120) as agent_pid:
        port, http_port = free_port(), free_port()
        command = serve_command(port, f"ws://{listen}", home, ns.serve_arg, http_port)
        with launched(command, "127.0.0.1", port, home / "serve.log") as serve_pid:
            pids, names = (serve_pid, agent_pid), ("serve", "agent")
            text = f"{' '.join(command[1:])}; agent: {' '.join(agent_cmd[1:])}"
            path = f"/v1.0/media-streams?access_key={first_access_key(home / 'serve.log')}"
            sides = [Target(label, "127.0.0.1", http_port, pids, "twilio", path, text, names)]
            if audiosocket:
                extra = Target(label + AUDIOSOCKET, "127.0.0.1", port, pids, pid_names=names)
                sides.append(extra)
            yield sides


def _per_call(row: dict[str, Any], key: str) -> float | None:
    value = row[key]
    return None if value is None else float(value)


def compare(sides: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """pipecat / callbridge for each figure, each over the same leg with the same VAD; ``None``
    where a side has no figure. AudioSocket rows are never looked at."""
    out: dict[str, float | None] = {}
    for vad in (False, True):
        ours, theirs = sides.get(f"callbridge{_suffix(vad)}"), sides.get(f"pipecat{_suffix(vad)}")
        if ours is None or theirs is None:
            continue
        tag = "vad" if vad else "no_vad"
        for key, field in (
            ("server_cpu_per_call", "server_cpu_pct_per_call"),
            ("memory_per_call", "rss_per_call_kb"),
        ):
            out[f"{key}_{tag}"] = ratio(_per_call(theirs, field), _per_call(ours, field))
        out[f"p99_lateness_{tag}"] = ratio(theirs["lateness"]["p99_ms"], ours["lateness"]["p99_ms"])
    if {"callbridge", "callbridge+vad", "pipecat", "pipecat+vad"} <= sides.keys():
        out["vad_cpu_per_call"] = ratio(_vad_cost(sides, "pipecat"), _vad_cost(sides, "callbridge"))
    return out


def _vad_cost(sides: dict[str, dict[str, Any]], server: str) -> float | None:
    """% of a core per call that turning VAD on added to ``server``, within one round."""
    on = _per_call(sides[f"{server}+vad"], "server_cpu_pct_per_call")
    off = _per_call(sides[server], "server_cpu_pct_per_call")
    return None if on is None or off is None else on - off


def ratio_label(key: str) -> str:
    for prefix, text in RATIO_LABELS.items():
        if key == prefix:
            return text
        if key.startswith(prefix + "_"):
            mode = "VAD on neither side" if key.endswith("_no_vad") else "VAD on both sides"
            return f"{text}, {mode}"
    return key


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
        targets: list[Target] = []
        for vad in VAD_MODES[ns.vad]:
            targets += stack.enter_context(callbridge_sides(ns, folder, vad, ns.audiosocket))
            targets.append(stack.enter_context(pipecat_target(folder, vad)))
        fresh_rss = {t.label: tree_usage(t.pids).rss_bytes for t in targets}
        for index in range(ns.rounds):
            order = targets if index % 2 == 0 else targets[::-1]
            sides: dict[str, dict[str, Any]] = {}
            for target in order:
                step = run_step(
                    target, ns.calls, ns.seconds, ns.seed + index, ns.workers,
                    rss_baseline_bytes=fresh_rss[target.label],
                )  # fmt: skip
                sides[target.label] = step_summary(step, lateness_limit_ms=5.0)
                sides[target.label]["leg"] = target.protocol
                lateness.setdefault(target.label, []).extend(step.lateness_ms().tolist())
            rounds.append({"sides": sides, "ratios": compare(sides)})
    medians = median_ratios(rounds)
    params = {k: getattr(ns, k) for k in ("calls", "seconds", "rounds", "vad", "audiosocket")}
    result = {"rounds": rounds, "ratios_pipecat_over_callbridge": medians, "note": NOTE}
    write_json(folder, "vs-pipecat", ns.seed, params, result)
    _report(folder, ns, rounds, medians, lateness)
    return 0


def _report(
    folder: Path,
    ns: argparse.Namespace,
    rounds: list[dict[str, Any]],
    medians: dict[str, float | None],
    lateness: dict[str, list[float]],
) -> None:
    from bench.plots import plot_cdf

    plot_cdf(
        folder / "vs-pipecat-lateness-cdf.png",
        lateness,
        "outbound frame lateness (ms)",
        f"Lateness, {ns.calls} echo calls, {ns.rounds} round(s)",
    )
    rows = [step_row(side) for r in rounds for side in r["sides"].values()]
    print(format_table([h for h, _ in STEP_COLUMNS], rows))
    split = [
        [f"round {i + 1}", label, parts.get("serve"), parts.get("agent")]
        for i, r in enumerate(rounds)
        for label, side in r["sides"].items()
        if (parts := side["process_cpu_pct_per_call"])
    ]
    print("\ncallbridge by process, % of a core per call:")
    print(format_table(["round", "target", "serve", "agent"], split))
    headers = ["pipecat / callbridge", *[f"round {i + 1}" for i in range(ns.rounds)], "median"]
    table = [[ratio_label(k), *[r["ratios"][k] for r in rounds], medians[k]] for k in medians]
    print(format_table(headers, table))
    print(f"note: {NOTE}\nresults: {folder}")
