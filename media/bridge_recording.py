"""A bridge's mix recorded to a mono 16 kHz WAV, streamed to disk like a call's recording.

Each tick's whole mix (everyone who is heard, before each listener's N-1) is collected and handed
every :data:`media.recording_leg.FLUSH_EVERY_S` to a :class:`media.recording_leg.WavWriter`
thread, which appends it and rewrites the header: the file is a valid WAV throughout, and the
Trio loop never waits for the disk (a stalled disk drops audio, counted by the writer).
"""

from __future__ import annotations

from pathlib import Path

import trio

from media.bridge import Bridge
from media.mixer import MIX_RATE_HZ
from media.recording_leg import FLUSH_EVERY_S, WavWriter


def mix_path(record_dir: str | Path, bridge_id: str) -> Path:
    return Path(record_dir) / f"bridge-{bridge_id}.wav"


async def record_bridge(bridge: Bridge, path: Path) -> None:
    """Record ``bridge`` into ``path`` until it ends (or this task is cancelled)."""
    file = await trio.to_thread.run_sync(path.open, "wb")
    writer = WavWriter(file, MIX_RATE_HZ, FLUSH_EVERY_S, channels=1)
    pending = bytearray()
    next_flush = trio.current_time() + FLUSH_EVERY_S

    def add(pcm16: bytes) -> None:
        nonlocal next_flush
        pending.extend(pcm16)
        now = trio.current_time()
        if now >= next_flush:
            writer.write(bytes(pending))
            pending.clear()
            next_flush = now + FLUSH_EVERY_S

    bridge.core.on_mix = add
    try:
        await bridge.ended.wait()
    finally:
        bridge.core.on_mix = None
        if pending:
            writer.write(bytes(pending))
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(writer.close)
