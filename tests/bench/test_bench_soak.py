"""``callbridge bench soak``: the growth fit, and a short real run against ``serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.soak import KIB, growth
from media.config import ConfigError
from tests.bench.test_bench_runs import run_bench


def test_growth_is_the_slope_after_warmup() -> None:
    t = [float(s) for s in range(0, 300, 5)]
    # 50 MiB of start-up, then a steady leak of 120 KiB a minute
    rss = [(100 * KIB * KIB if s < 60 else 150 * KIB * KIB) + int(2 * KIB * s) for s in t]
    g = growth(t, rss, warmup_s=60)
    assert g["slope_kib_per_min"] == pytest.approx(120, abs=0.5)
    assert g["start_kib"] == 150 * KIB + 120 and g["end_kib"] == 150 * KIB + 2 * 295


def test_growth_needs_samples_after_warmup() -> None:
    assert growth([0.0, 1.0, 2.0], [1, 2, 3], warmup_s=10)["slope_kib_per_min"] is None


def test_soak_refuses_a_run_too_short_for_its_warmup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_bench("soak", "--seconds", "10", "--warmup", "60", "--results-dir", str(tmp_path))


def test_a_short_soak_samples_both_processes(tmp_path: Path) -> None:
    rc, _ = run_bench(
        "soak", "--seed", "11", "--calls", "3", "--seconds", "8", "--warmup", "2",
        "--sample-every", "1", "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "soak.json").read_text())
    res = doc["results"]
    assert res["calls_completed"] == 3
    assert len(res["samples"]["t_s"]) >= 6
    assert min(res["samples"]["serve"]) > 10 * KIB * KIB  # a Python process, sampled for real
    assert min(res["samples"]["agent"]) > 10 * KIB * KIB  # the echo agent child, separately
    assert res["serve"]["slope_kib_per_min"] is not None
    assert (tmp_path / "soak-rss.png").stat().st_size > 1000
