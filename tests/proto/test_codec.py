"""Agent-link frames: every kind round-trips; malformed frames raise LinkDecodeError only."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import frames_pb2 as pb
from proto import messages as m
from proto.codec import MAX_LINK_FRAME_BYTES, LinkDecodeError, decode, encode

FRAMES: list[m.LinkFrame] = [
    m.Audio(b"\x01\x02" * 320, 16000),
    m.Text("say this"),
    m.Transcription("hello", "caller-1", "2026-11-25T09:00:00Z"),
    m.Message({"type": "x", "n": [1, 2]}),
    m.Interruption(),
    m.CallStart(
        "c1",
        "a1",
        {"prompt": "p", "tools": ["end_call"]},
        16000,
        1,
        "audiosocket",
        "+15550001",
        "+15550002",
        "cust",
    ),
    m.Dtmf("#", 120),
    m.FunctionCall("t1", "transfer_call", {"department": "sales"}),
    m.FunctionCallResult("t1", "transfer_call", {"ok": True}, False),
    m.FunctionCallResult("t2", "x", "timed out", True),
    m.Hangup("bye"),
    m.Mark("m-7"),
    m.Transcript("agent", "Hi there", True),
    m.Error("bad_config", "unknown engine", True),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_round_trip(frame: m.LinkFrame) -> None:
    assert decode(encode(frame)) == frame


def test_unknown_frame_kind_is_skipped_not_an_error() -> None:
    assert decode(b"") is None  # an empty Frame: a newer peer's kind we do not know
    assert decode(b"\xfa\x07\x00") is None  # field 127, length 0: unknown to this version


def wire(**kwargs: object) -> bytes:
    return pb.Frame(**kwargs).SerializeToString()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\xff\xff\xff", "not a Frame"),
        (wire(audio=pb.AudioRawFrame(audio=b"\x01", sample_rate=16000)), "whole 16-bit"),
        (wire(audio=pb.AudioRawFrame(audio=b"\x01\x02", sample_rate=0)), "sample_rate"),
        (wire(call_start=pb.CallStartFrame(call_id="")), "without call_id"),
        (wire(call_start=pb.CallStartFrame(call_id="c", agent_config="[1]")), "JSON object"),
        (wire(call_start=pb.CallStartFrame(call_id="c", agent_config="{")), "not JSON"),
        (wire(dtmf=pb.DTMFFrame(digit="x")), "dtmf digit"),
        (wire(dtmf=pb.DTMFFrame(digit="12")), "dtmf digit"),
        (wire(function_call=pb.FunctionCallFrame(function_name="")), "function_name"),
        (wire(function_call=pb.FunctionCallFrame(function_name="f", arguments="1")), "JSON object"),
        (wire(transcript=pb.TranscriptFrame(role="robot")), "role"),
        (wire(message=pb.MessageFrame(data="{nope")), "not JSON"),
        (bytes(MAX_LINK_FRAME_BYTES + 1), "exceeds"),
    ],
)
def test_malformed_frames(data: bytes, fragment: str) -> None:
    with pytest.raises(LinkDecodeError, match=fragment):
        decode(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_link_decode_errors(data: bytes) -> None:
    with contextlib.suppress(LinkDecodeError):
        decode(data)
