"""Record a call to ``<record_dir>/<call_id>.wav`` by wrapping its leg: the thin Trio layer over
:class:`media.recording.StereoRecorder`.

The wrapper sees exactly what the caller sent and what was handed to the caller, whatever the leg
kind, so the call session needs no recording code. It follows the leg's rate: AudioSocket learns
slin16 from the caller's first frame, and the recording (and what the caller hears) follows.

The file is a valid WAV from the first byte to the last: audio that can no longer change is
handed, at least every :data:`FLUSH_EVERY_S`, to the call's writer thread, which appends it,
rewrites the header's sizes and flushes to the OS. A node killed mid-call leaves a WAV missing at
most that interval plus the recorder's hold (about 0.7 s); the OS page cache survives the
process, and no fsync is asked for (a power cut may lose more). The Trio loop never waits for the
disk: a writer that falls :data:`MAX_BACKLOG_S` behind drops audio, counted, instead of growing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import trio

from media.leg import Leg, LegAudio, LegEvent
from media.recording import AGENT, CALLER, SAMPLE_BYTES, StereoRecorder, wav_header

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.5
"""How often final audio goes to disk with an updated header: what a crash can lose, plus the
recorder's 0.2 s hold. Twice a second costs a thread wake-up per call; the docs promise a second."""
MAX_BACKLOG_S = 10.0
"""Audio waiting for a stalled disk before the writer drops it (bounded memory per call)."""
CHANNELS = 2


class WavWriter:
    """One call's WAV file, written by its own thread from a bounded queue of audio chunks.

    Every chunk is appended, then the header is rewritten with the sizes (and the rate) so far,
    then the file is flushed: a reader, or a node killed at any point, sees a valid WAV.
    """

    def __init__(
        self, file: IO[bytes], rate_hz: int, flush_every_s: float, channels: int = CHANNELS
    ) -> None:
        self._file = file
        self.rate_hz = rate_hz
        self.channels = channels  # (a bridge's mix is one channel: media/bridge_recording.py)
        self.data_bytes = 0
        self.dropped_bytes = 0
        self.failed: OSError | None = None
        max_chunks = max(2, int(MAX_BACKLOG_S / flush_every_s))
        self._chunks: queue.Queue[bytes | None] = queue.Queue(max_chunks)
        self._thread = threading.Thread(target=self._run, name="wav-writer", daemon=True)
        self._thread.start()

    def write(self, pcm16: bytes) -> None:
        """Queue interleaved stereo for the thread; never blocks (a full queue drops it)."""
        try:
            self._chunks.put_nowait(pcm16)
        except queue.Full:
            self.dropped_bytes += len(pcm16)

    def close(self) -> None:
        """Blocking: the last chunk written, the thread done, the file closed (in a thread)."""
        self._chunks.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            while (chunk := self._chunks.get()) is not None:
                if self.failed is None:
                    self._append(chunk)
        finally:
            self._file.close()

    def _append(self, chunk: bytes) -> None:
        try:
            self._file.seek(0, 2)
            self._file.write(chunk)
            self.data_bytes += len(chunk)
            self._file.seek(0)
            self._file.write(wav_header(self.rate_hz, self.channels, self.data_bytes))
            self._file.flush()
        except OSError as exc:  # a full disk: stop writing, the call goes on
            self.failed = exc
            log.error("recording write failed: %s", exc)


class RecordingLeg:
    """A :class:`media.leg.Leg` that tees both directions of audio into a recorder."""

    def __init__(
        self,
        inner: Leg,
        recorder: StereoRecorder,
        writer: WavWriter,
        flush_every_s: float = FLUSH_EVERY_S,
    ) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.self_paced = inner.self_paced
        self._recorder = recorder
        self._writer = writer
        self._flush_every_s = flush_every_s
        self._next_flush = trio.current_time() + flush_every_s

    @property
    def rate_hz(self) -> int:
        """The inner leg's rate as it is now (AudioSocket learns it from the first frame)."""
        return self.inner.rate_hz

    @rate_hz.setter
    def rate_hz(self, rate_hz: int) -> None:  # the Leg protocol's attribute is settable
        self.inner.rate_hz = rate_hz

    async def receive(self) -> LegEvent:
        event = await self.inner.receive()
        if isinstance(event, LegAudio):
            self._follow_rate()
            self._recorder.add(CALLER, event.pcm16, trio.current_time())
            self._flush_if_due()
        return event

    async def send_audio(self, pcm16: bytes) -> None:
        self._follow_rate()
        self._recorder.add(AGENT, pcm16, trio.current_time())
        self._flush_if_due()
        await self.inner.send_audio(pcm16)

    async def clear(self) -> None:
        self._recorder.clear_agent(trio.current_time())
        await self.inner.clear()

    async def send_mark(self, name: str) -> None:
        await self.inner.send_mark(name)

    async def send_dtmf(self, digits: str) -> None:
        await self.inner.send_dtmf(digits)

    async def hangup(self, reason: str) -> None:
        await self.inner.hangup(reason)

    def __getattr__(self, name: str) -> Any:
        """Anything else a leg kind offers (transfer, drain...) is the inner leg's."""
        return getattr(self.inner, name)

    def _follow_rate(self) -> None:
        rate_hz = self.inner.rate_hz
        if rate_hz == self._recorder.rate_hz:
            return
        if self._recorder.released:  # legs settle their rate with the first audio; not after
            log.error(
                "leg rate changed mid-recording: %d -> %d Hz", self._recorder.rate_hz, rate_hz
            )
            return
        self._recorder.retune(rate_hz)
        self._writer.rate_hz = rate_hz

    def _flush_if_due(self) -> None:
        now = trio.current_time()
        if now >= self._next_flush:
            self._next_flush = now + self._flush_every_s
            if chunk := self._recorder.take(now):
                self._writer.write(chunk)

    @property
    def dropped_ms(self) -> float:
        """Audio a stalled disk made the writer drop."""
        frame_bytes = CHANNELS * SAMPLE_BYTES
        return self._writer.dropped_bytes / frame_bytes * 1000 / self._recorder.rate_hz

    async def finish(self) -> None:
        """Hand over what is left and wait for the writer: the file is complete and closed."""
        if chunk := self._recorder.finish():
            self._writer.write(chunk)
        await trio.to_thread.run_sync(self._writer.close, abandon_on_cancel=True)
        if self._writer.dropped_bytes:
            log.warning("recording dropped %.0f ms: the disk fell behind", self.dropped_ms)


def _open_wav(path: Path, rate_hz: int) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("wb")
    file.write(wav_header(rate_hz, CHANNELS, 0))
    file.flush()
    return file


@asynccontextmanager
async def recording(leg: Leg, call_id: str, record_dir: str | None) -> AsyncIterator[Leg]:
    """Yield ``leg`` itself when ``record_dir`` is None, else a :class:`RecordingLeg` whose file is
    finished (last audio written, writer closed) when the call ends, even by cancellation."""
    if record_dir is None:
        yield leg
        return
    path = Path(record_dir) / f"{call_id}.wav"
    file = await trio.to_thread.run_sync(_open_wav, path, leg.rate_hz)
    recorded = RecordingLeg(
        leg, StereoRecorder(leg.rate_hz), WavWriter(file, leg.rate_hz, FLUSH_EVERY_S)
    )
    try:
        yield recorded
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await recorded.finish()
        log.info("call recorded", extra={"call_id": call_id, "path": str(path)})
