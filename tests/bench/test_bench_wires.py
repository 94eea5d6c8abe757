"""The callers' wires on input whose answer is known: AudioSocket split reads, other kinds,
hangup and EOF; Twilio's handshake, media, marks and bad replies against a sans-I/O app. (The
Twilio wire also runs against pipecat's own serializer in test_bench_runs.py.)"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
import trio
import trio.testing
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from bench.wires import AudioSocketWire, TwilioWire, WireClosed
from media.audiosocket import Kind, encode_frame


async def test_frames_split_across_reads_are_reassembled() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    wire = AudioSocketWire(ours)
    data = encode_frame(Kind.SLIN, b"\x01\x02" * 160) + encode_frame(Kind.SLIN, b"\x03\x04" * 160)
    await theirs.send_all(data[:5])
    await theirs.send_all(data[5:400])
    first = await wire.receive_audio()
    assert first == [b"\x01\x02" * 160]
    await theirs.send_all(data[400:])
    assert await wire.receive_audio() == [b"\x03\x04" * 160]


async def test_non_audio_kinds_are_skipped_and_hangup_ends() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    wire = AudioSocketWire(ours)
    await theirs.send_all(encode_frame(Kind.ERROR, b"\x01") + encode_frame(Kind.SLIN, b"\x00\x00"))
    assert await wire.receive_audio() == [b"\x00\x00"]
    await theirs.send_all(encode_frame(Kind.HANGUP))
    with pytest.raises(WireClosed, match="hangup"):
        await wire.receive_audio()


async def test_eof_mid_frame_ends_the_call() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    wire = AudioSocketWire(ours)
    await theirs.send_all(encode_frame(Kind.SLIN, b"\x00" * 320)[:100])
    await theirs.aclose()
    with pytest.raises(WireClosed, match="eof"):
        await wire.receive_audio()


async def test_what_the_caller_sends_is_audiosocket() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    wire = AudioSocketWire(ours)
    await wire.send_audio(b"\x05\x00" * 160)
    await wire.send_dtmf("7")
    await wire.hang_up()
    expected = (
        encode_frame(Kind.SLIN, b"\x05\x00" * 160)
        + encode_frame(Kind.DTMF, b"7")
        + encode_frame(Kind.HANGUP)
    )
    received = b""
    while len(received) < len(expected):
        received += await theirs.receive_some()
    assert received == expected


class FakeApp:
    """The application's side of one Media Streams WebSocket, over ``websockets``' sans-I/O
    server protocol: accepts (or rejects) the handshake, records texts, sends what it is told."""

    def __init__(self, stream: trio.abc.Stream, accept: bool = True) -> None:
        self.stream = stream
        self.ws = ServerProtocol()
        self.accept = accept
        self.texts: list[dict[str, Any]] = []

    async def flush(self) -> None:
        data = b"".join(self.ws.data_to_send())
        if data:
            await self.stream.send_all(data)

    async def run(self, until_texts: int) -> None:
        while len(self.texts) < until_texts:
            data = await self.stream.receive_some()
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events_received():
                if isinstance(event, Request):
                    if self.accept:
                        self.ws.send_response(self.ws.accept(event))
                    else:
                        self.ws.send_response(self.ws.reject(403, "no\n"))
                elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                    self.texts.append(json.loads(bytes(event.data)))
            await self.flush()
            if not self.accept:
                await self.stream.aclose()
                return

    async def send(self, message: dict[str, Any]) -> None:
        self.ws.send_text(json.dumps(message).encode())
        await self.flush()


CALL_UUID = "12345678-1234-5678-1234-567812345678"


async def _open_twilio(accept: bool = True) -> tuple[TwilioWire, FakeApp]:
    ours, theirs = trio.testing.memory_stream_pair()
    app = FakeApp(theirs, accept)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run, 2)
        wire = await TwilioWire.handshake(ours, "ws://127.0.0.1:1/ws", CALL_UUID)
    return wire, app


async def test_twilio_handshake_then_connected_and_start() -> None:
    _, app = await _open_twilio()
    assert [t["event"] for t in app.texts] == ["connected", "start"]
    assert app.texts[1]["start"]["streamSid"] == "MZ" + uuid.UUID(CALL_UUID).hex
    assert app.texts[1]["start"]["mediaFormat"]["encoding"] == "audio/x-mulaw"


async def test_twilio_media_is_decoded_and_marks_skipped() -> None:
    wire, app = await _open_twilio()
    sid = app.texts[1]["start"]["streamSid"]
    await app.send({"event": "mark", "streamSid": sid, "mark": {"name": "m1"}})
    await app.send({"event": "clear", "streamSid": sid})
    payload = base64.b64encode(b"\xff" * 160).decode()  # mu-law 0xff is silence
    await app.send({"event": "media", "streamSid": sid, "media": {"payload": payload}})
    frames: list[bytes] = []
    while not frames:
        frames = await wire.receive_audio()
    assert frames == [bytes(320)]


async def test_twilio_reply_for_another_stream_is_a_call_error() -> None:
    wire, app = await _open_twilio()
    payload = base64.b64encode(b"\xff" * 160).decode()
    await app.send({"event": "media", "streamSid": "MZother", "media": {"payload": payload}})
    with pytest.raises(WireClosed, match="protocol"):
        await wire.receive_audio()


async def test_twilio_unknown_event_is_a_call_error() -> None:
    wire, app = await _open_twilio()
    await app.send({"event": "dance", "streamSid": app.texts[1]["start"]["streamSid"]})
    with pytest.raises(WireClosed, match="protocol"):
        await wire.receive_audio()


async def test_twilio_rejected_handshake() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    app = FakeApp(theirs, accept=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run, 2)
        with pytest.raises(WireClosed, match="403"):
            await TwilioWire.handshake(ours, "ws://127.0.0.1:1/ws", CALL_UUID)


async def test_twilio_caller_sends_while_its_reader_answers_a_ping() -> None:
    """The caller's sender and its reader (answering the app's ping with a pong) write to one
    stream: one at a time, never two writes at once (a load run once failed on
    ``BusyResourceError`` there), and both messages arrive. A lockstep stream: a write waits
    until the app reads, so the pong's write is still under way when the audio's starts."""
    ours, theirs = trio.testing.lockstep_stream_pair()
    app = FakeApp(theirs)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run, 2)
        wire = await TwilioWire.handshake(ours, "ws://127.0.0.1:1/ws", CALL_UUID)
    async with trio.open_nursery() as nursery:
        app.ws.send_ping(b"are you there")
        nursery.start_soon(app.flush)
        nursery.start_soon(wire.receive_audio)  # reads the ping, writes the pong: it waits
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wire.send_audio, b"\x00\x00" * 160)
        await trio.testing.wait_all_tasks_blocked()
        await app.run(until_texts=3)
        nursery.cancel_scope.cancel()
    assert app.texts[2]["event"] == "media"
