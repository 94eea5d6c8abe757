"""``callbridge bench ab``: two source trees of serve under the same calls at the same time.
A smoke run at tiny N (the same revision on both sides: sane figures for both, ratios computed
from them); never speed thresholds, the machine is shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from media.config import ConfigError
from tests.bench.test_bench_runs import check_step, load, run_bench


def test_ab_runs_both_trees_side_by_side(tmp_path: Path) -> None:
    argv = ["--before", "HEAD", "--after", "HEAD", "--leg", "twilio", "--calls", "2"]
    rc, _ = run_bench("ab", *argv, "--seconds", "2.5", "--rounds", "1", "--seed", "11",
                      "--results-dir", str(tmp_path))  # fmt: skip
    assert rc == 0
    doc = load(tmp_path, "ab")
    assert doc["params"]["commits"]["before"] == doc["params"]["commits"]["after"]
    # Each side's serve ran from its own exported tree, not from this checkout.
    for side in ("before", "after"):
        assert (tmp_path / f"{side}-tree" / "media" / "twilio_leg.py").is_file()
    (round_,) = doc["results"]["rounds"]
    assert round_["sides"].keys() == {"before", "after"}
    for row in round_["sides"].values():
        check_step(row, 2)
    before, after = round_["sides"]["before"], round_["sides"]["after"]
    ratio = after["root_cpu_pct_per_call"] / before["root_cpu_pct_per_call"]
    assert round_["ratios"]["serve CPU per call"] == pytest.approx(ratio)
    assert doc["results"]["after_over_before"]["serve CPU per call"] == pytest.approx(ratio, 1e-3)


def test_ab_refuses_an_unknown_revision(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such revision"):
        run_bench("ab", "--before", "no-such-rev-x", "--results-dir", str(tmp_path))
