"""Compatibility with a Twilio client nobody here wrote: pipecat's ``TwilioFrameSerializer``.

pipecat's serializer plays the application's role against Twilio. So (1) what our application
side sends must deserialise with it exactly as Twilio's own messages do, (2) what it emits must
parse with our Twilio side, and (3) Twilio messages built by our peer must mean to it what they
mean to us. The serializer is asyncio code: these tests drive it with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from typing import Any

import pipecat.frames.frames as pipecat_frames

from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.twilio import Clear, Dtmf, Media, OutboundMark, OutboundMedia, TwilioPeer, TwilioStream
from tests.media.pipecat_twilio import pipecat_twilio_serializer

SID = "MZ0123456789abcdef0123456789abcdef"


def tone_pcm16(samples: int, freq_hz: float = 440.0, rate_hz: int = 8000) -> bytes:
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq_hz * n / rate_hz)))
        for n in range(samples)
    )


async def _serializer(rate_hz: int = 8000) -> Any:
    return await pipecat_twilio_serializer(SID, rate_hz)


def _stream() -> tuple[TwilioStream, TwilioPeer]:
    stream, peer = TwilioStream(), TwilioPeer(SID)
    stream.receive(peer.connected())
    stream.receive(peer.start({"agent": "echo"}))
    return stream, peer


def test_our_media_deserialises_with_pipecat_to_the_same_audio() -> None:
    stream, _ = _stream()
    ulaw = pcm16_to_ulaw(tone_pcm16(160 * 5))

    async def run() -> list[Any]:
        serializer = await _serializer()
        return [
            await serializer.deserialize(stream.media(ulaw[i : i + 160]))
            for i in range(0, len(ulaw), 160)
        ]

    frames = asyncio.run(run())
    assert all(isinstance(f, pipecat_frames.InputAudioRawFrame) for f in frames)
    assert all(f.sample_rate == 8000 and f.num_channels == 1 for f in frames)
    assert b"".join(f.audio for f in frames) == ulaw_to_pcm16(ulaw)


def test_our_media_deserialises_with_pipecat_resampling_to_16k() -> None:
    stream, _ = _stream()
    ulaw = pcm16_to_ulaw(tone_pcm16(8000))  # one second

    async def run() -> bytes:
        serializer = await _serializer(16000)
        out = b""
        for i in range(0, len(ulaw), 160):
            frame = await serializer.deserialize(stream.media(ulaw[i : i + 160]))
            out += frame.audio if frame is not None else b""
        return out

    pcm16_16k = asyncio.run(run())
    # A streaming resampler holds back a little; one second in gives nearly 16000 samples out.
    assert 15000 <= len(pcm16_16k) // 2 <= 16000


def test_pipecats_media_clear_and_mark_parse_with_our_twilio_side() -> None:
    _, peer = _stream()
    pcm16 = tone_pcm16(320)

    async def run() -> list[str]:
        serializer = await _serializer()
        return [
            await serializer.serialize(
                pipecat_frames.OutputAudioRawFrame(audio=pcm16, sample_rate=8000, num_channels=1)
            ),
            await serializer.serialize(pipecat_frames.InterruptionFrame()),
            await serializer.serialize(
                pipecat_frames.OutputTransportMessageFrame(
                    message={"event": "mark", "streamSid": SID, "mark": {"name": "turn-1"}}
                )
            ),
        ]

    media, clear, mark = asyncio.run(run())
    assert peer.parse(media) == OutboundMedia(pcm16_to_ulaw(pcm16))
    assert peer.parse(clear) == Clear()
    assert peer.parse(mark) == OutboundMark("turn-1")


def test_pipecats_media_parses_as_what_we_would_have_sent() -> None:
    stream, _ = _stream()
    pcm16 = tone_pcm16(160)

    async def run() -> str:
        serializer = await _serializer()
        frame = pipecat_frames.OutputAudioRawFrame(audio=pcm16, sample_rate=8000, num_channels=1)
        return str(await serializer.serialize(frame))

    theirs = json.loads(asyncio.run(run()))
    ours = json.loads(stream.media(pcm16_to_ulaw(pcm16)))
    assert theirs == ours


def test_our_twilio_messages_mean_the_same_to_pipecat() -> None:
    stream, peer = _stream()
    ulaw = pcm16_to_ulaw(tone_pcm16(160))
    media_text, dtmf_text = peer.media(ulaw), peer.dtmf("7")

    async def run() -> list[Any]:
        serializer = await _serializer()
        return [await serializer.deserialize(media_text), await serializer.deserialize(dtmf_text)]

    audio, dtmf = asyncio.run(run())
    ours_media, ours_dtmf = stream.receive(media_text), stream.receive(dtmf_text)
    assert isinstance(ours_media, Media) and isinstance(ours_dtmf, Dtmf)
    assert audio.audio == ulaw_to_pcm16(ours_media.ulaw)
    assert isinstance(dtmf, pipecat_frames.InputDTMFFrame)
    assert dtmf.button.value == ours_dtmf.digit == "7"
