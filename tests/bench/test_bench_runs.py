"""End-to-end smoke runs of ``callbridge bench capacity|hop`` at tiny N (~3 s of
audio each) against real servers on loopback: the JSON must hold every field with sane values
(vs-pipecat: test_bench_vs_pipecat.py).
Never speed thresholds: the machine is shared."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.capacity import headline, parse_steps
from bench.hop import match_hops
from bench.loadgen import CallerResult
from bench.server import free_port, wait_listening
from bench.vs_pipecat import median_ratios
from media.config import ConfigError

SECONDS = "2.5"


def run_bench(*argv: str) -> tuple[int, argparse.Namespace]:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    ns = parser.parse_args(list(argv))
    return cli.run(ns), ns


def load(folder: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    assert doc["seed"] == 11
    assert doc["machine"]["cpu_model"] and doc["machine"]["ram_bytes"] > 0
    assert doc["machine"]["packages"]["trio"]
    assert isinstance(doc["machine"]["git_dirty"], bool)
    return doc


def check_step(row: dict[str, Any], n_calls: int, seconds: str = SECONDS) -> None:
    assert row["n_calls"] == n_calls
    assert row["connected"] == n_calls, row["first_errors"]
    assert row["errors"] == 0, row["first_errors"]
    per_call = float(seconds) * 50
    assert row["frames_sent"] == n_calls * per_call
    assert 0.5 * row["frames_sent"] <= row["frames_received"] <= row["frames_sent"]
    assert row["lateness"]["count"] > 0 and row["lateness"]["p50_ms"] >= 0
    assert row["lateness"]["p50_ms"] <= row["lateness"]["p99_ms"] <= row["lateness"]["max_ms"]
    assert row["round_trip"]["count"] >= 1 and row["round_trip"]["p50_ms"] > 0
    assert row["server_cpu_pct"] is not None and row["server_cpu_pct"] >= 0
    assert row["server_us_per_frame"] > 0 and row["root_us_per_frame"] > 0
    assert row["rss_loaded_mb"] > 10
    assert isinstance(row["passes"], bool)
    assert row["others_cpu_pct"] is not None and row["machine_cores"] >= 1


def two_calls(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """``bench capacity`` at 2 calls against serve, with ``argv``; its JSON."""
    args = ("--seed", "11", "--steps", "2", "--step-seconds", SECONDS)
    rc, _ = run_bench("capacity", *argv, *args, "--results-dir", str(tmp_path))
    assert rc == 0
    return load(tmp_path, "capacity")


@pytest.mark.parametrize("leg", ["audiosocket", "twilio", "rtp"])
def test_capacity_against_serve(tmp_path: Path, leg: str) -> None:
    """Callers speak AudioSocket; or ``--leg twilio``: Twilio Media Streams to serve's
    /v1.0/media-streams; or ``--leg rtp``: SIP calls to serve's ``--sip``, PCMU over RTP."""
    doc = two_calls(tmp_path, "--leg", leg)
    check_step(doc["results"]["steps"][0], 2)
    assert doc["params"]["leg"] == f"{leg}, 8 kHz"
    assert "serve" in doc["results"]["server"]
    for png in ("capacity-lateness-cdf.png", "capacity-cpu.png", "capacity-lateness.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_capacity_media_tick_off_and_on_in_one_run(tmp_path: Path) -> None:
    """``--media-tick off,on``: a serve with the per-call tasks and one with the shared tick
    (media/tick.py), every step against each in turn: issue 15's before and after in one run."""
    doc = two_calls(tmp_path, "--media-tick", "off,on")
    rows = doc["results"]["steps"]
    assert [r["target"] for r in rows] == ["tick off", "tick on"]
    for row in rows:
        check_step(row, 2)
    assert set(doc["results"]["by_target"]) == {"tick off", "tick on"}
    assert set(doc["results"]["server"]) == {"tick off", "tick on"}


def test_capacity_agent_link_ws_and_mux_in_one_run(tmp_path: Path) -> None:
    """``--agent-link ws,mux``: a serve with a WebSocket per call to its agent and one with every
    call over one connection (media/agent_mux.py), every step against each in turn."""
    doc = two_calls(tmp_path, "--agent-link", "ws,mux")
    rows = doc["results"]["steps"]
    assert [r["target"] for r in rows] == ["link ws", "link mux"]
    for row in rows:
        check_step(row, 2)
    assert doc["params"]["agent_link"] == ["ws", "mux"]
    assert "--agent-link mux" in doc["results"]["server"]["link mux"]


@pytest.fixture
def echo_server() -> Iterator[tuple[int, int]]:
    """The throwaway echo server (not serve), for the --target path."""
    port = free_port()
    script = Path(__file__).with_name("echo_server.py")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        wait_listening("127.0.0.1", port, 10, None)
        yield port, proc.pid
    finally:
        proc.kill()
        proc.wait(5)


def test_capacity_against_an_external_target(tmp_path: Path, echo_server: tuple[int, int]) -> None:
    port, pid = echo_server
    rc, _ = run_bench(
        "capacity",
        "--seed",
        "11",
        "--steps",
        "3",
        "--step-seconds",
        SECONDS,
        "--target",
        f"127.0.0.1:{port}",
        "--server-pid",
        str(pid),
        "--results-dir",
        str(tmp_path),
    )
    assert rc == 0
    doc = load(tmp_path, "capacity")
    row = doc["results"]["steps"][0]
    check_step(row, 3)
    assert row["frames_received"] == row["frames_sent"]  # a plain echo loses nothing
    assert doc["results"]["server"].startswith("external")


def test_capacity_ramp_rate_spreads_connects(tmp_path: Path, echo_server: tuple[int, int]) -> None:
    port, pid = echo_server
    target = ["--target", f"127.0.0.1:{port}", "--server-pid", str(pid)]
    rc, _ = run_bench(
        "capacity", "--seed", "11", "--steps", "3", "--step-seconds", SECONDS,
        "--ramp-rate", "2", *target,
        "--results-dir", str(tmp_path),
    )  # fmt: skip
    assert rc == 0
    doc = load(tmp_path, "capacity")
    row = doc["results"]["steps"][0]
    # Connects spread over 1.5 s and every caller talks 1.5 s longer, so the window in which
    # all are connected still lasts about SECONDS.
    check_step(row, 3, seconds=str(float(SECONDS) + 1.5))
    assert doc["params"]["ramp_rate"] == 2
    assert row["window_s"] > float(SECONDS) - 1.5


def test_hop_times_both_directions(tmp_path: Path) -> None:
    # 3.5 s: three counted pulses a call each way, so one lost to a loaded machine (a pulse
    # half a second late pairs with nothing) still leaves the two each path needs.
    rc, _ = run_bench(
        "hop", "--seed", "11", "--calls", "2", "--seconds", "3.5", "--results-dir", str(tmp_path)
    )
    assert rc == 0
    hop = load(tmp_path, "hop")["results"]["hop"]
    assert hop["calls_matched"] == 2 and hop["agent_records"] == 2
    for path in ("inbound_leg_to_agent", "outbound_agent_to_leg", "round_trip_at_caller"):
        assert hop[path]["count"] >= 2 and hop[path]["p50_ms"] > 0
    # Both halves are parts of the round trip, each measured on its own.
    assert hop["inbound_leg_to_agent"]["p50_ms"] < hop["round_trip_at_caller"]["max_ms"]
    assert (tmp_path / "hop-cdf.png").stat().st_size > 1000


def test_median_ratios_ignore_missing_rounds() -> None:
    rounds = [
        {"ratios": {"a": 1.0, "b": None}},
        {"ratios": {"a": 3.0, "b": None}},
        {"ratios": {"a": 10.0, "b": None}},
    ]
    assert median_ratios(rounds) == {"a": 3.0, "b": None}


def test_bad_steps_are_rejected() -> None:
    with pytest.raises(ConfigError):
        parse_steps("10,x")
    with pytest.raises(ConfigError):
        parse_steps("10,0")
    with pytest.raises(ConfigError):
        parse_steps("")
    assert parse_steps("10, 50,") == [10, 50]


def test_headline_picks_the_largest_passing_step() -> None:
    rows = [
        {"n_calls": 10, "passes": True, "server_cpu_pct": 5.0},
        {"n_calls": 50, "passes": True, "server_cpu_pct": 25.0},
        {"n_calls": 100, "passes": False, "server_cpu_pct": 60.0},
    ]
    assert headline(rows) == {
        "max_calls_passing": 50,
        "calls_per_core": 200.0,
        "server_cpu_pct_at_max": 25.0,
    }
    assert headline(rows[2:])["max_calls_passing"] is None


def test_hops_match_by_dtmf_tag_not_by_order() -> None:
    a, b = CallerResult(0, "a"), CallerResult(1, "b")
    a.pulse_sent_at, a.pulse_received_at = [10.0], [10.030]
    b.pulse_sent_at, b.pulse_received_at = [20.0], [20.050]
    records: list[dict[str, Any]] = [
        {"tag": "0001", "pulse_in": [20.004], "pulse_out": [20.005], "dwell_us": [50.0]},
        {"tag": "0000", "pulse_in": [10.002], "pulse_out": [10.003], "dwell_us": [40.0]},
        {"tag": "9999", "pulse_in": [], "pulse_out": [], "dwell_us": []},
    ]
    hops = match_hops([a, b], records)
    assert hops["calls_matched"] == 2 and hops["agent_records"] == 3
    assert sorted(hops["_series"]["inbound"]) == pytest.approx([2.0, 4.0])
    assert sorted(hops["_series"]["outbound"]) == pytest.approx([27.0, 45.0])


def test_target_options_need_a_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--target-leg needs --target"):
        run_bench("capacity", "--target-leg", "twilio", "--results-dir", str(tmp_path))
    with pytest.raises(ConfigError, match="--server-pid needs --target"):
        run_bench("capacity", "--server-pid", "1", "--results-dir", str(tmp_path))
    with pytest.raises(ConfigError, match="--target"):
        run_bench("capacity", "--target", "nonsense", "--results-dir", str(tmp_path))


def test_hop_agent_echoes_no_further_ahead_than_real_time() -> None:
    from bench.hop_agent import LivePace

    pace = LivePace()
    burst = [pace.may_send(10.0, 0.02) for _ in range(5)]  # a backlog arriving at once
    assert burst == [True, False, False, False, False]
    # then a live stream, 20 ms apart with a few ms of jitter either way: all echoed
    times = [10.02 + 0.02 * k + (0.004 if k % 2 else -0.004) for k in range(50)]
    assert all(pace.may_send(t, 0.02) for t in times)
