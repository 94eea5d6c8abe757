"""Call recording: a two-channel WAV that keeps caller and agent aligned in time."""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import threading
import time
import wave
from pathlib import Path

import numpy as np
import psutil
import pytest
import trio

from ai_pipeline.link import AgentLink, LinkClosed
from media.recording import AGENT, CALLER, StereoRecorder, wav_header
from media.recording_leg import MAX_BACKLOG_S, WavWriter
from proto.messages import Audio, CallStart, Hangup
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import agent_in_thread, best_snr_db, echo_agent, start_media, tone
from tests.test_serve import start_serve, wait_http

__all__ = ["echo_agent"]  # the fixture, used by name below

RATE = 8000
FRAME = 160  # samples in 20 ms at 8 kHz
RATE16 = 16000
FRAME16 = 320
SLIN16 = 0x12  # AudioSocket's kind for slin at 16 kHz (current numbering)


def frames(pcm16: bytes, size: int = FRAME * 2) -> list[bytes]:
    return [pcm16[i : i + size] for i in range(0, len(pcm16), size)]


def split(stereo: bytes) -> tuple[np.ndarray, np.ndarray]:
    both = np.frombuffer(stereo, dtype="<i2")
    return both[0::2], both[1::2]


def chirp(f0: float, f1: float, seconds: float, level: float = 0.3, rate_hz: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (level * 32767 * np.sin(phase)).astype("<i2").tobytes()


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


async def _recorded(caplog: pytest.LogCaptureFixture, tmp_path: Path, call_id: str) -> Path:
    """The call's WAV once its recording is finished (the "call recorded" log record)."""
    with trio.fail_after(10):
        while not any(
            r.getMessage() == "call recorded" and getattr(r, "call_id", "") == call_id
            for r in caplog.records
        ):
            await trio.sleep(0.02)
    return tmp_path / f"{call_id}.wav"


async def test_an_echo_call_is_recorded_on_two_channels(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="media.recording_leg")
    media = await start_media(nursery, echo_agent, record_dir=str(tmp_path))
    src = chirp(300, 3000, 1.0)  # no period, so the echo's delay is unambiguous
    peer = await AsteriskPeer.connect(media.port)
    async with trio.open_nursery() as inner:
        inner.start_soon(peer.read_until_closed)
        await peer.play(src)
        await trio.sleep(0.5)
        await peer.close()
    path = await _recorded(caplog, tmp_path, media.hooks.created[0].call_id)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, RATE)
        left, right = split(w.readframes(w.getnframes()))
    assert best_snr_db(src, left.tobytes())[0] > 60  # what the caller sent, untouched
    snr, delay = best_snr_db(src, right.tobytes(), max_delay=4000)
    assert snr > 30, snr  # the echo, as the caller heard it
    assert 20 * RATE // 1000 <= delay <= RATE // 2, delay  # after what was said, not before
    assert 1.0 <= len(left) / RATE <= 3.0


AGENT_TONE_HZ = 1000
AGENT_TONE16 = tone(AGENT_TONE_HZ, 1.0, rate_hz=RATE16, level=0.5)


async def tone_agent(start: CallStart, link: AgentLink) -> None:
    """Says a second of :data:`AGENT_TONE_HZ` (on the link's 16 kHz) once the caller is heard:
    agent audio not derived from the caller's, so a wrong rate on the way out cannot cancel a
    wrong rate on the way in as it does for an echo."""
    said = False
    with contextlib.suppress(LinkClosed):
        while not isinstance(frame := await link.recv(), Hangup):
            if isinstance(frame, Audio) and not said:
                said = True
                await link.send(Audio(AGENT_TONE16, RATE16))


