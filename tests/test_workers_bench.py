"""``callbridge bench capacity --serve-workers 1,2``: the same ramp against ``serve --workers 1``
and then ``--workers 2`` in one run, both on Redis, every caller connected and echoed in each, and
the 2-worker serve's calls held by its workers (ids 0 and 1; which takes which is the kernel's)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.bench.test_bench_runs import SECONDS, check_step, run_bench
from tests.conftest import require_service
from tests.test_workers import REDIS_URL, _redis_up


@pytest.mark.slow
def test_capacity_compares_worker_counts_in_one_run(tmp_path: Path) -> None:
    if not _redis_up():
        require_service("redis", "bench capacity --serve-workers runs serve on Redis")
    rc, _ = run_bench(
        *("capacity", "--seed", "11", "--steps", "6", "--step-seconds", SECONDS),
        *("--serve-workers", "1,2", "--redis-url", REDIS_URL, "--results-dir", str(tmp_path)),
    )
    assert rc == 0
    doc = json.loads((tmp_path / "capacity.json").read_text())
    by_workers = doc["results"]["by_workers"]
    assert set(by_workers) == {"1", "2"}
    for workers, run in by_workers.items():
        assert f"--workers {workers} --redis" in run["server"]
        check_step(run["steps"][0], 6)
    with sqlite3.connect(tmp_path / "bench-serve.db") as db:  # the last run's: --workers 2
        per_worker = dict(db.execute("SELECT worker_id, COUNT(*) FROM calls GROUP BY worker_id"))
    assert sum(per_worker.values()) == 6 and set(per_worker) <= {0, 1}, per_worker
