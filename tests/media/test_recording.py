"""Call recording: a two-channel WAV that keeps caller and agent aligned in time."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import trio

from media.recording import AGENT, CALLER, StereoRecorder, wav_header
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import best_snr_db, echo_agent, start_media, tone

__all__ = ["echo_agent"]  # the fixture, used by name below

RATE = 8000
FRAME = 160  # samples in 20 ms at 8 kHz


def frames(pcm16: bytes, size: int = FRAME * 2) -> list[bytes]:
    return [pcm16[i : i + size] for i in range(0, len(pcm16), size)]


def split(stereo: bytes) -> tuple[np.ndarray, np.ndarray]:
    both = np.frombuffer(stereo, dtype="<i2")
    return both[0::2], both[1::2]


def chirp(f0: float, f1: float, seconds: float, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (level * 32767 * np.sin(phase)).astype("<i2").tobytes()


def header_data_bytes(wav: bytes) -> int:
    return int.from_bytes(wav[40:44], "little") if len(wav) >= 44 else 0


def nonzero_span(channel: np.ndarray) -> tuple[int, int]:
    idx = np.flatnonzero(channel)
    return int(idx[0]), int(idx[-1]) + 1


def test_header_reads_back_with_the_stdlib(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    data = bytes(range(256)) * 4
    path.write_bytes(wav_header(16000, 2, len(data)) + data)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        assert w.getnframes() == len(data) // 4
        assert w.readframes(w.getnframes()) == data


def test_agent_audio_lands_where_it_was_played_between_silences() -> None:
    rec = StereoRecorder(RATE, start_s=100.0)
    caller = tone(300, 3.0)
    agent = tone(1000, 0.5, level=0.5)
    out = bytearray()
    for i, frame in enumerate(frames(caller)):
        now = 100.0 + (i + 1) * 0.02
        rec.add(CALLER, frame, now)
        if 1.0 < now - 100.0 <= 1.5:  # the agent spoke from 1.0 s to 1.5 s, paced
            k = round((now - 101.0) / 0.02) - 1
            rec.add(AGENT, agent[k * FRAME * 2 : (k + 1) * FRAME * 2], now)
        out += rec.take(now)
    out += rec.finish()
    left, right = split(bytes(out))
    assert left.tobytes() == caller  # the caller's channel is exactly what was sent
    start, end = nonzero_span(right)
    assert abs(start - RATE) <= FRAME and abs(end - int(1.5 * RATE)) <= FRAME
    assert right[start:end].tobytes() in agent


def test_barge_in_drops_agent_audio_the_leg_had_not_played() -> None:
    rec = StereoRecorder(RATE, start_s=0.0)
    rec.add(CALLER, tone(300, 1.0), 1.0)
    rec.add(AGENT, tone(1000, 2.0, level=0.5), 1.0)  # a self-paced leg takes 2 s at once
    rec.add(CALLER, tone(300, 0.5), 1.5)
    rec.clear_agent(1.5)  # barge-in after half a second of it played
    rec.add(CALLER, tone(300, 1.0), 2.5)
    left, right = split(rec.finish())
    assert len(left) == int(2.5 * RATE)
    start, end = nonzero_span(right)
    assert abs(start - RATE) <= FRAME and abs(end - int(1.5 * RATE)) <= FRAME


def test_take_keeps_only_the_hold_window_in_memory() -> None:
    rec = StereoRecorder(RATE, start_s=0.0, hold_s=0.2)
    written = 0
    for i, frame in enumerate(frames(tone(440, 10.0))):
        now = (i + 1) * 0.02
        rec.add(CALLER, frame, now)
        written += len(rec.take(now))
    assert written == 4 * int((10.0 - 0.2) * RATE)  # stereo, 2 bytes a sample
    assert len(rec.finish()) == 4 * int(0.2 * RATE)


def test_a_silent_agent_is_recorded_as_silence_of_the_right_length() -> None:
    rec = StereoRecorder(RATE, start_s=0.0)
    for i, frame in enumerate(frames(tone(440, 2.0))):
        rec.add(CALLER, frame, (i + 1) * 0.02)
    left, right = split(rec.finish())
    assert len(left) == len(right) == 2 * RATE
    assert not right.any()


async def test_an_echo_call_is_recorded_on_two_channels(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    media = await start_media(nursery, echo_agent, record_dir=str(tmp_path))
    src = chirp(300, 3000, 1.0)  # no period, so the echo's delay is unambiguous
    peer = await AsteriskPeer.connect(media.port)
    async with trio.open_nursery() as inner:
        inner.start_soon(peer.read_until_closed)
        await peer.play(src)
        await trio.sleep(0.5)
        await peer.close()
    with trio.fail_after(10):
        await media.hooks.ended.wait()
    path = tmp_path / f"{media.hooks.created[0].call_id}.wav"
    with trio.fail_after(10):  # the header is filled in once the call has wound down
        while not path.exists() or header_data_bytes(path.read_bytes()) == 0:
            await trio.sleep(0.05)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, RATE)
        left, right = split(w.readframes(w.getnframes()))
    assert best_snr_db(src, left.tobytes())[0] > 60  # what the caller sent, untouched
    snr, delay = best_snr_db(src, right.tobytes(), max_delay=4000)
    assert snr > 30, snr  # the echo, as the caller heard it
    assert 20 * RATE // 1000 <= delay <= RATE // 2, delay  # after what was said, not before
    assert 1.0 <= len(left) / RATE <= 3.0
