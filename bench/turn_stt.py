"""``callbridge bench stt``: Whisper's 30 s window against the short window, in one run.

For each ``rtp_fixtures/speech`` utterance, at 16 kHz as recorded and through an 8 kHz phone
channel, both paths transcribe the same audio: faster-whisper's own ``transcribe`` (every input
padded to 30 s) and :class:`~ai_pipeline.engines.whisper_window.ShortWindowWhisper` (the
utterance's frames plus 0.5 s), with the word errors against ``transcripts.tsv`` and the process
CPU each took (CTranslate2's threads included). Each utterance is run ``--repeat`` times per path,
alternating, and the median kept, so both paths see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

from bench.report import format_table, results_folder, write_json

LEG_RATE_HZ = 8000
LINK_RATE_HZ = 16000


def through_8k(pcm16_16k: bytes) -> bytes:
    """The audio as an 8 kHz phone channel delivers it to the agent (down, then up again)."""
    x = np.frombuffer(pcm16_16k, dtype="<i2")
    down = np.asarray(soxr.resample(x, LINK_RATE_HZ, LEG_RATE_HZ), dtype="<i2")
    return np.asarray(soxr.resample(down, LEG_RATE_HZ, LINK_RATE_HZ), dtype="<i2").tobytes()


def _timed(transcribe: Callable[[bytes], str], pcm16: bytes, repeat: int) -> tuple[str, float]:
    cpu_ms = []
    text = ""
    for _ in range(repeat):
        started = time.process_time()
        text = transcribe(pcm16)
        cpu_ms.append((time.process_time() - started) * 1000)
    return text, statistics.median(cpu_ms)


def stt_rows(names: list[str], repeat: int = 1) -> list[dict[str, Any]]:
    """Per fixture and channel: each path's text, word errors and CPU ms (median of repeats)."""
    from ai_pipeline.engines.models import ModelStore
    from ai_pipeline.engines.stt import transcribe_full_window
    from ai_pipeline.engines.whisper_window import ShortWindowWhisper
    from ai_pipeline.turnbench import fixture_transcripts, load_fixture, word_errors, words

    whisper = ModelStore().whisper()
    short = ShortWindowWhisper(whisper)
    paths: dict[str, Callable[[bytes], str]] = {
        "full": lambda pcm16: transcribe_full_window(whisper, pcm16),
        "short": lambda pcm16: h.text if (h := short.transcribe(pcm16)).is_speech else "",
    }
    rows = []
    for name, reference in fixture_transcripts():
        if name not in names:
            continue
        ref = words(reference)
        row: dict[str, Any] = {"fixture": name, "reference": reference, "words": len(ref)}
        pcm16 = load_fixture(name)
        row["audio_s"] = round(len(pcm16) / 2 / LINK_RATE_HZ, 2)
        for channel, audio in (("16k", pcm16), ("8k", through_8k(pcm16))):
            for path, transcribe in paths.items():
                text, cpu_ms = _timed(transcribe, audio, repeat)
                row[f"{path}_text_{channel}"] = text
                row[f"{path}_errors_{channel}"] = word_errors(ref, words(text))
                row[f"{path}_cpu_ms_{channel}"] = round(cpu_ms, 1)
        rows.append(row)
    return rows


def accuracy(rows: list[dict[str, Any]], path: str, channel: str) -> float:
    total = sum(int(r["words"]) for r in rows)
    return 1 - sum(int(r[f"{path}_errors_{channel}"]) for r in rows) / total


def stt_report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Whisper tiny.en int8, greedy: CPU ms per utterance (median) and word errors, "
        "30 s window vs short window, same run:",
        format_table(
            ["fixture", "s", "words", "full ms", "short ms", "err full", "err short", "short, 8k"],
            [
                [
                    r["fixture"],
                    r["audio_s"],
                    r["words"],
                    f"{r['full_cpu_ms_16k']:.0f}/{r['full_cpu_ms_8k']:.0f}",
                    f"{r['short_cpu_ms_16k']:.0f}/{r['short_cpu_ms_8k']:.0f}",
                    f"{r['full_errors_16k']}/{r['full_errors_8k']}",
                    f"{r['short_errors_16k']}/{r['short_errors_8k']}",
                    r["short_text_8k"],
                ]
                for r in rows
            ],
        ),
        "(ms and errors: at 16 kHz / through 8 kHz)",
    ]
    for path in ("full", "short"):
        cpu = [r[f"{path}_cpu_ms_{c}"] for r in rows for c in ("16k", "8k")]
        lines.append(
            f"{path:5s}: median {statistics.median(cpu):.0f} ms of CPU per utterance; words right "
            f"{accuracy(rows, path, '16k'):.1%} at 16 kHz, {accuracy(rows, path, '8k'):.1%} "
            "through 8 kHz"
        )
    return "\n".join(lines)


def add_stt_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=3, help="runs per utterance and path (default 3)")


def run_stt(ns: argparse.Namespace) -> int:
    import logging

    from ai_pipeline.turnbench import fixture_transcripts

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per transcribe
    names = [name for name, _ in fixture_transcripts()]
    folder = results_folder("stt", ns.results_dir)
    rows = stt_rows(names, max(1, ns.repeat))
    write_json(folder, "stt", ns.seed, {"repeat": ns.repeat}, rows)
    print(stt_report(rows))
    print(f"results: {folder}")
    return 0
