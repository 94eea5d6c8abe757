"""bench/server.py's CPU accounting: serve's own share (``root_cpu_s``) of ``serve --workers N``
is its workers' CPU, not its supervising parent's alone (which took none of the calls)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

from bench.capacity import SERVE_CPU, pin_serve
from bench.server import WORKER_MODULE, tree_usage

TICKS_SHORT_S = 0.02
"""How much less than it spent a process's CPU time in /proc can read (two truncated ticks)."""

# A child that spends ``argv[1]`` CPU seconds, says so, then sleeps until it is killed.
SPIN = textwrap.dedent(
    """
    import sys, time
    while time.process_time() < float(sys.argv[1]):
        pass
    print("spun", flush=True)
    time.sleep(600)
    """
)
# serve's parent: a worker (0.3 s of CPU) and an agent (0.6 s), itself idle.
PARENT = textwrap.dedent(
    f"""
    import subprocess, sys
    spin = {SPIN!r}
    kids = [
        subprocess.Popen([sys.executable, "-c", spin, "0.3", {WORKER_MODULE!r}],
                         stdout=subprocess.PIPE),
        subprocess.Popen([sys.executable, "-c", spin, "0.6", "agent"], stdout=subprocess.PIPE),
    ]
    for kid in kids:
        kid.stdout.readline()
    print("ready", flush=True)
    sys.stdin.read()
    for kid in kids:
        kid.kill()
    """
)


def test_serve_share_counts_its_workers_not_its_agent() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        usage = tree_usage([parent.pid])
    finally:
        parent.communicate("", timeout=30)
    # /proc gives user and system time each in whole clock ticks (10 ms), cut down: up to
    # two ticks short per process of the three.
    assert usage.cpu_s >= 0.3 + 0.6 - 3 * TICKS_SHORT_S
    # the worker's 0.3 s and the parent's start-up, never the agent's 0.6 s
    assert usage.root_cpu_s >= 0.3 - 2 * TICKS_SHORT_S
    assert usage.cpu_s - usage.root_cpu_s >= 0.6 - TICKS_SHORT_S


@pytest.mark.parametrize("apart", [False, True])
def test_pin_puts_serve_and_its_workers_on_cpu0_and_the_agent_apart_if_asked(
    apart: bool,
) -> None:
    """``capacity --pin``: serve and its workers on CPU 0; the agent too, or with
    ``--agent-apart`` on the generator's CPUs (every CPU of the bench but 0)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        pin_serve(parent.pid, agent_apart=apart)
        kids = psutil.Process(parent.pid).children()
        cpus = {"agent" if "agent" in k.cmdline() else "worker": k.cpu_affinity() for k in kids}
        serve_cpus = psutil.Process(parent.pid).cpu_affinity()
    finally:
        parent.communicate("", timeout=30)
    assert serve_cpus == [SERVE_CPU] and cpus["worker"] == [SERVE_CPU]
    # (a one-CPU machine has no CPU apart: the agent stays with serve)
    others = sorted(set(os.sched_getaffinity(0)) - {SERVE_CPU}) or [SERVE_CPU]
    assert cpus["agent"] == (others if apart else [SERVE_CPU])
