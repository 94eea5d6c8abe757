"""Conferences and recordings that Asterisk does, against a real Asterisk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.asterisk_instance import Asterisk, read_wav, running_asterisk, write_wav
from tests.sip.ari_harness import (
    CONFERENCE_HZ,
    ari_bench,
    caller_dialplan,
    conference_dialplan,
    require_asterisk,
    seconds_of,
    tone_level,
    tone_pcm16,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    talk = write_wav(tmp_path / "talk.wav", tone_pcm16(700.0, 1.5))
    wavs = [
        write_wav(tmp_path / f"c{i}.wav", tone_pcm16(hz, 2.0)) for i, hz in enumerate(CONFERENCE_HZ)
    ]

    def dialplan(root: Path) -> str:
        return caller_dialplan(root, talk) + conference_dialplan(root, wavs)

    with running_asterisk(dialplan) as ast:
        yield ast


async def test_three_asterisk_calls_in_a_conference_mixed_by_asterisk(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with ari_bench(asterisk, echo_agent) as bench:
        for n in (1, 2, 3):
            await bench.originate(f"conf{n}", dnis=f"555000{n}")
        call_ids = await bench.wait_running(3)
        await bench.wait_bridged(3)
        left: list[tuple[str, str]] = []

        async def member_left(conference_id: str, call_id: str) -> None:
            left.append((conference_id, call_id))

        bench.app.conferences.on_left = member_left
        for call_id in call_ids:
            await bench.app.conferences.join(call_id, "c1")
        await bench.wait_ended(3)  # the agents left: the conference is the callers' own
        # The calls' own bridges (caller + media channel) go once their agents have left; on a
        # loaded machine Asterisk may still be tearing one down: wait for it, bounded.
        with trio.fail_after(10):
            while len(bridges := asterisk.ari("GET", "/bridges")) > 1:
                await trio.sleep(0.1)
        [bridge] = bridges
        await bench.wait_asterisk_idle(timeout_s=15)
        with trio.fail_after(5):  # each caller's hangup reported (through the job queue)
            while len(left) < 3:
                await trio.sleep(0.05)
    assert sorted(left) == sorted(("c1", call_id) for call_id in call_ids)
    callers = {info.params["asterisk_channel"] for info in bench.hooks.created}
    assert bridge["id"] == "cbc-c1" and set(bridge["channels"]) == callers
    assert {h[2] for h in bench.hooks.hungup} == {"joined conference c1"}
    # The key each caller pressed in the conference: Asterisk's alone now, so ARI reports it,
    # once (the media core no longer hears the caller).
    keys = sorted((e[0], e[2]["digit"]) for e in bench.hooks.events if e[1] == "dtmf_received")
    numbers = sorted((info.call_id, info.callee[-1]) for info in bench.hooks.created)
    assert keys == numbers and not bench.hooks.digits
    for n, own_hz in enumerate(CONFERENCE_HZ, 1):
        heard, _ = read_wav(asterisk.root / f"conf{n}-heard.wav")
        others = [hz for hz in CONFERENCE_HZ if hz != own_hz]
        # Each caller hears the other two tones, mixed, and not its own.
        assert all(tone_level(heard, hz) > 0.2 for hz in others), n
        assert tone_level(heard, own_hz) < 0.05, n


async def test_asterisk_records_the_call_bridge(
    asterisk: Asterisk, echo_agent: str, tmp_path: Path
) -> None:
    record_dir = tmp_path / "recordings"
    async with ari_bench(asterisk, echo_agent, record_dir=str(record_dir)) as bench:
        await bench.originate("talk")
        await bench.wait_ended()
        call_id = bench.hooks.created[0].call_id
        path = record_dir / f"{call_id}.asterisk.wav"
        with trio.fail_after(10):
            while not path.exists():
                await trio.sleep(0.05)
        await bench.wait_asterisk_idle()
        stored = await trio.to_thread.run_sync(asterisk.ari, "GET", "/recordings/stored")
    pcm16, rate_hz = read_wav(path)
    assert rate_hz == 8000
    # The bridge's mix: the caller's 1.5 s of 700 Hz, and the agent's echo of it.
    assert seconds_of(pcm16, 700.0) >= 1.5
    assert stored == [], "Asterisk's copy was not deleted"
