"""Record a call to ``<record_dir>/<call_id>.wav`` by wrapping its leg: the thin Trio layer over
:class:`media.recording.StereoRecorder`.

The wrapper sees exactly what the caller sent and what was handed to the caller, whatever the leg
kind, so the call session needs no recording code. File writes go through a worker thread, about
once a second per call, so a slow disk never stalls the Trio loop; memory stays at about a second
of audio (plus agent audio a self-paced leg holds ahead of time).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import trio

from media.leg import Leg, LegAudio, LegEvent
from media.recording import AGENT, CALLER, WAV_HEADER_BYTES, StereoRecorder, wav_header

log = logging.getLogger(__name__)

WRITE_EVERY_BYTES = 64 * 1024


class RecordingLeg:
    """A :class:`media.leg.Leg` that tees both directions of audio into a recorder."""

    def __init__(self, inner: Leg, recorder: StereoRecorder, file: IO[bytes]) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.rate_hz = inner.rate_hz
        self.self_paced = inner.self_paced
        self._recorder = recorder
        self._file = file
        self._ready = bytearray()
        self.data_bytes = 0

    async def receive(self) -> LegEvent:
        event = await self.inner.receive()
        if isinstance(event, LegAudio):
            self._recorder.add(CALLER, event.pcm16, trio.current_time())
            await self._write_if_due()
        return event

    async def send_audio(self, pcm16: bytes) -> None:
        self._recorder.add(AGENT, pcm16, trio.current_time())
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

    async def _write_if_due(self) -> None:
        self._ready += self._recorder.take(trio.current_time())
        if len(self._ready) >= WRITE_EVERY_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        data, self._ready = bytes(self._ready), bytearray()
        await trio.to_thread.run_sync(self._file.write, data)
        self.data_bytes += len(data)

    async def finish(self) -> None:
        """Write what is left and the final header; the file stays a valid WAV throughout."""
        self._ready += self._recorder.finish()
        await self._flush()
        header = wav_header(self._recorder.rate_hz, 2, self.data_bytes)
        await trio.to_thread.run_sync(_rewrite_header, self._file, header)


def _rewrite_header(file: IO[bytes], header: bytes) -> None:
    file.seek(0)
    file.write(header)
    file.close()


def _open_wav(path: Path, rate_hz: int) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("wb")
    file.write(wav_header(rate_hz, 2, 0))
    assert file.tell() == WAV_HEADER_BYTES
    return file


@asynccontextmanager
async def recording(leg: Leg, call_id: str, record_dir: str | None) -> AsyncIterator[Leg]:
    """Yield ``leg`` itself when ``record_dir`` is None, else a :class:`RecordingLeg` whose file is
    finished (header sizes filled in) when the call ends, even when it ends by cancellation."""
    if record_dir is None:
        yield leg
        return
    path = Path(record_dir) / f"{call_id}.wav"
    file = await trio.to_thread.run_sync(_open_wav, path, leg.rate_hz)
    recorded = RecordingLeg(leg, StereoRecorder(leg.rate_hz), file)
    try:
        yield recorded
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await recorded.finish()
            except OSError:
                log.exception("recording %s could not be finished", path)
        log.info("call recorded", extra={"call_id": call_id, "path": str(path)})
