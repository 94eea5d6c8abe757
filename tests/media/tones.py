"""Tones for the bridge, conference and transfer tests: measuring one in what a caller heard, and
an agent that answers whatever it hears with a 600 Hz tone (so a caller can tell it apart) and
"says" any text it is given (a transfer's announcement, ``say``) as 0.8 s of 750 Hz."""

from __future__ import annotations

import asyncio

import numpy as np

from ai_pipeline.link import AgentLink
from proto.messages import Audio, CallStart, Hangup, Text

AGENT_HZ = 600.0
SAID_HZ = 750.0
SAID_S = 0.8


def tone_db(pcm16: bytes, freq_hz: float, rate_hz: int = 8000) -> float:
    """Level of ``freq_hz`` in ``pcm16``, dB relative to a full-scale sine (Hann window, the
    strongest bin within 15 Hz); -200 for too little audio to tell."""
    x = np.frombuffer(pcm16, "<i2").astype(float)
    if x.size < 400:
        return -200.0
    window = np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x * window)) * 2 / window.sum()
    near = np.abs(np.fft.rfftfreq(x.size, 1 / rate_hz) - freq_hz) <= 15
    return float(20 * np.log10(spectrum[near].max() / 32767 + 1e-12))


def sine_pcm16(freq_hz: float, samples: int, rate_hz: int, first: int = 0) -> bytes:
    t = (first + np.arange(samples)) / rate_hz
    return (0.3 * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


async def tone_agent(
    start: CallStart,
    link: AgentLink,
    answer_hz: float = AGENT_HZ,
    heard: list[bytes] | None = None,
    says_after_s: float = 0.0,
) -> None:
    """Answers every frame with sound in it with as much of a continuous ``answer_hz`` tone;
    a text, in one burst as TTS would send it, ``says_after_s`` later (a slow TTS), as
    :data:`SAID_S` of :data:`SAID_HZ`. Keeps what it hears in ``heard``, if given."""
    phase = 0
    while True:
        frame = await link.recv()
        if isinstance(frame, Audio) and heard is not None:
            heard.append(frame.pcm16)  # list.append: safe from the agent's thread
        if isinstance(frame, Audio) and np.abs(np.frombuffer(frame.pcm16, "<i2")).max() > 500:
            n = len(frame.pcm16) // 2
            pcm = sine_pcm16(answer_hz, n, frame.sample_rate_hz, phase)
            phase += n
            await link.send(Audio(pcm, frame.sample_rate_hz))
        elif isinstance(frame, Text):
            await asyncio.sleep(says_after_s)
            rate_hz = start.sample_rate_hz
            said = sine_pcm16(SAID_HZ, int(SAID_S * rate_hz), rate_hz)
            frame_bytes = 2 * rate_hz // 50  # 20 ms
            for i in range(0, len(said), frame_bytes):
                await link.send(Audio(said[i : i + frame_bytes], rate_hz))
        elif isinstance(frame, Hangup):
            return
