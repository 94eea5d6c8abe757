"""A light pipecat transport over the agent link: link frames in, link frames out.

pipecat's output transports pace audio against a clock and resample it; the media core already
does both (and the pacing sleeps are a large part of pipecat's per-call CPU), so here the agent
just sends TTS audio as it is produced and lets the core play it. What an output transport also
does, and the pipeline still needs, is say when the bot starts and stops speaking: we estimate
playout from the audio duration sent (the core plays it back to back in real time), which is
what turn-taking and the assistant context need; barge-in does not depend on it. The same
estimate times the agent's transcripts: an utterance is reported final once its audio has
played (TTS usually finishes seconds earlier), and one cut short by barge-in is reported as far
as the caller heard it (``final=False``, cut at a word), not as everything the agent meant to say.

Frames in: :func:`frame_from_link` maps caller audio and DTMF to pipecat input frames.
Frames out: :class:`LinkOutput` (the pipeline's tail) and :class:`CallerTranscriptTap`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMTextFrame,
    OutputAudioRawFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ai_pipeline.link import LinkClosed
from ai_pipeline.voice_level import VoiceLeveller
from proto.messages import (
    Audio,
    Dtmf,
    FunctionCall,
    Hangup,
    Interruption,
    LinkFrame,
    Transcript,
)

log = logging.getLogger(__name__)

BYTES_PER_SAMPLE = 2
PLAYOUT_MARGIN_SECS = 1.0
"""Slack on the playout estimate (link and core latency) before a barge-in is judged moot."""
HANGUP_FALLBACK_SECS = 15.0
"""If the goodbye never gets spoken (TTS failed, interrupted), hang up anyway after this."""
# Speaking rate assumed for text whose audio has not all been synthesised yet (~150 words a
# minute): used to tell how much of an interrupted utterance the caller heard.
DEFAULT_CHARS_PER_SEC = 14.0


def heard_part(text: str, heard_s: float, spoken_s: float | None) -> str:
    """The words of ``text`` a caller heard in ``heard_s`` seconds of its audio, cut at a word
    boundary. ``spoken_s`` is the audio length of all of ``text`` when known (its speaking rate
    then comes from it), None when the text's audio was still being synthesised."""
    if spoken_s is not None and heard_s >= spoken_s:
        return text
    rate = len(text) / spoken_s if spoken_s else DEFAULT_CHARS_PER_SEC
    budget = max(0.0, heard_s) * rate
    words: list[str] = []
    used = 0
    for word in text.split():
        used += len(word) + (1 if words else 0)
        if used > budget:
            break
        words.append(word)
    return " ".join(words)


@dataclass(frozen=True, slots=True)
class Said:
    """An utterance synthesised in full, waiting for its audio to play at the caller."""

    text: str
    start: float  # on LinkOutput's clock
    end: float


class LinkSender:
    """Serialises sends from the pipeline's tasks onto the one link, and counts what went out."""

    def __init__(self, send: Callable[[LinkFrame], Awaitable[None]]) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self.audio_bytes_sent = 0
        self.frames_sent = 0

    async def __call__(self, frame: LinkFrame) -> None:
        async with self._lock:
            await self._send(frame)
        self.frames_sent += 1
        if isinstance(frame, Audio):
            self.audio_bytes_sent += len(frame.pcm16)


def frame_from_link(frame: LinkFrame) -> Frame | None:
    """Caller audio and DTMF as pipecat input frames; None for frames the pipeline ignores."""
    if isinstance(frame, Audio):
        return InputAudioRawFrame(frame.pcm16, frame.sample_rate_hz, frame.num_channels)
    if isinstance(frame, Dtmf):
        try:
            return InputDTMFFrame(KeypadEntry(frame.digit))
        except ValueError:  # A-D exist on the wire but not on pipecat's keypad
            log.info("ignoring DTMF digit %r (not on pipecat's keypad)", frame.digit)
            return None
    return None


class CallerTranscriptTap(FrameProcessor):
    """Sends what the caller said as ``Transcript(role="caller")``; passes everything on."""

    def __init__(self, send: LinkSender, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._send = send

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame) and frame.text.strip():
            await self._send(Transcript("caller", frame.text.strip(), final=True))
        elif isinstance(frame, InterimTranscriptionFrame) and frame.text.strip():
            await self._send(Transcript("caller", frame.text.strip(), final=False))
        await self.push_frame(frame, direction)


