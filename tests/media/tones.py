"""Tones for the bridge, conference and transfer tests: measuring one in what a caller heard, and
an agent that answers whatever it hears with a 600 Hz tone (so a caller can tell it apart)."""

from __future__ import annotations

import numpy as np

from ai_pipeline.link import AgentLink
from proto.messages import Audio, CallStart, Hangup

AGENT_HZ = 600.0


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


async def tone_agent(start: CallStart, link: AgentLink) -> None:
    """Answers every frame with sound in it with as much of a continuous 600 Hz tone."""
    phase = 0
    while True:
        frame = await link.recv()
        if isinstance(frame, Audio) and np.abs(np.frombuffer(frame.pcm16, "<i2")).max() > 500:
            n = len(frame.pcm16) // 2
            t = (phase + np.arange(n)) / frame.sample_rate_hz
            phase += n
            pcm = (0.3 * 32767 * np.sin(2 * np.pi * AGENT_HZ * t)).astype("<i2").tobytes()
            await link.send(Audio(pcm, frame.sample_rate_hz))
        elif isinstance(frame, Hangup):
            return
