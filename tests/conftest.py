"""Suite-wide helpers: servers on loopback are required in CI and optional elsewhere."""

from __future__ import annotations

import gc
import os
import subprocess
from collections.abc import Iterator

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