class AgentTextTap(FrameProcessor):
    """Sits before TTS and tells :class:`LinkOutput` what the agent is about to say."""

    def __init__(self, output: LinkOutput, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._output = output

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if (
            isinstance(frame, TTSSpeakFrame | LLMTextFrame)
            and direction == FrameDirection.DOWNSTREAM
        ):
            self._output.note_text_for_tts(frame.text)
        await self.push_frame(frame, direction)


class LinkOutput(FrameProcessor):
    """The pipeline's output: TTS audio, agent transcripts, barge-in and hang-up onto the link."""

    def __init__(
        self, send: LinkSender, *, clock: Callable[[], float] = time.monotonic, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._send = send
        self._clock = clock
        self._playout_end = 0.0
        self._speaking = False
        self._stop_task: asyncio.Task[None] | None = None
        self._agent_text: list[str] = []
        self._pending_text: list[str] = []
        self._audio_since_flush = False
        self._hangup_reason: str | None = None
        self._hangup_tool: FunctionCall | None = None
        self._goodbye_started = False
        self._hangup_task: asyncio.Task[None] | None = None
        self.hung_up = False
        self.interruptions_sent = 0
        self._voice_level_dbfs: float | None = None
        self._utterance_start: float | None = None  # when its first audio starts playing
        self._utterance_audio_s = 0.0
        self._unplayed: deque[Said] = deque()  # reported final once played
        self._heard: list[str] = []  # what the caller heard since the last interruption
        self._heard_when_cut: str | None = None
        self._leveller: VoiceLeveller | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame):
            await self._audio(frame)
            return  # audio ends here: the core plays it
        if isinstance(frame, InterruptionFrame):
            await self._interrupted()
        elif isinstance(frame, TTSStartedFrame):
            self._agent_text.clear()
            self._new_utterance()
            self._audio_since_flush = True
        elif isinstance(frame, TTSTextFrame):
            self._agent_text.append(frame.text)
            if self._hangup_reason is not None:
                self._goodbye_started = True
        elif isinstance(frame, TTSStoppedFrame):
            await self._utterance_synthesised()
            self._pending_text.clear()
            if self._hangup_reason is not None and self._goodbye_started:
                await self._hang_up()
        elif isinstance(frame, EndFrame | CancelFrame):
            await self._stop_tasks()
            with suppress(LinkClosed):  # a caller who hung up took the link with them
                await self._report_heard(self._clock())
        await self.push_frame(frame, direction)

    def set_voice_level(self, dbfs: float | None) -> None:
        """Level the agent's speech to ``dbfs`` (:mod:`ai_pipeline.voice_level`); None: as is."""
        self._voice_level_dbfs = dbfs
        self._leveller = None

    def _levelled(self, frame: OutputAudioRawFrame) -> bytes:
        if self._voice_level_dbfs is None or frame.num_channels != 1:
            return bytes(frame.audio)
        if self._leveller is None or self._leveller.rate_hz != frame.sample_rate:
            self._leveller = VoiceLeveller(frame.sample_rate, self._voice_level_dbfs)
        return self._leveller.process(frame.audio)

    def take_heard(self) -> str | None:
        """What the caller heard of the agent's reply that the last interruption cut short
        (since the interruption before); None if it cut nothing (the agent had finished, or
        this was already asked). :class:`~ai_pipeline.heard_context.HeardContext` asks."""
        heard, self._heard_when_cut = self._heard_when_cut, None
        return heard

    def note_text_for_tts(self, text: str) -> None:
        """Text on its way to TTS (see :class:`AgentTextTap`): reported if barge-in cuts it off.

        pipecat only confirms spoken text (``TTSTextFrame``) after a whole utterance has been
        synthesised, so without this an interrupted utterance would leave no transcript at all.
        """
        self._pending_text.append(text)

    async def hang_up_after_speech(
        self, reason: str, *, speech_expected: bool, tool: FunctionCall | None = None
    ) -> None:
        """Send ``Hangup`` once the next utterance (the goodbye) has gone out to the core.

        ``tool``: the tool call that hangs up (``end_call``), sent to the core just before the
        ``Hangup``, so that it is run and recorded as every tool is (a ``tool_called`` event);
        it hangs up after the goodbye's audio as the ``Hangup`` does, which still ends the call
        if the tool is refused."""
        self._hangup_reason = reason
        self._hangup_tool = tool
        self._goodbye_started = False
        if not speech_expected:
            await self._hang_up()
            return
        self._hangup_task = self.create_task(self._hangup_fallback(), name="hangup-fallback")

    async def _hangup_fallback(self) -> None:
        await asyncio.sleep(HANGUP_FALLBACK_SECS)
        log.warning("goodbye not spoken within %.0f s; hanging up anyway", HANGUP_FALLBACK_SECS)
        await self._hang_up()

    async def _hang_up(self) -> None:
        if self.hung_up:
            return
        self.hung_up = True
        task, self._hangup_task = self._hangup_task, None
        if task is not None and task is not asyncio.current_task():
            await self.cancel_task(task)
        # The core hangs up after the audio queued before this frame has played: all of it
        # will have been heard.
        while self._unplayed:
            await self._send(Transcript("agent", self._unplayed.popleft().text, final=True))
        if self._hangup_tool is not None:
            await self._send(self._hangup_tool)
        await self._send(Hangup(self._hangup_reason or "agent"))

    async def _audio(self, frame: OutputAudioRawFrame) -> None:
        if self.hung_up:
            return
        await self._send(Audio(self._levelled(frame), frame.sample_rate, frame.num_channels))
        self._audio_since_flush = True
        samples = len(frame.audio) // (BYTES_PER_SAMPLE * max(frame.num_channels, 1))
        now = self._clock()
        if self._utterance_start is None:
            self._utterance_start = max(now, self._playout_end)
        self._utterance_audio_s += samples / frame.sample_rate
        self._playout_end = max(now, self._playout_end) + samples / frame.sample_rate
        if not self._speaking:
            self._speaking = True
            await self.broadcast_frame(BotStartedSpeakingFrame)
        if self._stop_task is None:
            self._stop_task = self.create_task(self._stop_when_played(), name="bot-speaking")

    async def _stop_when_played(self) -> None:
        # The end moves later while audio keeps arriving: sleep to it (or to the end of an
        # utterance, to report it as heard), re-read, repeat.
        while True:
            now = self._clock()
            await self._report_played(now)
            if now >= self._playout_end:
                break
            wake = min([self._playout_end, *(said.end for said in self._unplayed)])
            await asyncio.sleep(max(wake - now, 0.001))
        self._stop_task = None
        await self._bot_stopped()

    async def _bot_stopped(self) -> None:
        if self._speaking:
            self._speaking = False
            await self.broadcast_frame(BotStoppedSpeakingFrame)

    async def _interrupted(self) -> None:
        # pipecat interrupts at every user turn start; the core only needs a flush when agent
        # audio may still be queued there, so idle turns do not flood the link with flushes.
        if self._audio_since_flush and self._clock() < self._playout_end + PLAYOUT_MARGIN_SECS:
            self.interruptions_sent += 1
            await self._send(Interruption())
        self._audio_since_flush = False
        cut = await self._report_heard(self._clock())  # utterances synthesised before this one
        cut = cut or bool(self._agent_text or "".join(self._pending_text).strip())
        heard = self._heard_so_far()
        self._agent_text.clear()
        self._pending_text = []
        self._new_utterance()
        if heard:  # final=False: cut short by barge-in, the caller heard only this much
            self._heard.append(heard)
            await self._send(Transcript("agent", heard, final=False))
        self._heard_when_cut = " ".join(self._heard) if cut else None
        self._heard = []
        self._playout_end = self._clock()
        if self._stop_task is not None:
            await self.cancel_task(self._stop_task)
            self._stop_task = None
        await self._bot_stopped()

    async def _utterance_synthesised(self) -> None:
        """TTS is done with this utterance: its transcript is final once its audio has played
        (it usually synthesises well ahead of the caller hearing it; a barge-in in between
        reports only what was heard)."""
        text = " ".join(" ".join(self._agent_text).split())
        start, audio_s = self._utterance_start, self._utterance_audio_s
        self._agent_text.clear()
        self._new_utterance()
        if not text:
            return
        if start is None:  # no audio at all: nothing to wait for
            await self._send(Transcript("agent", text, final=True))
            return
        self._unplayed.append(Said(text, start, start + audio_s))
        if self._stop_task is None:
            self._stop_task = self.create_task(self._stop_when_played(), name="bot-speaking")

    async def _report_played(self, now: float) -> None:
        while self._unplayed and self._unplayed[0].end <= now:
            text = self._unplayed.popleft().text
            self._heard.append(text)
            await self._send(Transcript("agent", text, final=True))

    async def _report_heard(self, now: float) -> bool:
        """Playout stops now (barge-in, end of call): played utterances are final, the one
        playing is reported as far as it was heard (``final=False``), the rest were not heard.
        True if some were not heard in full."""
        await self._report_played(now)
        cut = bool(self._unplayed)
        if self._unplayed and self._unplayed[0].start < now:
            said = self._unplayed[0]
            heard = heard_part(said.text, now - said.start, said.end - said.start)
            if heard:
                self._heard.append(heard)
                await self._send(Transcript("agent", heard, final=False))
        self._unplayed.clear()
        return cut

    def _heard_so_far(self) -> str:
        """What the caller heard of the utterance being interrupted. Text confirmed by the TTS
        (``TTSTextFrame``) has all its audio sent, so its own rate applies; text only noted on its
        way to TTS is still being synthesised, so the usual speaking rate does."""
        if self._agent_text:
            text, spoken_s = " ".join(self._agent_text), self._utterance_audio_s or None
        else:
            text, spoken_s = "".join(self._pending_text), None  # LLM tokens carry their spaces
        start = self._utterance_start
        heard_s = 0.0 if start is None else min(self._clock() - start, self._utterance_audio_s)
        return heard_part(" ".join(text.split()), heard_s, spoken_s)

    def _new_utterance(self) -> None:
        """Forget the playout of the utterance before (its start and audio length)."""
        self._utterance_start, self._utterance_audio_s = None, 0.0

    async def _stop_tasks(self) -> None:
        for task in (self._stop_task, self._hangup_task):
            if task is not None:
                await self.cancel_task(task)
        self._stop_task = None
        self._hangup_task = None
