"""``callbridge bench conversations``: N callers that talk to the offline agent at once.

Each caller is Asterisk's side of an AudioSocket call (:mod:`bench.turn_caller`'s frames and
ear): it hears the greeting out, then says one of the ``rtp_fixtures/speech`` phrases (8 kHz)
every ``--every`` seconds (~6 s: phrase, answer, a pause) and listens to the answer, for
``--seconds``. Callers start ``--every / N`` apart, so their turns fall at different moments of
the cycle as real callers' do. Behind them: ``callbridge serve`` and the real offline agent
(:mod:`bench.turn_agent`: VAD, Whisper, intent router, piper), whose per-call record gives each
turn's stages and what Whisper heard.

Per step (N callers): turn latency at the caller (end of speech to the first agent audio) p50 and
p95, the stages' p50, CPU of the agent and of serve per conversation (share of one core, from
``/proc`` over the step), how many conversations one core holds at that cost, and the words
Whisper got right. ``goodbye.wav`` is left out: the agent would hang up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

from bench.progress import Progress
from bench.report import format_table, results_folder, write_json
from bench.server import free_port, launched, python_command
from bench.stats import summarize_ms
from bench.targets import add_serve_argument, callbridge_target, first_access_key
from bench.turn import STAGES, silent_tail_bytes, stage_latencies, to_8k
from bench.turn_caller import LEG_RATE_HZ, QUIET_AFTER_GREETING_S, Ear, Mouth, TurnTimes, listen
from bench.turn_tools import ToolReceiver, make_default_agent
from media.audiosocket import encode_frame
from media.config import ConfigError

LEFT_OUT = frozenset({"goodbye.wav"})  # the agent ends the call on it
ANSWER_WAIT_S = 5.0
"""An answer later than this is counted as none (the caller's next phrase is due at ~6 s)."""


@dataclass
class Conversation:
    """One caller's call: when it connected, and its turns as it lived them."""

    connected: float = math.nan
    turns: list[tuple[str, TurnTimes]] = field(default_factory=list)
    error: str = ""


async def _wait(predicate: Any, timeout_s: float) -> bool:
    with trio.move_on_after(timeout_s):
        while not predicate():  # noqa: ASYNC110  (time passing makes it true)
            await trio.sleep(0.02)
        return True
    return False


async def say_and_listen(ear: Ear, mouth: Mouth, pcm8k: bytes, tail_bytes: int) -> TurnTimes:
    """Say one phrase; note when its speech ended and when the answer's first audio came."""
    times = TurnTimes()
    mouth.speech_end = math.nan
    mouth.say(pcm8k, len(pcm8k) - tail_bytes)
    await _wait(lambda: not math.isnan(mouth.speech_end), 30)
    times.speech_end = mouth.speech_end
    times.speech_start = times.speech_end - (len(pcm8k) - tail_bytes) / (2 * LEG_RATE_HZ)
    if await _wait(lambda: ear.frames[-1][0] > times.speech_end, ANSWER_WAIT_S):
        times.first_audio = next(t for t, _ in ear.frames if t > times.speech_end)
    return times


async def converse(
    port: int, phrases: list[tuple[str, bytes, int]], seconds: float, every_s: float
) -> Conversation:
    """Call, hear the greeting, then one phrase every ``every_s`` for ``seconds``."""
    talk = Conversation()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    talk.connected = time.monotonic()
    await stream.send_all(encode_frame(0x01, uuid.uuid4().bytes))
    ear, mouth = Ear(), Mouth()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen, stream, ear)
        nursery.start_soon(mouth.run, stream)
        if not await _wait(lambda: ear.quiet_for(QUIET_AFTER_GREETING_S), 30):
            talk.error = "no greeting"
        for turn in range(0 if talk.error else int(seconds // every_s)):
            slot = time.monotonic() + every_s
            name, pcm8k, tail = phrases[turn % len(phrases)]
            times = await say_and_listen(ear, mouth, pcm8k, tail)
            talk.turns.append((name, times))
            await trio.sleep_until(trio.current_time() + max(0.0, slot - time.monotonic()))
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
    return talk


async def run_callers(
    port: int, callers: int, phrases: list[tuple[str, bytes, int]], ns: argparse.Namespace
) -> list[Conversation]:
    talks: list[Conversation] = [Conversation() for _ in range(callers)]

    async def one(i: int) -> None:
        await trio.sleep(i * ns.every / callers)
        shifted = phrases[i % len(phrases) :] + phrases[: i % len(phrases)]
        talks[i] = await converse(port, shifted, ns.seconds, ns.every)

    async with trio.open_nursery() as nursery:
        for i in range(callers):
            nursery.start_soon(one, i)
    return talks


def _heard_for(record: dict[str, Any], since: float, until: float) -> str:
    """What Whisper heard from the caller's starting a phrase to their starting the next: a
    transcript later than that is as good as wrong in a conversation."""
    return " ".join(text for t, text in record.get("transcripts", []) if since <= t < until)


def score(talks: list[Conversation], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Latencies, stages and words of every turn, each call matched to the agent's record of it
    by start time (callers start ``--every / N`` apart, far more than the connect takes)."""
    from ai_pipeline.turnbench import fixture_transcripts, word_errors, words

    references = dict(fixture_transcripts())
    rows: list[dict[str, float]] = []
    heard_rows: list[dict[str, Any]] = []
    errors = total = unanswered = 0
    for talk in talks:
        if not records or math.isnan(talk.connected):
            continue
        record = min(records, key=lambda r: abs(r.get("started", 0.0) - talk.connected))
        starts = [times.speech_start for _, times in talk.turns]
        for k, (name, times) in enumerate(talk.turns):
            if math.isnan(times.first_audio):
                unanswered += 1
            else:
                rows.append(stage_latencies(times, record))
            ref = words(references[name])
            until = starts[k + 1] if k + 1 < len(starts) else times.speech_end + 6.0
            heard = _heard_for(record, times.speech_start, until)
            wrong = min(len(ref), word_errors(ref, words(heard)))
            errors += wrong
            total += len(ref)
            answered = not math.isnan(times.first_audio)
            heard_rows.append(
                {"utterance": name, "heard": heard, "word_errors": wrong, "answered": answered}
            )
    keys = [*STAGES, "caller_first_audio"]
    return {
        "turns": len(rows) + unanswered,
        "unanswered": unanswered,
        "stages_ms": {k: summarize_ms([r[k] for r in rows if k in r]) for k in keys},
        "words_right": round(1 - errors / total, 4) if total else math.nan,
        "heard": heard_rows,
    }


def cpu_seconds(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out.append(t.user + t.system + t.children_user + t.children_system)
        except psutil.Error:
            out.append(math.nan)
    return out


def _phrases() -> list[tuple[str, bytes, int]]:
    from ai_pipeline.turnbench import fixture_transcripts, load_fixture

    chosen = []
    for name, _ in fixture_transcripts():
        if name not in LEFT_OUT:
            pcm8k = to_8k(load_fixture(name))
            chosen.append((name, pcm8k, silent_tail_bytes(pcm8k)))
    return chosen


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _all_records(paths: list[Path], seen: list[int], count: int) -> list[dict[str, Any]]:
    """The calls' records the agents wrote since ``seen`` (lines per file), ``count`` in all,
    waiting up to 15 s for them (an agent writes a call's record once it has ended)."""
    deadline = time.monotonic() + 15.0
    while True:
        lines = [line for p, n in zip(paths, seen, strict=True) for line in _lines(p)[n:]]
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)


def run_steps(
    ns: argparse.Namespace, folder: Path, steps: list[int], agent_workers: int = 1
) -> list[dict[str, Any]]:
    """``steps`` behind ``agent_workers`` agent processes (serve spreads the calls over them by
    live calls, :mod:`media.agent_pool`)."""
    ports = [free_port() for _ in range(agent_workers)]
    records_paths = [
        folder / f"conversation-agent-{agent_workers}-{j}.jsonl" for j in range(agent_workers)
    ]
    phrases = _phrases()
    results = []
    with contextlib.ExitStack() as agents:
        apids = [
            agents.enter_context(
                launched(
                    python_command(
                        "-m", "bench.turn_agent", "--port", str(port), "--out", str(out)
                    ),
                    "127.0.0.1",
                    port,
                    folder / f"agent-{agent_workers}-{j}.log",
                    timeout_s=180,
                )
            )
            for j, (port, out) in enumerate(zip(ports, records_paths, strict=True))
        ]
        urls = ",".join(f"ws://127.0.0.1:{port}" for port in ports)
        with (
            ToolReceiver().running() as receiver,
            callbridge_target(ns, folder, agent=urls) as target,
            Progress(f"conversations {steps}, {agent_workers} agents", len(steps)) as bar,
        ):
            key = first_access_key(folder / "serve.log")
            extra = {"greeting": "Hello, how can I help?"}
            if ns.turn_timeout is not None:
                extra["user_turn_timeout_secs"] = ns.turn_timeout
            make_default_agent(target.http_port, key, receiver.url, extra)
            for i, callers in enumerate(steps):
                row = _one_step(ns, target, apids, records_paths, phrases, callers)
                results.append({"agent_workers": agent_workers, **row})
                bar.update(i + 1)
    return results


def _one_step(
    ns: argparse.Namespace,
    target: Any,
    apids: list[int],
    records_paths: list[Path],
    phrases: list[tuple[str, bytes, int]],
    callers: int,
) -> dict[str, Any]:
    pids = [*apids, *target.pids]
    seen = [len(_lines(p)) for p in records_paths]
    cpu0, wall0 = cpu_seconds(pids), time.monotonic()
    talks = trio.run(run_callers, target.port, callers, phrases, ns)
    cpu1, wall1 = cpu_seconds(pids), time.monotonic()
    records = _all_records(records_paths, seen, callers)
    share = [(b - a) / (wall1 - wall0) * 100 / callers for a, b in zip(cpu0, cpu1, strict=True)]
    row = {
        "callers": callers,
        "errors": [t.error for t in talks if t.error],
        "agent_cpu_pct_per_conversation": round(sum(share[: len(apids)]), 2),
        "serve_cpu_pct_per_conversation": round(sum(share[len(apids) :]), 2),
        **score(talks, records),
    }
    both = row["agent_cpu_pct_per_conversation"] + row["serve_cpu_pct_per_conversation"]
    row["conversations_per_core"] = round(100 / both, 1) if both > 0 else math.inf
    row["load_average_1m"] = round(psutil.getloadavg()[0], 2)
    return row


def report(rows: list[dict[str, Any]]) -> str:
    table = format_table(
        [
            "agents",
            "callers",
            "turns",
            "no answer in 5 s",
            "p50 ms",
            "p95 ms",
            "VAD stop p50",
            "STT p50",
            "LLM p50",
            "TTS p50",
            "agent %/conv",
            "serve %/conv",
            "conv/core",
            "words right",
            "load",
        ],
        [
            [
                r.get("agent_workers", 1),
                r["callers"],
                r["turns"],
                r["unanswered"],
                r["stages_ms"]["caller_first_audio"]["p50_ms"],
                r["stages_ms"]["caller_first_audio"]["p95_ms"],
                r["stages_ms"]["vad_stop"]["p50_ms"],
                r["stages_ms"]["stt_final"]["p50_ms"],
                r["stages_ms"]["llm_first"]["p50_ms"],
                r["stages_ms"]["tts_first_audio"]["p50_ms"],
                r["agent_cpu_pct_per_conversation"],
                r["serve_cpu_pct_per_conversation"],
                r["conversations_per_core"],
                f"{r['words_right']:.1%}",
                r["load_average_1m"],
            ]
            for r in rows
        ],
    )
    return (
        "Conversations with the offline agent: ms from the end of the caller's speech "
        "(stages: first output after it), CPU share of one core per conversation:\n" + table
    )


def add_conversations_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--callers", default="1,5", help="callers per step, comma-separated")
    p.add_argument(
        "--agent-workers",
        default="1",
        help="agent processes behind serve, comma-separated: each count runs every step, in"
        " this one run (1,2 compares one agent with two)",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="length of each step")
    p.add_argument("--every", type=float, default=6.0, help="seconds between a caller's phrases")
    p.add_argument(
        "--turn-timeout",
        type=float,
        default=None,
        help="the agent's user_turn_timeout_secs, its wait after an unsure ending (default: the "
        "agent's own, 0.6)",
    )
    add_serve_argument(p)


def run_conversations(ns: argparse.Namespace) -> int:
    try:
        steps = [int(x) for x in ns.callers.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--callers: expected numbers like 1,5, got {ns.callers!r}") from None
    try:
        counts = [int(x) for x in ns.agent_workers.split(",") if x.strip()]
    except ValueError:
        got = ns.agent_workers
        raise ConfigError(f"--agent-workers: expected numbers like 1,2, got {got!r}") from None
    if not steps or min(steps) < 1 or ns.every < 3 or ns.seconds < ns.every:
        raise ConfigError("--callers >= 1, --every >= 3 and --seconds >= --every")
    if not counts or min(counts) < 1:
        raise ConfigError("--agent-workers >= 1")
    folder = results_folder("conversations", ns.results_dir)
    rows = [row for n in counts for row in run_steps(ns, folder, steps, n)]
    params: dict[str, Any] = {"callers": steps, "seconds": ns.seconds, "every": ns.every}
    params["agent_workers"] = counts
    params["turn_timeout"] = ns.turn_timeout
    write_json(folder, "conversations", ns.seed, params, rows)
    print(report(rows))
    for row in rows:
        if row["errors"]:
            print(f"{row['agent_workers']} agents, {row['callers']} callers: {row['errors']}")
    print(f"results: {folder}")
    return 0
