"""``callbridge bench turn``: voice-to-voice latency with the real offline agent, and its costs.

``callbridge serve`` (media core + control plane, SQLite in the results folder) is pointed at
:mod:`bench.turn_agent`: the real offline agent (Silero VAD, Whisper tiny.en, the MiniLM intent
router, piper) with a stopwatch on each stage. One AudioSocket caller at a time
(:mod:`bench.turn_caller`) hears the greeting out, says a recorded utterance from
``rtp_fixtures/speech`` (8 kHz, as Asterisk sends it) and notes when the answer arrives. With
one monotonic clock for every process on the host, each stage is timed from the end of the
caller's speech (the last 20 ms frame of the fixture above -40 dBFS):

VAD stop -> STT final -> LLM first output (text or tool call) -> TTS first audio -> first audio
written to the agent link -> first audio at the caller. ``media core`` is the last hop alone:
link -> 16k->8k -> playout -> pacer -> AudioSocket.

Also measured, in this process: Whisper's word accuracy on the fixtures (16 kHz as recorded, and
through 8 kHz as a phone call carries them), and the agent's CPU per listening call without
inference (:func:`ai_pipeline.turnbench.measure_cpu`: N pipelines fed real-time silence).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import trio

from bench.progress import Progress
from bench.report import format_table, results_folder, write_json
from bench.server import free_port, launched, python_command
from bench.stats import summarize_ms
from bench.targets import add_serve_argument, callbridge_target, first_access_key
from bench.turn_caller import LEG_RATE_HZ, TurnTimeout, TurnTimes, one_turn
from bench.turn_stt import stt_report
from bench.turn_tools import ToolReceiver, make_default_agent, tool_round_trips
from media.config import ConfigError

STAGES = ("vad_stop", "stt_final", "llm_first", "tts_first_audio", "link_first_audio")
TOOL_LABEL = (
    "tool call round trip: transfer_call as a webhook tool on a loopback receiver, agent link "
    "FunctionCall -> media core -> control plane -> signed POST -> FunctionCallResult"
)
SPEECH_FLOOR_DBFS = -40.0  # quieter 20 ms frames at the end of a fixture are its silent tail


def add_turn_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--utterances",
        nargs="*",
        default=None,
        metavar="WAV",
        help="fixtures of rtp_fixtures/speech to say (default: all in transcripts.tsv)",
    )
    p.add_argument("--repeat", type=int, default=2, help="turns per utterance (default 2)")
    p.add_argument(
        "--cpu-calls",
        default="1,5",
        help="listening calls for the CPU-per-call figure, comma-separated (default 1,5)",
    )
    p.add_argument("--cpu-seconds", type=float, default=6.0, help="seconds per CPU step")
    add_serve_argument(p)


def to_8k(pcm16_16k: bytes) -> bytes:
    """What Asterisk sends for this audio on an 8 kHz channel."""
    x = np.frombuffer(pcm16_16k, dtype="<i2")
    return np.asarray(soxr.resample(x, 16000, LEG_RATE_HZ), dtype="<i2").tobytes()


def silent_tail_bytes(pcm16: bytes, frame_bytes: int = 320) -> int:
    """Bytes after the last 20 ms frame with speech in it: the fixture's padding plus the
    voice's own trailing silence, so that the end of speech is where the words end."""
    x = np.frombuffer(pcm16[: len(pcm16) // frame_bytes * frame_bytes], dtype="<i2")
    rms = np.sqrt(np.mean(x.reshape(-1, frame_bytes // 2).astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > 32768 * 10 ** (SPEECH_FLOOR_DBFS / 20))[0]
    last = int(loud[-1]) + 1 if loud.size else 0
    return len(pcm16) - last * frame_bytes


def stage_latencies(times: TurnTimes, record: dict[str, Any]) -> dict[str, float]:
    """ms from the end of speech to each stage's first output after it, and the last hop."""
    out: dict[str, float] = {}
    for stage in STAGES:
        after = [t for t in record.get(stage, []) if t >= times.speech_end]
        if after:
            out[stage] = (min(after) - times.speech_end) * 1000
    out["caller_first_audio"] = (times.first_audio - times.speech_end) * 1000
    if "link_first_audio" in out:
        out["media_core"] = out["caller_first_audio"] - out["link_first_audio"]
    return out


def word_accuracy(names: list[str]) -> list[dict[str, Any]]:
    """Whisper tiny.en on the fixtures, short window and 30 s window, at 16 kHz and through an
    8 kHz phone channel (:mod:`bench.turn_stt`); the agent runs the short one."""
    from bench.turn_stt import stt_rows

    rows = stt_rows(names)
    for row in rows:
        for channel in ("16k", "8k"):
            row[f"text_{channel}"] = row[f"short_text_{channel}"]
            row[f"errors_{channel}"] = row[f"short_errors_{channel}"]
    return rows


def cpu_per_listening_call(calls: list[int], seconds: float) -> dict[int, float]:
    import sys

    from loguru import logger

    from ai_pipeline.engines.models import ModelStore
    from ai_pipeline.turnbench import measure_cpu

    logger.remove()  # pipecat logs every frame hop at DEBUG: that would be measured too
    logger.add(sys.stderr, level="WARNING")
    models = ModelStore()
    models.preload_offline()
    return {n: round(asyncio.run(measure_cpu(models, n, seconds)), 2) for n in calls}


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _new_record(path: Path, seen: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """The agent's record of the call that just ended (calls run one at a time): the first
    line after the ``seen`` lines that were there before it; {} if it never reached the agent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) > seen:
            record: dict[str, Any] = json.loads(lines[seen])
            return record
        time.sleep(0.1)
    return {}


def run_turns(ns: argparse.Namespace, folder: Path, names: list[str]) -> list[dict[str, Any]]:
    from ai_pipeline.turnbench import load_fixture

    agent_port = free_port()
    records = folder / "turn-agent.jsonl"
    agent_cmd = python_command(
        "-m", "bench.turn_agent", "--port", str(agent_port), "--out", str(records)
    )
    turns: list[dict[str, Any]] = []
    plan = [name for name in names for _ in range(ns.repeat)]
    with (
        ToolReceiver().running() as receiver,
        launched(agent_cmd, "127.0.0.1", agent_port, folder / "turn-agent.log", timeout_s=180),
        callbridge_target(ns, folder, agent=f"ws://127.0.0.1:{agent_port}") as target,
        Progress(f"turn x{len(plan)}", len(plan)) as bar,
    ):
        key = first_access_key(folder / "serve.log")
        make_default_agent(target.http_port, key, receiver.url)
        for i, name in enumerate(plan):
            pcm8k = to_8k(load_fixture(name))
            tail_bytes = silent_tail_bytes(pcm8k)
            row: dict[str, Any] = {"utterance": name}
            seen = _line_count(records)
            try:
                times = trio.run(one_turn, target.port, pcm8k, tail_bytes)
            except TurnTimeout as exc:
                row["error"] = str(exc)
                _new_record(records, seen)  # let the agent finish that call first
            else:
                record = _new_record(records, seen)
                row.update(stage_latencies(times, record))
                row["reply_ms"] = times.reply_frames * 20
                row["agent_cpu_s"] = round(record.get("cpu_s", math.nan), 3)
                row["tool_calls"] = tool_round_trips(record)
            turns.append(row)
            bar.update(i + 1)
    return turns


def summarise(turns: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [*STAGES, "media_core", "caller_first_audio"]
    ok = [t for t in turns if "error" not in t]
    return {key: summarize_ms([t[key] for t in ok if key in t]) for key in keys}


def summarise_tools(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """Tool round trips that succeeded, and how many answered with an error."""
    calls = [c for t in turns for c in t.get("tool_calls", [])]
    good = [c["round_trip_ms"] for c in calls if not c["is_error"]]
    return {
        "label": TOOL_LABEL,
        "succeeded": summarize_ms(good),
        "errors": sum(1 for c in calls if c["is_error"]),
    }


def run_turn(ns: argparse.Namespace) -> int:
    from ai_pipeline.turnbench import fixture_transcripts

    if ns.repeat < 1:
        raise ConfigError("--repeat must be >= 1")
    try:
        cpu_calls = [int(x) for x in ns.cpu_calls.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--cpu-calls: expected numbers like 1,5, got {ns.cpu_calls!r}") from None
    known = [name for name, _ in fixture_transcripts()]
    names = ns.utterances or known
    if unknown := sorted(set(names) - set(known)):
        raise ConfigError(f"--utterances: not in rtp_fixtures/speech/transcripts.tsv: {unknown}")
    folder = results_folder("turn", ns.results_dir)

    accuracy = word_accuracy(names)
    turns = run_turns(ns, folder, names)
    cpu = cpu_per_listening_call(cpu_calls, ns.cpu_seconds) if cpu_calls else {}
    summary = summarise(turns)
    total_words = sum(r["words"] for r in accuracy)
    acc = {
        path: round(1 - sum(r[f"errors_{path}"] for r in accuracy) / total_words, 4)
        for path in ("16k", "8k")
    }
    agent_cpu = [t["agent_cpu_s"] for t in turns if "agent_cpu_s" in t]
    results = {
        "stages_ms_after_end_of_speech": summary,
        "turns": turns,
        "stt_word_accuracy": acc,
        "stt_fixtures": accuracy,
        "agent_cpu_pct_per_listening_call": cpu,
        "agent_cpu_s_per_call_with_inference": summarize_ms(agent_cpu),
        "tool_calls": summarise_tools(turns),
    }
    params = {"utterances": names, "repeat": ns.repeat, "cpu_calls": cpu_calls}
    write_json(folder, "turn", ns.seed, params, results)
    from bench.plots import plot_cdf

    plot_cdf(
        folder / "turn-stages-cdf.png",
        {k: [t[k] for t in turns if k in t] for k in [*STAGES, "caller_first_audio"]},
        "ms after the caller stopped speaking",
        f"Turn latency by stage, {len(turns)} turns, offline agent",
    )
    print(report(summary, turns, acc, accuracy, cpu, agent_cpu))
    print(stt_report(accuracy))
    tools = summarise_tools(turns)
    done = tools["succeeded"]
    print(
        f"{TOOL_LABEL}: {done['count']} succeeded, p50 {done['p50_ms']} / max {done['max_ms']} "
        f"ms; {tools['errors']} answered with an error"
    )
    print(f"results: {folder}")
    return 0


def report(
    summary: dict[str, Any],
    turns: list[dict[str, Any]],
    acc: dict[str, float],
    accuracy: list[dict[str, Any]],
    cpu: dict[int, float],
    agent_cpu: list[float],
) -> str:
    rows = [[k, s["count"], s["p50_ms"], s["p95_ms"], s["max_ms"]] for k, s in summary.items()]
    lines = [
        "Turn latency, ms after the end of the caller's speech:",
        format_table(["stage", "turns", "p50 ms", "p95 ms", "max ms"], rows),
    ]
    errors = [f"{t['utterance']}: {t['error']}" for t in turns if "error" in t]
    if errors:
        lines.append("turns without an answer: " + "; ".join(errors))
    lines.append(
        f"\nSTT word accuracy (Whisper tiny.en int8): {acc['16k']:.1%} at 16 kHz, "
        f"{acc['8k']:.1%} through 8 kHz"
    )
    lines.append(
        format_table(
            ["fixture", "words", "err 16k", "err 8k", "heard through 8 kHz"],
            [
                [r["fixture"], r["words"], r["errors_16k"], r["errors_8k"], r["text_8k"]]
                for r in accuracy
            ],
        )
    )
    if cpu:
        per = ", ".join(f"{n} calls: {pct:.1f}%" for n, pct in cpu.items())
        lines.append(f"\nAgent CPU per listening call (VAD on, no inference), of a core: {per}")
    if agent_cpu:
        lines.append(
            f"Agent CPU per call with inference (greeting + one turn): "
            f"median {float(np.median(agent_cpu)):.2f} s"
        )
    return "\n".join(lines)
