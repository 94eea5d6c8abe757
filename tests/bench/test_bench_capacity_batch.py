"""``bench capacity --media-batch off,on``, ``--mux-flush-ms``: issue 15's before and after in one
run, alone and combined with the other switches."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.variants import Variant, parse_core, parse_flushes, parse_holds, variants
from media.agent_mux import FLUSH_SWITCH
from media.config import ConfigError
from media.tick import BATCH_SWITCH
from media.tick import ENV_SWITCH as TICK_SWITCH
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


def test_every_combination_runs_with_its_switches() -> None:
    """``--media-batch off,on --mux-flush-ms 0,1 --agent-link mux``: four serves, each with
    the environment its label says (the switches serve reads at start)."""
    runs = variants([], ["mux"], ["off", "on"], parse_flushes("0,1"))
    assert [v.label for v in runs] == [
        "link mux batch off flush 0ms",
        "link mux batch off flush 1ms",
        "link mux batch on flush 0ms",
        "link mux batch on flush 1ms",
    ]
    assert runs[1].environment() == {BATCH_SWITCH: "0", FLUSH_SWITCH: "1"}
    assert Variant("off", None).environment() == {TICK_SWITCH: "0"}
    with pytest.raises(ConfigError):
        parse_flushes("1,x")


def test_core_before_and_after_are_every_switch_off_then_on(tmp_path: Path) -> None:
    """``--core before,after``: the media core as the issue found it and as it is by default,
    two serves in one run, each with its switches (``before`` on a WebSocket per call)."""
    before, after = parse_core("before,after")
    assert before.environment() == {TICK_SWITCH: "0", BATCH_SWITCH: "0"}
    assert (before.link, after.link) == ("ws", "mux")
    assert after.environment() == {TICK_SWITCH: "1", BATCH_SWITCH: "1"}
    doc = two_calls(tmp_path, "--core", "before,after")
    rows = doc["results"]["steps"]
    assert [r["target"] for r in rows] == [before.label, after.label]
    assert rows[0]["target"].startswith("before:") and rows[1]["target"].startswith("after:")
    for row in rows:
        check_step(row, 2)
    with pytest.raises(ConfigError):
        parse_core("before,later")


def test_playout_holds_are_serves_of_their_own() -> None:
    """``--playout-hold-ms 0,8``: two serves, labelled by their hold (a serve argument, not an
    environment switch)."""
    runs = variants([], [], None, None, parse_holds("0,8"))
    assert [v.label for v in runs] == ["hold 0ms", "hold 8ms"]
    assert [v.hold_ms for v in runs] == ["0", "8"] and runs[1].environment() == {}
    with pytest.raises(ConfigError):
        parse_holds("8,-1")
