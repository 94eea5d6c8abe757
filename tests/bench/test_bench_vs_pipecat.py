"""``callbridge bench vs-pipecat`` compares like with like (issue 17, item 11): the same leg,
whole server against whole server, VAD on both sides or on neither. Never speed thresholds: the
machine is shared; what is checked is which figures each ratio divides."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pipecat.frames.frames import VADUserStartedSpeakingFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.turnbench import QueueLink, load_fixture
from bench.vad_echo_agent import vad_echo_handler
from bench.vs_pipecat import compare, ratio_label
from proto.messages import Audio, CallStart, Hangup
from tests.bench.test_bench_runs import check_step, load, run_bench

COMPARED = {"callbridge", "pipecat", "callbridge+vad", "pipecat+vad"}
EXTRA = {"callbridge (AudioSocket)", "callbridge+vad (AudioSocket)"}
RATIOS = {
    f"{key}_{mode}"
    for key in ("server_cpu_per_call", "memory_per_call", "p99_lateness")
    for mode in ("vad", "no_vad")
} | {"vad_cpu_per_call"}


def side(cpu: float, rss_kb: float = 100.0, p99: float = 5.0) -> dict[str, Any]:
    return {"server_cpu_pct_per_call": cpu, "rss_per_call_kb": rss_kb, "lateness": {"p99_ms": p99}}


def test_ratios_divide_whole_servers_with_the_same_vad_over_the_same_leg() -> None:
    sides = {
        "callbridge": side(1.3) | {"process_cpu_pct_per_call": {"serve": 1.0, "agent": 0.3}},
        "pipecat": side(1.4, rss_kb=400, p99=10),
        "callbridge+vad": side(4.3),
        "pipecat+vad": side(5.4),
        # Another leg, far cheaper: it must not enter any ratio.
        "callbridge (AudioSocket)": side(0.1, rss_kb=1, p99=0.1),
    }
    ratios = compare(sides)
    assert set(ratios) == RATIOS
    # Whole server against whole server: 1.4 / 1.3, not pipecat / our agent process (1.4 / 0.3).
    assert ratios["server_cpu_per_call_no_vad"] == pytest.approx(1.4 / 1.3)
    assert ratios["server_cpu_per_call_vad"] == pytest.approx(5.4 / 4.3)  # VAD against VAD
    assert ratios["memory_per_call_no_vad"] == pytest.approx(4.0)
    assert ratios["p99_lateness_no_vad"] == pytest.approx(2.0)
    # The VAD's own cost on each side: (5.4 - 1.4) / (4.3 - 1.3).
    assert ratios["vad_cpu_per_call"] == pytest.approx(4.0 / 3.0)


def test_no_ratio_pairs_vad_with_no_vad() -> None:
    ratios = compare({"callbridge": side(1.3), "pipecat+vad": side(5.4)})
    assert ratios == {}
    ratios = compare({"callbridge+vad": side(4.3), "pipecat+vad": side(5.4)})
    assert set(ratios) == {"server_cpu_per_call_vad", "memory_per_call_vad", "p99_lateness_vad"}


def test_ratio_labels_name_the_vad_mode() -> None:
    assert ratio_label("server_cpu_per_call_no_vad").endswith("VAD on neither side")
    assert ratio_label("server_cpu_per_call_vad").endswith("VAD on both sides")
    assert "whole server" in ratio_label("server_cpu_per_call_vad")


class VadStarts(BaseObserver):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, VADUserStartedSpeakingFrame):
            self.starts += 1


def test_our_vad_echo_agent_runs_silero_and_echoes() -> None:
    """The callbridge side of the +vad rows really runs VAD on the caller's audio."""
    echoed, frames, starts = asyncio.run(vad_echo_call())
    assert echoed == frames
    assert starts >= 1


async def vad_echo_call() -> tuple[int, int, int]:
    """Echoed frames, frames sent and VAD speech starts of one call with a speech fixture."""
    observer = VadStarts()
    handler = vad_echo_handler(ModelStore().silero_session(), observers=[observer])
    link = QueueLink()
    frame_bytes = 640  # 20 ms at 16 kHz
    speech = load_fixture("opening_hours.wav") + b"\x00" * 16000  # then 0.5 s of silence
    frames = len(speech) // frame_bytes
    call = asyncio.create_task(handler(CallStart("vad-echo", sample_rate_hz=16000), link))
    for k in range(frames):
        await link.inbound.put(Audio(speech[k * frame_bytes : (k + 1) * frame_bytes], 16000))
        await asyncio.sleep(0.002)  # faster than real time: VAD counts frames, not seconds
    echoed = 0
    async with asyncio.timeout(20):
        while echoed < frames:
            _, frame = await link.outbound.get()
            echoed += isinstance(frame, Audio)
    await link.inbound.put(Hangup("bench"))
    await asyncio.wait_for(call, 10)
    return echoed, frames, observer.starts


def test_vs_pipecat_reports_like_with_like_rows(tmp_path: Path) -> None:
    rc, _ = run_bench(
        "vs-pipecat",
        "--seed",
        "11",
        "--calls",
        "2",
        "--seconds",
        "2",
        "--vad",
        "both",
        "--audiosocket",
        "--results-dir",
        str(tmp_path),
    )
    assert rc == 0
    result = load(tmp_path, "vs-pipecat")["results"]
    (one,) = result["rounds"]
    assert set(one["sides"]) == COMPARED | EXTRA
    for label, row in one["sides"].items():
        check_step(row, 2, seconds="2")
        assert row["leg"] == ("audiosocket" if label in EXTRA else "twilio")
        if label.startswith("callbridge"):
            parts = row["process_cpu_pct_per_call"]
            assert set(parts) == {"serve", "agent"} and parts["agent"] > 0
            # The whole server is serve and its agent, both counted.
            whole = row["server_cpu_pct_per_call"]
            assert parts["serve"] + parts["agent"] == pytest.approx(whole, abs=0.01)
    assert set(one["ratios"]) == RATIOS == set(result["ratios_pipecat_over_callbridge"])
    expected = (
        one["sides"]["pipecat"]["server_cpu_pct_per_call"]
        / (one["sides"]["callbridge"]["server_cpu_pct_per_call"])
    )
    assert one["ratios"]["server_cpu_per_call_no_vad"] == pytest.approx(expected)
    assert "same leg" in result["note"]
    assert json.loads((tmp_path / "vs-pipecat.json").read_text())["params"]["vad"] == "both"
    assert (tmp_path / "vs-pipecat-lateness-cdf.png").stat().st_size > 1000
