"""``callbridge bench turn`` and ``bench api`` at their smallest, against the real servers: one
turn with the real offline agent behind ``callbridge serve``, a few seconds of API load on SQLite.
The JSON must hold every figure with sane values; never speed thresholds (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import cli
from bench.turn import silent_tail_bytes, stage_latencies
from bench.turn_caller import TurnTimes
from media.config import ConfigError


def run_bench(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def load(folder: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / f"{name}.json").read_text())
    assert doc["seed"] == 11 and doc["machine"]["cpu_model"]
    return doc


def test_stages_are_timed_from_the_end_of_speech() -> None:
    times = TurnTimes(speech_end=100.0, first_audio=101.5)
    record = {
        "vad_stop": [99.0, 100.25],  # the first stop was a pause mid-utterance
        "stt_final": [100.9],
        "llm_first": [101.0],
        "tts_first_audio": [95.0, 101.2],  # 95.0: the greeting
        "link_first_audio": [95.0, 101.25],
    }
    got = stage_latencies(times, record)
    expected = {
        "vad_stop": 250.0,
        "stt_final": 900.0,
        "llm_first": 1000.0,
        "tts_first_audio": 1200.0,
        "link_first_audio": 1250.0,
        "caller_first_audio": 1500.0,
        "media_core": 250.0,
    }
    assert got == pytest.approx(expected)
    assert "stt_final" not in stage_latencies(times, {"stt_final": [99.5]})


def test_silent_tail_is_measured_from_the_last_loud_frame() -> None:
    loud = (np.full(1600, 8000, dtype="<i2")).tobytes()  # 200 ms
    hiss = (np.full(800, 30, dtype="<i2")).tobytes()  # 100 ms far below -40 dBFS
    assert silent_tail_bytes(loud + hiss) == len(hiss)
    assert silent_tail_bytes(loud) == 0
    assert silent_tail_bytes(hiss) == len(hiss)


@pytest.mark.slow
def test_bench_turn_one_turn_with_the_real_agent(tmp_path: Path) -> None:
    rc = run_bench(
        "turn",
        "--seed",
        "11",
        "--results-dir",
        str(tmp_path),
        "--utterances",
        "billing_question.wav",  # one VAD segment: "transfer me to sales, please" is two
        "--repeat",
        "1",
        "--cpu-calls",
        "1",
        "--cpu-seconds",
        "2",
    )
    assert rc == 0
    result = load(tmp_path, "turn")["results"]
    (turn,) = result["turns"]
    assert "error" not in turn, turn
    # Every stage was seen after the caller stopped speaking, before the answer reached it.
    stages = ["vad_stop", "stt_final", "llm_first", "tts_first_audio", "link_first_audio"]
    assert all(0 < turn[k] <= turn["caller_first_audio"] for k in stages), turn
    assert turn["vad_stop"] < turn["stt_final"]
    assert turn["media_core"] >= 0
    assert turn["reply_ms"] > 500 and turn["agent_cpu_s"] > 0
    # "a question about my bill" -> transfer_call, which succeeded through the real control
    # plane (a webhook tool answered on loopback), not an error reply from the AudioSocket leg.
    (tool,) = turn["tool_calls"]
    assert tool["name"] == "transfer_call" and tool["is_error"] is False, tool
    assert 0 < tool["round_trip_ms"] < turn["caller_first_audio"]
    assert result["tool_calls"]["succeeded"]["count"] == 1 and result["tool_calls"]["errors"] == 0
    assert "webhook" in result["tool_calls"]["label"]
    assert result["stages_ms_after_end_of_speech"]["caller_first_audio"]["count"] == 1
    (fixture,) = result["stt_fixtures"]
    assert "bill" in fixture["text_8k"].lower()
    assert 0 < result["stt_word_accuracy"]["8k"] <= 1
    assert result["agent_cpu_pct_per_listening_call"]["1"] > 0
    assert (tmp_path / "turn-stages-cdf.png").stat().st_size > 1000


def test_bench_turn_rejects_unknown_utterances(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run_bench("turn", "--results-dir", str(tmp_path), "--utterances", "nope.wav")


@pytest.mark.slow
def test_bench_api_on_sqlite(tmp_path: Path) -> None:
    rc = run_bench(
        "api",
        "--seed",
        "11",
        "--results-dir",
        str(tmp_path),
        "--backends",
        "sqlite",
        "--rate-per-s",
        "20",
        "--seconds",
        "2",
    )
    assert rc == 0
    result = load(tmp_path, "api")["results"]["sqlite"]
    assert result["errors"] == 0 and result["events_lost"] == 0
    for path in ("GET", "POST", "event_to_ws"):
        assert result[path]["n"] > 0
        assert 0 < result[path]["p50_ms"] <= result[path]["p99_ms"]
    assert (tmp_path / "api-latency.png").stat().st_size > 1000
