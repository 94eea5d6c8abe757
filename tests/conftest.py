"""Suite-wide helpers: servers on loopback are required in CI and optional elsewhere; how the
suite is spread over pytest-xdist workers (pyproject's addopts: ``-n auto --dist loadgroup``)."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbridge.heap import freeze_startup_heap
from tests.bytes_diff import pytest_assertrepr_compare  # noqa: F401 (a hook: short byte diffs)


def require_service(name: str, reason: str) -> None:
    """Skip with ``reason`` outside CI; fail in CI (CI=true), where every service must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")


def end_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, and SIGKILL if ``proc`` is still running ``timeout_s`` later."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


@pytest.fixture
def quiet_gc() -> Iterator[None]:
    """For tests that play audio in real time inside the test process: late in a run the
    process holds everything earlier tests left alive, and a full GC pass over it stalls the
    sender and the receiver alike for long enough to lose frames. Frozen, it is never walked."""
    freeze_startup_heap()
    yield
    gc.unfreeze()


# -- parallel runs (pytest-xdist) ---------------------------------------------------------------
#
# Most of the suite waits on real time (audio paced at 20 ms, servers, sockets), but what it does
# run is heavy (model loading, serve's imports, real-time media), so a run keeps one worker per
# CPU: with two per CPU on a loaded 2-core box real-time tests missed their deadlines (11 failed
# in one run). Tests share no state by default: servers (Asterisk, Kamailio, sipp, serve, agents)
# start per test on free ports, MariaDB tables and Redis keys and channels carry a per-test
# prefix (tests/control/conftest.py). The exceptions run as one group, one test at a time, on one
# worker (--dist loadgroup; the biggest groups are handed out first).
WORKERS_PER_CPU = 1
MIN_WORKERS = 2
MAX_WORKERS = 8  # each worker loads the offline models once (~1 GB)
TESTS = Path(__file__).resolve().parent
XDIST_GROUPS: dict[str, str] = {
    # CPU-bound benchmarks: each measures its servers' CPU and frame lateness (and asserts most
    # frames arrive); two at once would measure each other.
    "bench/": "bench",
    "test_workers_bench.py": "bench",
}


def xdist_group(path: Path) -> str | None:
    """The group of the test file at ``path``, if it must not overlap with others."""
    path = path.resolve()
    if not path.is_relative_to(TESTS):
        return None
    rel = path.relative_to(TESTS).as_posix()
    return next((g for prefix, g in XDIST_GROUPS.items() if rel.startswith(prefix)), None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        group = xdist_group(item.path)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):
        # On workers (each collects the same list, so the order agrees): tests marked slow are
        # handed out first, so the run does not end waiting on one long test begun last.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: no workers when the run names one test file (or tests in one file: it runs
    in process, so -s, --pdb and prints work as without xdist); otherwise WORKERS_PER_CPU per
    CPU, MIN_WORKERS to MAX_WORKERS. PYTEST_XDIST_AUTO_NUM_WORKERS and ``-n N`` override it."""
    if env := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(env)
    files = {arg.split("::")[0] for arg in config.args}
    if len(files) == 1 and files.pop().endswith(".py"):
        return 0
    return min(MAX_WORKERS, max(MIN_WORKERS, WORKERS_PER_CPU * (os.cpu_count() or 1)))
