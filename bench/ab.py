"""``callbridge bench ab``: the same echo calls against two versions of ``serve`` at once.

On a shared machine the CPU a call costs drifts with other people's load by more than most
changes save, so two runs minutes apart cannot tell a 10 % saving from the drift. Here ``serve``
from a git revision (``--before``, exported with ``git archive``) and ``serve`` from the working
tree (or from ``--after``, another revision) both run, each with its own echo agent, and every
round drives both at the same time with the same callers (in separate generator processes):
whatever the machine does, it does to both.
Reported: each round's figures side by side, and the median over the rounds of each ratio
after / before (below 1: the working tree costs less, or is less late).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.measure import STEP_COLUMNS, Step, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.server import REPO_ROOT, free_port, launched
from bench.stats import ratio
from bench.targets import Target, add_calls_arguments, first_access_key, serve_command
from media.config import ConfigError

SIDES = ("before", "after")
RATIOS = {
    "serve CPU per call": "root_cpu_pct_per_call",
    "serve + agent CPU per call": "server_cpu_pct_per_call",
}


def add_ab_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--before",
        default="HEAD",
        metavar="REV",
        help="git revision the working tree is compared with (default %(default)s)",
    )
    p.add_argument(
        "--after",
        default=None,
        metavar="REV",
        help="compare this revision instead of the working tree (uncommitted work left out)",
    )
    p.add_argument(
        "--leg",
        choices=("audiosocket", "twilio"),
        default="twilio",
        help="what the callers speak (default %(default)s)",
    )
    p.add_argument("--rounds", type=int, default=6, help="paired rounds (default %(default)s)")
    add_calls_arguments(p, default_calls=5)


def export_revision(rev: str, dest: Path) -> str:
    """``git archive`` of ``rev`` into ``dest``; returns the commit it names."""
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise ConfigError(f"--before: no such revision {rev!r}")
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.Popen(
        ["git", "-C", str(REPO_ROOT), "archive", commit.stdout.strip()], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise ConfigError(f"git archive {rev} failed")
    return commit.stdout.strip()


@contextlib.contextmanager
def serve_from(tree: Path, label: str, folder: Path, ns: argparse.Namespace) -> Iterator[Target]:
    """``callbridge serve`` with its echo agent, run from the source tree ``tree``."""
    home = folder / label
    home.mkdir(exist_ok=True)
    port, http_port = free_port(), free_port()
    command = serve_command(port, "echo", home, ns.serve_arg, http_port)
    with launched(command, "127.0.0.1", port, home / "serve.log", cwd=tree) as pid:
        text = f"{tree}: {' '.join(command[1:])}"
        if ns.leg == "twilio":
            path = f"/v1.0/media-streams?access_key={first_access_key(home / 'serve.log')}"
            yield Target(label, "127.0.0.1", http_port, (pid,), "twilio", path, text)
        else:
            yield Target(label, "127.0.0.1", port, (pid,), "audiosocket", "/", text)


def paired_round(targets: list[Target], ns: argparse.Namespace, seed: int) -> list[Step]:
    """Both servers under the same load at the same time."""
    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [
            pool.submit(run_step, target, ns.calls, ns.seconds, seed, ns.workers)
            for target in targets
        ]
        return [f.result() for f in futures]


def round_ratios(sides: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    before, after = sides["before"], sides["after"]
    out = {name: ratio(after[key], before[key]) for name, key in RATIOS.items()}
    out["p99 lateness"] = ratio(after["lateness"]["p99_ms"], before["lateness"]["p99_ms"])
    return out


def run_ab(ns: argparse.Namespace) -> int:
    if ns.calls < 1 or ns.rounds < 1:
        raise ConfigError("--calls and --rounds must be >= 1")
    folder = results_folder("ab", ns.results_dir)
    commits = {"before": export_revision(ns.before, folder / "before-tree")}
    trees = {"before": folder / "before-tree", "after": REPO_ROOT}
    if ns.after is not None:
        commits["after"] = export_revision(ns.after, folder / "after-tree")
        trees["after"] = folder / "after-tree"
    rounds: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(serve_from(trees[s], s, folder, ns)) for s in SIDES]
        for index in range(ns.rounds):
            steps = paired_round(targets, ns, ns.seed + index)
            sides = {s.target.label: step_summary(s, lateness_limit_ms=5.0) for s in steps}
            rounds.append({"sides": sides, "ratios": round_ratios(sides)})
    medians: dict[str, float | None] = {}
    for key in rounds[0]["ratios"]:
        values = [r["ratios"][key] for r in rounds if r["ratios"][key] is not None]
        medians[key] = round(statistics.median(values), 3) if values else None
    params = {k: getattr(ns, k) for k in ("before", "after", "leg", "calls", "seconds", "rounds")}
    params["commits"] = commits
    write_json(folder, "ab", ns.seed, params, {"rounds": rounds, "after_over_before": medians})
    rows = [step_row(side) for r in rounds for side in r["sides"].values()]
    print(format_table([h for h, _ in STEP_COLUMNS], rows))
    table = [[k, *[r["ratios"][k] for r in rounds], medians[k]] for k in medians]
    headers = ["after / before", *[f"round {i + 1}" for i in range(ns.rounds)], "median"]
    print(format_table(headers, table))
    after = f"{ns.after} ({commits['after'][:10]})" if ns.after else "the working tree"
    print(f"before: {ns.before} ({commits['before'][:10]}); after: {after}\nresults: {folder}")
    return 0
