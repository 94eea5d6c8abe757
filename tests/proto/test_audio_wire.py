"""The audio fast path is protobuf's encoding, byte for byte, and decodes as protobuf does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import frames_pb2 as pb
from proto import messages as m
from proto.audio_wire import decode_audio, encode_audio
from proto.codec import LinkDecodeError, decode, encode


def protobuf_bytes(pcm16: bytes, rate_hz: int, channels: int) -> bytes:
    wire = pb.Frame()
    wire.audio.audio = pcm16
    wire.audio.sample_rate = rate_hz
    wire.audio.num_channels = channels
    return wire.SerializeToString()


# Lengths either side of each varint size step (1, 2 and 3 bytes), empty audio, zero fields.
@pytest.mark.parametrize("n_bytes", [0, 2, 126, 128, 320, 640, 16382, 16384, 65536])
@pytest.mark.parametrize("rate_hz", [0, 8000, 16000, 48000, 192000])
@pytest.mark.parametrize("channels", [0, 1, 2, 200])
def test_encoding_is_protobufs(n_bytes: int, rate_hz: int, channels: int) -> None:
    pcm16 = bytes(range(256)) * (n_bytes // 256) + bytes(n_bytes % 256)
    assert encode_audio(pcm16, rate_hz, channels) == protobuf_bytes(pcm16, rate_hz, channels)


@settings(max_examples=300)
@given(
    st.binary(max_size=3000),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_encoding_is_protobufs_for_any_values(pcm16: bytes, rate_hz: int, channels: int) -> None:
    assert encode_audio(pcm16, rate_hz, channels) == protobuf_bytes(pcm16, rate_hz, channels)


def test_codec_uses_it_and_round_trips() -> None:
    frame = m.Audio(b"\x01\x02" * 320, 16000)
    data = encode(frame)
    assert data == protobuf_bytes(frame.pcm16, 16000, 1)
    assert decode_audio(data) == (frame.pcm16, 16000, 1)
    assert decode(data) == frame


def test_frames_of_another_shape_go_to_protobuf() -> None:
    wire = pb.Frame()
    wire.audio.id = 7  # pipecat's serializer fills id and name
    wire.audio.name = "OutputAudioRawFrame#1"
    wire.audio.audio = b"\x00\x01" * 160
    wire.audio.sample_rate = 8000
    data = wire.SerializeToString()
    assert decode_audio(data) is None
    assert decode(data) == m.Audio(b"\x00\x01" * 160, 8000)
    assert decode_audio(encode(m.Text("hi"))) is None


def test_validation_is_the_same_on_both_paths() -> None:
    with pytest.raises(LinkDecodeError, match="whole 16-bit"):
        decode(encode_audio(b"\x00" * 3, 16000, 1))
    with pytest.raises(LinkDecodeError, match="out of range"):
        decode(encode_audio(b"\x00" * 4, 0, 1))


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_decode_as_protobuf_would(data: bytes) -> None:
    """Whatever the fast path accepts, protobuf reads the same way (twice: the second time
    through the shapes it remembered)."""
    decode_audio(data)
    fast = decode_audio(data)
    if fast is None:
        return
    wire = pb.Frame.FromString(data)
    assert wire.WhichOneof("frame") == "audio"
    assert (wire.audio.audio, wire.audio.sample_rate, wire.audio.num_channels) == fast


@settings(max_examples=300)
@given(st.binary(max_size=64), st.integers(1, 192000), st.integers(0, 8), st.binary(max_size=4))
def test_truncated_and_extended_frames(pcm16: bytes, rate_hz: int, ch: int, junk: bytes) -> None:
    data = encode_audio(pcm16, rate_hz, ch)
    for cut in range(len(data)):
        variant = data[:cut]
        fast = decode_audio(variant)
        if fast is not None:
            wire = pb.Frame.FromString(variant)
            assert (wire.audio.audio, wire.audio.sample_rate, wire.audio.num_channels) == fast
    if junk:
        fast = decode_audio(data + junk)
        if fast is not None:
            wire = pb.Frame.FromString(data + junk)
            assert (wire.audio.audio, wire.audio.sample_rate, wire.audio.num_channels) == fast
