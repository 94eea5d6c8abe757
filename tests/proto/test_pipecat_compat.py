"""Wire compatibility with pipecat's own ProtobufFrameSerializer (a peer nobody here wrote):
a stock pipecat bot can be the agent for audio and text."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputTransportMessageFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipecat.serializers.protobuf import ProtobufFrameSerializer

from proto import messages as m
from proto.codec import decode, encode


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_pipecat_frames_decode_with_ours() -> None:
    ser = ProtobufFrameSerializer()
    audio = OutputAudioRawFrame(audio=b"\x05\x00" * 320, sample_rate=16000, num_channels=1)
    assert decode(run(ser.serialize(audio))) == m.Audio(b"\x05\x00" * 320, 16000, 1)
    assert decode(run(ser.serialize(TextFrame(text="hello")))) == m.Text("hello")
    tr = TranscriptionFrame(text="transfer me", user_id="u1", timestamp="t0")
    assert decode(run(ser.serialize(tr))) == m.Transcription("transfer me", "u1", "t0")
    assert decode(run(ser.serialize(InterruptionFrame()))) == m.Interruption()
    msg = OutputTransportMessageFrame(message={"event": "x"})
    assert decode(run(ser.serialize(msg))) == m.Message({"event": "x"})


def test_our_frames_decode_with_pipecat() -> None:
    ser = ProtobufFrameSerializer()
    audio = run(ser.deserialize(encode(m.Audio(b"\x07\x00" * 320, 16000))))
    assert isinstance(audio, InputAudioRawFrame)
    assert audio.audio == b"\x07\x00" * 320 and audio.sample_rate == 16000
    text = run(ser.deserialize(encode(m.Text("say this"))))
    assert isinstance(text, TextFrame) and text.text == "say this"
    assert isinstance(run(ser.deserialize(encode(m.Interruption()))), InterruptionFrame)
    message = run(ser.deserialize(encode(m.Message({"a": 1}))))
    assert isinstance(message, InputTransportMessageFrame) and message.message == {"a": 1}


def test_pipecat_ignores_our_additions() -> None:
    """A stock bot gets None (logged, skipped) for frames it does not know, never a crash."""
    ser = ProtobufFrameSerializer()
    for frame in (m.CallStart("c1"), m.Dtmf("1"), m.Hangup("x"), m.Mark("m")):
        assert run(ser.deserialize(encode(frame))) is None
