"""Whisper over the utterance's own frames, not a 30 s window (whisper.cpp's ``audio_ctx`` idea).

faster-whisper pads every input to 3000 mel frames (30 s), and the encoder's cost follows the
frames, not the speech. CTranslate2's ``Whisper.encode`` takes shorter features as they are, so
this module encodes the utterance plus :attr:`WindowOptions.padding_ms` of zero features (the
value faster-whisper pads with) and decodes greedily from that: the same words on the speech
fixtures at a fraction of the CPU (``callbridge bench stt-window``; ``bench/RESULTS.md``).

A short window invites Whisper to loop: with no silence after the speech to mark the end it
starts over ("I have a question about my bill. I have a question about..."), and it does so on
noisy speech even with padding. Three guards, each measured on the fixtures:

- zero-feature padding after the speech (padding the *audio* with silence looped more often);
- a cap on generated tokens in proportion to the audio's length (phone speech is ~3-4 tokens
  per second; the cap allows about twice that) and ``no_repeat_ngram_size=3``;
- :func:`trim_restart`: the text is cut where a word pair it already said comes again, or where
  a last sentence starts to say the opening again, which is how every loop seen began (the cap
  alone still let "... please. Transfer me" and "... Goodbye. That" through).

Whisper's own judgement of the audio is kept: a high no-speech probability drops the text (the
VAD let noise through), and a middling one or a low token log-probability marks it unsure, so
the agent asks the caller to repeat rather than act on a guess.

Blocking and CPU-bound: call it from a worker thread. No pipecat, no asyncio here.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel  # type: ignore[import-untyped]

PCM16_FULL_SCALE = 32768.0
WHISPER_RATE_HZ = 16000
MEL_FRAME_MS = 10
MAX_WINDOW_FRAMES = 3000
"""Whisper's encoder positions cover 30 s; longer audio is cut to its last 30 s."""

NO_SPEECH_DROP = 0.6
"""Above this no-speech probability the text is dropped. Measured on the short window: silence
0.97, white noise 0.91-0.93, the speech fixtures <= 0.23 down to 0 dB SNR and <= 0.54 at -5 dB.
(Whisper's own rule also needs a low log-probability, but on a short window noise decodes to
confident text, "I don't know." at -0.25, so the no-speech probability decides alone.)"""
NO_SPEECH_UNSURE = 0.3
"""Between this and :data:`NO_SPEECH_DROP` the words are kept but marked unsure (the -5 dB SNR
fixtures, which Whisper got wrong, scored 0.37-0.54)."""
MIN_AVG_LOGPROB = -0.5
"""Below this average token log-probability the words are unsure (the clean fixtures at 16 and
8 kHz: -0.07 to -0.41; at 10 dB SNR down to -0.38; most wrong words at 0 dB fell below it)."""

_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True, slots=True)
class WindowOptions:
    """How the short window is built and bounded."""

    padding_ms: int = 500
    tokens_per_s: float = 6.0
    extra_tokens: int = 5
    no_repeat_ngram_size: int = 3
    trim_restarts: bool = True


UNBOUNDED = WindowOptions(
    padding_ms=0, tokens_per_s=200.0, no_repeat_ngram_size=0, trim_restarts=False
)
"""No guard at all: what the short window does left to itself (tests show it loops)."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """What Whisper heard in one utterance, and how sure it was."""

    text: str
    no_speech_prob: float
    avg_logprob: float

    @property
    def is_speech(self) -> bool:
        return bool(self.text) and self.no_speech_prob <= NO_SPEECH_DROP

    @property
    def confident(self) -> bool:
        return (
            self.is_speech
            and self.no_speech_prob <= NO_SPEECH_UNSURE
            and self.avg_logprob >= MIN_AVG_LOGPROB
        )


def trim_restart(text: str) -> str:
    """``text`` cut where Whisper starts over: before the first word pair that it repeats
    ("Transfer me to sales. Transfer me" loses its second "Transfer me"), or before a last
    sentence that only begins the opening again ("That's all. Goodbye. That")."""
    spans = [(m.start(), m.group().lower()) for m in _WORD.finditer(text)]
    seen: set[tuple[str, str]] = set()
    for (start, word), (_, following) in itertools.pairwise(spans):
        if (word, following) in seen:
            return _clean_end(text[:start])
        seen.add((word, following))
    last = max(text.rfind(c) for c in ".?!")
    tail = [w for s, w in spans if s > last]
    if last > 0 and tail and len(tail) < len(spans):
        opening = [w for _, w in spans[: len(tail)]]
        if tail[:-1] == opening[:-1] and opening[-1].startswith(tail[-1]):
            return _clean_end(text[: last + 1])
    return text


def _clean_end(text: str) -> str:
    return text.rstrip(" ,;-")


class ShortWindowWhisper:
    """Greedy Whisper decoding over the utterance's frames; one per process, thread-safe."""

    def __init__(self, model: WhisperModel, language: str = "en") -> None:
        from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
        from faster_whisper.transcribe import get_suppressed_tokens  # type: ignore[import-untyped]

        self._model = model
        self._tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=language if model.model.is_multilingual else "en",
        )
        self._prompt: list[int] = model.get_prompt(self._tokenizer, [], without_timestamps=True)
        # Whisper's default: no blank start, none of the non-speech symbols ("♪", "[", ...).
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))

    def features(self, pcm16: bytes, padding_ms: int) -> np.ndarray:
        """Log-mel features of the audio followed by ``padding_ms`` of zero frames."""
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / PCM16_FULL_SCALE
        mel = self._model.feature_extractor(audio)[..., :-1]  # the last frame is STFT padding
        mel = mel[:, -(MAX_WINDOW_FRAMES - padding_ms // MEL_FRAME_MS) :]
        frames = mel.shape[-1] + padding_ms // MEL_FRAME_MS
        frames += frames % 2  # the encoder's stride-2 convolution halves the frames
        window = np.zeros((mel.shape[0], frames), dtype=np.float32)
        window[:, : mel.shape[-1]] = mel
        return window

    def transcribe(self, pcm16: bytes, options: WindowOptions = WindowOptions()) -> Transcript:
        """Blocking: 16 kHz PCM16 mono in, what Whisper heard out (text possibly empty)."""
        import ctranslate2  # type: ignore[import-untyped]

        if len(pcm16) < 2 * WHISPER_RATE_HZ * MEL_FRAME_MS // 1000:
            return Transcript("", 1.0, 0.0)
        window = self.features(pcm16, options.padding_ms)
        encoded = self._model.model.encode(
            ctranslate2.StorageView.from_array(window[np.newaxis]), to_cpu=False
        )
        seconds = len(pcm16) / 2 / WHISPER_RATE_HZ
        new_tokens = int(seconds * options.tokens_per_s) + options.extra_tokens
        max_length = min(len(self._prompt) + new_tokens, self._model.max_length)
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            max_length=max_length,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens: list[int] = result.sequences_ids[0]
        # CTranslate2 scores are the sum of log-probabilities (length_penalty 1 normalises by
        # length); Whisper's average counts the end-of-text token too.
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        text = self._tokenizer.decode(tokens).strip()
        if options.trim_restarts:
            text = trim_restart(text)
        return Transcript(text, float(result.no_speech_prob), avg_logprob)
