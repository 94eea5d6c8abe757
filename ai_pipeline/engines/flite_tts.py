"""Offline text-to-speech with CMU Flite: the permissively licensed fallback to piper.

piper-tts and espeak-ng are GPL-3.0; Flite (Debian package ``flite``, BSD-style licence) is not.
It sounds older, but our Whisper STT understands it (``tests/ai_pipeline/test_flite_tts.py``).
Its 16 kHz voices (``slt``, ``kal16``, ``awb``, ``rms``) produce the link's rate directly.

Flite runs as a subprocess per utterance (~0.1 s for a sentence): no Python binding is packaged,
and a process keeps a crash in the synthesiser away from the agent. The text goes in a file, not
on the command line, so no utterance can be mistaken for an option.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import wave
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

FLITE_VOICES = frozenset({"slt", "kal16", "awb", "rms", "kal"})
SYNTH_TIMEOUT_SECS = 20.0


class FliteError(RuntimeError):
    """flite is missing, failed, or produced something that is not mono PCM16."""


def flite_binary() -> str | None:
    return shutil.which("flite")


def synthesize_wav(text: str, voice: str, binary: str = "flite") -> tuple[bytes, int]:
    """Blocking: PCM16 mono and its rate for ``text``."""
    if voice not in FLITE_VOICES:
        raise FliteError(f"unknown flite voice {voice!r}; known: {', '.join(sorted(FLITE_VOICES))}")
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        text_path, wav_path = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        text_path.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [binary, "-voice", voice, "-f", str(text_path), "-o", str(wav_path)],
            capture_output=True,
            timeout=SYNTH_TIMEOUT_SECS,
            check=False,
        )
        if done.returncode != 0 or not wav_path.exists():
            raise FliteError(f"flite exited {done.returncode}: {done.stderr[-200:]!r}")
        with wave.open(str(wav_path), "rb") as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise FliteError("flite wrote something other than mono PCM16")
            return wav.readframes(wav.getnframes()), wav.getframerate()


class FliteTTSService(TTSService):
    """pipecat TTS over the ``flite`` command."""

    def __init__(self, *, voice: str = "slt", binary: str = "flite", **kwargs: Any) -> None:
        if voice not in FLITE_VOICES:
            raise FliteError(f"unknown flite voice {voice!r}")
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=voice, language=None),
            **kwargs,
        )
        self._voice = voice
        self._binary = binary

    def can_generate_metrics(self) -> bool:
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        try:
            await self.start_tts_usage_metrics(text)
            pcm16, rate_hz = await asyncio.to_thread(
                synthesize_wav, text, self._voice, self._binary
            )

            async def one_chunk() -> AsyncIterator[bytes]:
                yield pcm16

            async for frame in self._stream_audio_frames_from_iterator(
                one_chunk(), in_sample_rate=rate_hz, context_id=context_id
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except (FliteError, OSError, subprocess.TimeoutExpired) as exc:
            yield ErrorFrame(error=f"flite failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
