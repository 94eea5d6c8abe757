"""media.chan_websocket_leg over an in-memory WebSocket, the test playing Asterisk."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from media.chan_websocket import ChanWebsocketError, MediaStart, media_start_text
from media.chan_websocket_leg import ChanWebsocketLeg
from media.codecs.g711 import alaw_to_pcm16, pcm16_to_alaw, pcm16_to_ulaw, ulaw_to_pcm16
from media.hooks import LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegHangup, LegMarkPlayed
from media.message_socket import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    MemoryMessageSocket,
    memory_socket_pair,
)
from media.metrics import MediaMetrics

SLIN16_FRAME = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: 20 ms of slin16
PCM8K_FRAME = b"".join(i.to_bytes(2, "little", signed=True) for i in range(-8000, 8000, 100))


def start_for(fmt: str) -> MediaStart:
    size = {"slin16": 640, "ulaw": 160, "alaw": 160, "slin": 320}[fmt]
    return MediaStart("media1", "WebSocket/media1/0x5600", "1764062400.7", fmt, size, 20)


async def open_leg(
    fmt: str = "slin16", control: str = "plain-text", capacity: float = 64, **kwargs: object
) -> tuple[ChanWebsocketLeg, MemoryMessageSocket]:
    ours, asterisk = memory_socket_pair(capacity)
    await asterisk.send(media_start_text(start_for(fmt), control))  # type: ignore[arg-type]
    leg = await ChanWebsocketLeg.accept(ours, **kwargs)  # type: ignore[arg-type]
    return leg, asterisk


async def drain(socket: MemoryMessageSocket, count: int) -> list[str | bytes]:
    return [await socket.receive() for _ in range(count)]


async def closed_code(socket: MemoryMessageSocket) -> int:
    return (await socket.until_closed())[1]


async def test_media_start_sets_rate_and_media_flows_both_ways() -> None:
    leg, asterisk = await open_leg("slin16")
    assert leg.kind == "chan_websocket" and leg.rate_hz == 16000 and leg.self_paced
    assert leg.start.channel_id == "1764062400.7"
    await asterisk.send(SLIN16_FRAME)
    assert await leg.receive() == LegAudio(SLIN16_FRAME)
    await leg.send_audio(SLIN16_FRAME)
    assert await asterisk.receive() == SLIN16_FRAME


@pytest.mark.parametrize(
    ("fmt", "encode", "decode"),
    [("ulaw", pcm16_to_ulaw, ulaw_to_pcm16), ("alaw", pcm16_to_alaw, alaw_to_pcm16)],
)
async def test_g711_channels_are_converted(fmt: str, encode: object, decode: object) -> None:
    leg, asterisk = await open_leg(fmt)
    assert leg.rate_hz == 8000
    wire = encode(PCM8K_FRAME)  # type: ignore[operator]
    await asterisk.send(wire)
    assert await leg.receive() == LegAudio(decode(wire))  # type: ignore[operator]
    await leg.send_audio(PCM8K_FRAME)
    assert await asterisk.receive() == wire


@pytest.mark.parametrize("control", ["plain-text", "json"])
async def test_dtmf_marks_and_commands_in_the_channels_format(control: str) -> None:
    leg, asterisk = await open_leg(control=control)
    if control == "json":
        await asterisk.send('{"event":"DTMF_END","channel_id":"1764062400.7","digit":"#"}')
        await asterisk.send(
            '{"event":"MEDIA_MARK_PROCESSED","channel_id":"1764062400.7","correlation_id":"turn-1"}'
        )
    else:
        await asterisk.send("DTMF_END digit:# channel_id:1764062400.7")
        await asterisk.send("MEDIA_MARK_PROCESSED turn-1")
    await leg.send_mark("turn-1")
    assert await leg.receive() == LegDtmf("#")
    assert await leg.receive() == LegMarkPlayed("turn-1")
    await leg.clear()
    mark, flush = await drain(asterisk, 2)
    if control == "json":
        assert json.loads(mark) == {"command": "MARK_MEDIA", "correlation_id": "turn-1"}
        assert json.loads(flush) == {"command": "FLUSH_MEDIA"}
    else:
        assert (mark, flush) == ("MARK_MEDIA turn-1", "FLUSH_MEDIA")


async def test_xoff_holds_audio_and_marks_until_xon_in_order() -> None:
    leg, asterisk = await open_leg()
    await asterisk.send("MEDIA_XOFF")
    await asterisk.send(SLIN16_FRAME)
    assert isinstance(await leg.receive(), LegAudio)  # the XOFF was read on the way
    assert leg.xoff
    await leg.send_audio(b"\x01\x00" * 320)
    await leg.send_mark("m1")
    await leg.send_audio(b"\x02\x00" * 320)
    await asterisk.send("QUEUE_DRAINED")
    await asterisk.send("MEDIA_XON")
    await asterisk.send(SLIN16_FRAME)
    assert isinstance(await leg.receive(), LegAudio)
    assert not leg.xoff
    assert await drain(asterisk, 3) == [b"\x01\x00" * 320, "MARK_MEDIA m1", b"\x02\x00" * 320]
    await leg.send_audio(b"\x03\x00" * 320)  # flowing again: straight out
    assert await asterisk.receive() == b"\x03\x00" * 320
    assert leg.dropped_ms == 0


async def test_xoff_queue_is_bounded_and_drops_the_oldest_counted() -> None:
    metrics = MediaMetrics()
    leg, asterisk = await open_leg(xoff_queue_ms=100, metrics=metrics)
    await asterisk.send("MEDIA_XOFF")
    await asterisk.send(SLIN16_FRAME)
    await leg.receive()
    frames = [bytes([n, 0]) * 320 for n in range(10)]  # 10 x 20 ms
    await leg.send_mark("kept")
    for frame in frames:
        await leg.send_audio(frame)
    assert leg.dropped_ms == pytest.approx(100.0)
    drops = metrics.registry.get_sample_value(
        "callbridge_audio_dropped_ms_total", {"where": "chan_websocket_xoff"}
    )
    assert drops == pytest.approx(100.0)
    await asterisk.send("MEDIA_XON")
    await asterisk.send(SLIN16_FRAME)
    await leg.receive()
    assert await drain(asterisk, 6) == ["MARK_MEDIA kept", *frames[5:]]


async def test_barge_in_flushes_and_reports_flushed_marks_as_played() -> None:
    leg, asterisk = await open_leg()
    await leg.send_audio(SLIN16_FRAME)
    await leg.send_mark("sent-1")
    await asterisk.send("MEDIA_XOFF")
    await asterisk.send(SLIN16_FRAME)
    await leg.receive()
    await leg.send_audio(SLIN16_FRAME)
    await leg.send_mark("held-1")
    await leg.clear()
    assert await drain(asterisk, 3) == [SLIN16_FRAME, "MARK_MEDIA sent-1", "FLUSH_MEDIA"]
    # Asterisk dropped its queued mark with the media: the leg reports both as played.
    assert await leg.receive() == LegMarkPlayed("sent-1")
    assert await leg.receive() == LegMarkPlayed("held-1")
    await asterisk.send("MEDIA_XON")
    await asterisk.send(SLIN16_FRAME)
    assert await leg.receive() == LegAudio(SLIN16_FRAME)
    await leg.send_audio(b"\x05\x00" * 320)
    assert await asterisk.receive() == b"\x05\x00" * 320  # nothing held survived the flush


async def test_asterisk_errors_status_and_unknown_notices_are_skipped() -> None:
    leg, asterisk = await open_leg()
    await asterisk.send("ERROR channel_id:1764062400.7 error_text:FLUSH_MEDIA not supported")
    await asterisk.send(
        "STATUS channel_id:1 queue_length:0 xon_level:800 xoff_level:900 "
        "queue_full:false bulk_media:false media_paused:false"
    )
    await asterisk.send("MEDIA_SOMETHING_NEW")
    await asterisk.send(SLIN16_FRAME)
    assert await leg.receive() == LegAudio(SLIN16_FRAME)
    assert leg.asterisk_errors == 1


async def test_hangup_sends_hangup_then_closes_normally() -> None:
    leg, asterisk = await open_leg()
    await leg.hangup("agent ended the call")
    assert await asterisk.receive() == "HANGUP"
    assert await closed_code(asterisk) == CLOSE_NORMAL
    await leg.hangup("again")  # never raises
    with pytest.raises(LegError):
        await leg.receive()


async def test_send_dtmf_is_not_possible() -> None:
    leg, _ = await open_leg()
    with pytest.raises(LegCannotDo):
        await leg.send_dtmf("1")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\x00" * 641, "bad_payload_size"),
        ("DTMF_END digit:xx", "bad_field"),
        (media_start_text(start_for("slin16")), "duplicate_start"),
    ],
)
async def test_protocol_error_mid_call_closes_with_1008(message: str | bytes, reason: str) -> None:
    leg, asterisk = await open_leg()
    await asterisk.send(message)
    with pytest.raises(ChanWebsocketError) as info:
        await leg.receive()
    assert info.value.reason == reason
    await leg.hangup(reason)
    assert await asterisk.receive() == "HANGUP"
    assert await closed_code(asterisk) == CLOSE_POLICY_VIOLATION


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"\x00" * 640, "before_start"),
        ("MEDIA_XON", "before_start"),
        (
            "MEDIA_START connection_id:c channel:c channel_id:1 format:opus optimal_frame_size:0",
            "unsupported_format",
        ),
    ],
)
async def test_bad_handshake_is_refused_and_closed(first: str | bytes, reason: str) -> None:
    ours, asterisk = memory_socket_pair(8)
    await asterisk.send(first)
    with pytest.raises(ChanWebsocketError) as info:
        await ChanWebsocketLeg.accept(ours)
    assert info.value.reason == reason
    assert await closed_code(asterisk) == CLOSE_POLICY_VIOLATION


async def test_no_media_start_in_time(autojump_clock: object) -> None:
    ours, asterisk = memory_socket_pair(8)
    with pytest.raises(LegError) as info:
        await ChanWebsocketLeg.accept(ours, start_timeout_s=2.0)
    assert info.value.reason == "start_timeout"
    assert await closed_code(asterisk) == CLOSE_POLICY_VIOLATION


async def test_silence_from_asterisk_times_out(autojump_clock: object) -> None:
    leg, _ = await open_leg(idle_timeout_s=3.0)
    with pytest.raises(LegError) as info:
        await leg.receive()
    assert info.value.reason == "idle_timeout"


async def test_asterisk_not_reading_fails_the_send(autojump_clock: object) -> None:
    leg, _ = await open_leg(capacity=2, send_timeout_s=1.0)
    with pytest.raises(LegError) as info:
        for _ in range(5):
            await leg.send_audio(SLIN16_FRAME)
    assert info.value.reason == "send_timeout"


async def test_asterisk_closing_is_a_hangup() -> None:
    leg, asterisk = await open_leg()
    await asterisk.close(CLOSE_NORMAL)
    event = await leg.receive()
    assert isinstance(event, LegHangup) and "closed" in event.reason


async def test_short_tail_frames_are_padded_so_asterisk_plays_them() -> None:
    leg, asterisk = await open_leg("ulaw")
    await leg.send_audio(PCM8K_FRAME[:100])  # 50 samples: Asterisk would drop a short message
    assert await asterisk.receive() == pcm16_to_ulaw(PCM8K_FRAME[:100]) + b"\xff" * 110


async def test_drain_waits_for_asterisk_to_process_the_mark(autojump_clock: object) -> None:
    leg, asterisk = await open_leg(idle_timeout_s=60)
    events: list[object] = []

    async def reader() -> None:
        while not isinstance(event := await leg.receive(), LegHangup):
            events.append(event)

    async def asterisk_side() -> None:
        audio, mark = await drain(asterisk, 2)
        assert audio == SLIN16_FRAME and isinstance(mark, str)
        await trio.sleep(1.5)
        await asterisk.send(mark.replace("MARK_MEDIA", "MEDIA_MARK_PROCESSED"))
        await asterisk.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(asterisk_side)
        await leg.send_audio(SLIN16_FRAME)
        start = trio.current_time()
        assert await leg.drain(10.0) is True
        assert trio.current_time() - start == pytest.approx(1.5)
    assert events == []  # the leg's own mark is not the agent's


async def test_barge_in_during_drain_ends_it_at_once() -> None:
    leg, asterisk = await open_leg()
    async with trio.open_nursery() as nursery:

        async def barge_in() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await leg.clear()

        nursery.start_soon(barge_in)
        assert await leg.drain(10.0) is True
    assert await drain(asterisk, 2) == ["MARK_MEDIA callbridge-drain-1", "FLUSH_MEDIA"]