def tone_seconds_and_hz(pcm16: bytes, rate_hz: int) -> tuple[float, float]:
    """How long a tone sounds in ``pcm16`` (10 ms blocks that carry it) and its frequency;
    pacing gaps move neither."""
    block = rate_hz // 100
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    blocks = samples[: len(samples) // block * block].reshape(-1, block)
    loud = blocks[np.sqrt(np.mean(blocks**2, axis=1)) > 3000].ravel()
    if not loud.size:
        return 0.0, 0.0
    spectrum = np.abs(np.fft.rfft(loud * np.hanning(loud.size)))
    return loud.size / rate_hz, float(np.argmax(spectrum)) * rate_hz / loud.size


async def test_a_slin16_call_is_recorded_and_heard_at_16_khz(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """AudioSocket says slin16 only with the caller's first frame: the recording wrapper must
    follow the leg there, or the caller hears the agent at the wrong speed and pitch, and the
    WAV says 8 kHz."""
    caplog.set_level(logging.INFO, logger="media.recording_leg")
    src = chirp(300, 6000, 2.0, rate_hz=RATE16)
    with agent_in_thread(tone_agent) as agent_url:
        media = await start_media(nursery, agent_url, record_dir=str(tmp_path))
        peer = await AsteriskPeer.connect(media.port)
        async with trio.open_nursery() as inner:
            inner.start_soon(peer.read_until_closed)
            await peer.play(src, kind=SLIN16, frame_bytes=FRAME16 * 2)
            await peer.close()
        path = await _recorded(caplog, tmp_path, media.hooks.created[0].call_id)
    assert {f.kind for f in peer.audio_frames()} == {SLIN16}
    heard_s, heard_hz = tone_seconds_and_hz(peer.audio(), RATE16)
    assert abs(heard_hz - AGENT_TONE_HZ) < 20 and 0.9 < heard_s < 1.1, (heard_s, heard_hz)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, RATE16)
        left, right = split(w.readframes(w.getnframes()))
    assert best_snr_db(src, left.tobytes(), max_delay=8000)[0] > 60  # the caller, untouched
    recorded_s, recorded_hz = tone_seconds_and_hz(right.tobytes(), RATE16)
    assert abs(recorded_hz - AGENT_TONE_HZ) < 20 and 0.9 < recorded_s < 1.1
    assert 1.5 <= len(left) / RATE16 <= 3.0


def wav_seconds(path: Path) -> float:
    """The duration a WAV's header declares; ``wave`` refuses a file that is not a valid WAV."""
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
        return w.getnframes() / w.getframerate()


async def test_the_file_is_a_growing_valid_wav_during_the_call(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    media = await start_media(nursery, echo_agent, record_dir=str(tmp_path))
    peer = await AsteriskPeer.connect(media.port)
    seen: list[tuple[float, float]] = []  # (seconds of the call, seconds in the file)
    async with trio.open_nursery() as inner:
        inner.start_soon(peer.read_until_closed)
        inner.start_soon(peer.play, tone(440, 4.0))
        with trio.fail_after(5):
            while not media.hooks.created:
                await trio.sleep(0.01)
        path = tmp_path / f"{media.hooks.created[0].call_id}.wav"
        start = trio.current_time()
        for _ in range(12):
            await trio.sleep(0.3)
            seen.append((trio.current_time() - start, wav_seconds(path)))
        await peer.close()
    durations = [d for _, d in seen]
    assert durations == sorted(durations) and durations[-1] > durations[0], seen
    # At least every second the audio before the recorder's hold reaches the file.
    assert all(d >= t - 1.0 - 0.2 - 0.3 for t, d in seen[3:]), seen


@pytest.mark.slow
async def test_a_node_killed_mid_call_leaves_a_valid_wav_short_of_at_most_a_second(
    tmp_path: Path,
) -> None:
    record_dir = tmp_path / "recordings"
    proc, ports = start_serve(tmp_path, "--agent", "echo", "--record-dir", str(record_dir))
    try:
        await wait_http(ports["http"])
        agent = psutil.Process(proc.pid).children()
        peer = await AsteriskPeer.connect(ports["audiosocket"])
        async with trio.open_nursery() as inner:
            inner.start_soon(peer.read_until_closed)
            inner.start_soon(peer.play, tone(440, 10.0))
            with trio.fail_after(10):  # the echo coming back: the call is up
                while not peer.audio_frames():
                    await trio.sleep(0.01)
            started = trio.current_time()
            await trio.sleep(3.0)
            proc.send_signal(signal.SIGKILL)
            lasted_s = trio.current_time() - started
            proc.wait(5)
            inner.cancel_scope.cancel()
    finally:
        for process in (proc, *agent):
            with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                process.kill()
        proc.wait(5)
    (path,) = record_dir.glob("*.wav")
    seconds = wav_seconds(path)  # a valid WAV, its header current
    assert seconds >= lasted_s - 1.0, (seconds, lasted_s)
    with wave.open(str(path)) as w:
        left, _ = split(w.readframes(w.getnframes()))
    assert len(left) / RATE == seconds and np.abs(left[-RATE // 2 :]).max() > 5000  # the tone


def test_a_stalled_disk_drops_counted_audio_and_never_blocks_the_caller(tmp_path: Path) -> None:
    release = threading.Event()

    class StalledFile(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            release.wait(10)
            return super().write(data)

    writer = WavWriter(StalledFile(), RATE, flush_every_s=0.5)
    chunk = bytes(4 * RATE // 2)  # half a second of stereo
    started = time.monotonic()
    for _ in range(40):  # 20 s of audio against a queue of MAX_BACKLOG_S
        writer.write(chunk)
    assert time.monotonic() - started < 0.5  # the caller's task never waited for the disk
    assert 0 < writer.dropped_bytes <= 40 * len(chunk) - MAX_BACKLOG_S * 4 * RATE
    release.set()
    writer.close()
