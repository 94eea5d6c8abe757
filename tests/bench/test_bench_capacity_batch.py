"""``bench capacity --media-batch off,on``: the batched resampling's before and after in one run
(issue 15), alone and combined with the other switches."""

from __future__ import annotations

from pathlib import Path

from tests.bench.test_bench_runs import check_step, two_calls


def test_capacity_media_batch_off_and_on_with_each_link(tmp_path: Path) -> None:
    """Every combination of the switches given is a serve of its own, every step against
    each in turn, labelled with what it runs."""
    doc = two_calls(tmp_path, "--media-batch", "off,on", "--agent-link", "mux")
    rows = doc["results"]["steps"]
    labels = ["link mux batch off", "link mux batch on"]
    assert [r["target"] for r in rows] == labels
    for row in rows:
        check_step(row, 2)
    assert doc["params"]["media_batch"] == ["off", "on"]
    assert set(doc["results"]["server"]) == set(labels)
