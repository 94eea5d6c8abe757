"""media.twilio_leg over an in-memory WebSocket, with our Twilio side as the peer."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.hooks import LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegHangup, LegMarkPlayed
from media.message_socket import (
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    MemoryMessageSocket,
    memory_socket_pair,
)
from media.twilio import Clear, OutboundMark, OutboundMedia, TwilioPeer, TwilioProtocolError
from media.twilio_leg import TwilioLeg

SID = "MZ11112222333344445555666677778888"
ULAW = pcm16_to_ulaw(
    b"".join(i.to_bytes(2, "little", signed=True) for i in range(-8000, 8000, 100))
)


async def open_leg(
    capacity: float = 64, **kwargs: Any
) -> tuple[TwilioLeg, TwilioPeer, MemoryMessageSocket]:
    ours, theirs = memory_socket_pair(capacity)
    peer = TwilioPeer(SID)
    await theirs.send(peer.connected())
    await theirs.send(peer.start({"agent": "sales"}))
    leg = await TwilioLeg.accept(ours, **kwargs)
    return leg, peer, theirs


async def closed_code(socket: MemoryMessageSocket) -> int:
    return (await socket.until_closed())[1]


async def test_accept_reads_start_and_custom_parameters() -> None:
    leg, _, _ = await open_leg()
    assert leg.kind == "twilio" and leg.rate_hz == 8000 and leg.self_paced
    assert leg.start.stream_sid == SID
    assert leg.start.custom_parameters == {"agent": "sales"}


async def test_caller_events_become_leg_events() -> None:
    leg, peer, theirs = await open_leg()
    await theirs.send(peer.media(ULAW))
    await theirs.send(peer.dtmf("5"))
    await theirs.send(peer.mark("turn-1"))
    await theirs.send(peer.stop())
    assert await leg.receive() == LegAudio(ulaw_to_pcm16(ULAW))
    assert await leg.receive() == LegDtmf("5")
    assert await leg.receive() == LegMarkPlayed("turn-1")
    hangup = await leg.receive()
    assert isinstance(hangup, LegHangup) and "stop" in hangup.reason
    assert leg.sequence_gaps == 0


async def test_outbound_track_audio_is_not_the_callers() -> None:
    leg, peer, theirs = await open_leg()
    outbound = peer.media(b"\x00" * 160).replace('"track":"inbound"', '"track":"outbound"')
    await theirs.send(outbound)
    await theirs.send(peer.media(ULAW))
    assert await leg.receive() == LegAudio(ulaw_to_pcm16(ULAW))


async def test_agent_audio_marks_and_clear_reach_twilio() -> None:
    leg, peer, theirs = await open_leg()
    pcm16 = ulaw_to_pcm16(ULAW)
    await leg.send_audio(pcm16)
    await leg.send_audio(b"")  # nothing to send: nothing sent
    await leg.send_mark("turn-1")
    await leg.clear()
    assert peer.parse(await theirs.receive()) == OutboundMedia(pcm16_to_ulaw(pcm16))
    assert peer.parse(await theirs.receive()) == OutboundMark("turn-1")
    assert peer.parse(await theirs.receive()) == Clear()


async def test_send_dtmf_is_not_possible() -> None:
    leg, _, _ = await open_leg()
    with pytest.raises(LegCannotDo):
        await leg.send_dtmf("1")


async def test_protocol_error_mid_call_closes_with_1008() -> None:
    leg, peer, theirs = await open_leg()
    await theirs.send(peer.media(ULAW))
    await theirs.send(
        '{"event": "media", "sequenceNumber": "9", "streamSid": "' + SID + '", '
        '"media": {"payload": "%%%", "chunk": "1", "timestamp": "0"}}'
    )
    assert isinstance(await leg.receive(), LegAudio)
    with pytest.raises(TwilioProtocolError) as info:
        await leg.receive()
    assert info.value.reason == "bad_base64"
    await leg.hangup(info.value.reason)
    assert await closed_code(theirs) == CLOSE_POLICY_VIOLATION


async def test_normal_hangup_closes_with_1000() -> None:
    leg, _, theirs = await open_leg()
    await leg.hangup("agent ended the call")
    assert await closed_code(theirs) == CLOSE_NORMAL
    await leg.hangup("twice")  # never raises
    with pytest.raises(LegError):
        await leg.receive()


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ('{"event": "media", "sequenceNumber": "1", "streamSid": "MZ1"}', "before_start"),
        ("not json", "bad_json"),
        (b"\x00\x01", "binary_message"),
    ],
)
async def test_bad_handshake_is_refused_and_closed(first: str | bytes, reason: str) -> None:
    ours, theirs = memory_socket_pair(8)
    await theirs.send(first)
    with pytest.raises(TwilioProtocolError) as info:
        await TwilioLeg.accept(ours)
    assert info.value.reason == reason
    assert await closed_code(theirs) == CLOSE_POLICY_VIOLATION


async def test_no_start_in_time(autojump_clock: object) -> None:
    ours, theirs = memory_socket_pair(8)
    await theirs.send(TwilioPeer(SID).connected())
    with pytest.raises(LegError) as info:
        await TwilioLeg.accept(ours, start_timeout_s=3.0)
    assert info.value.reason == "start_timeout"
    assert await closed_code(theirs) == CLOSE_POLICY_VIOLATION


async def test_silent_caller_times_out(autojump_clock: object) -> None:
    leg, _, _ = await open_leg(idle_timeout_s=4.0)
    with pytest.raises(LegError) as info:
        await leg.receive()
    assert info.value.reason == "idle_timeout"


async def test_client_that_never_reads_fails_the_send(autojump_clock: object) -> None:
    leg, _, _ = await open_leg(capacity=4, send_timeout_s=2.0)
    with pytest.raises(LegError) as info:
        for _ in range(10):
            await leg.send_audio(b"\x00\x00" * 160)
    assert info.value.reason == "send_timeout"


async def test_caller_closing_the_socket_is_a_hangup() -> None:
    leg, _, theirs = await open_leg()
    await theirs.close(CLOSE_NORMAL)
    event = await leg.receive()
    assert isinstance(event, LegHangup) and "closed" in event.reason
    with pytest.raises(LegError) as info:
        await leg.send_audio(b"\x00\x00" * 160)
    assert info.value.reason == "closed"


async def test_a_broken_stream_leaves_another_untouched() -> None:
    good, good_peer, good_theirs = await open_leg()
    bad, _, bad_theirs = await open_leg()
    got: list[object] = []

    async def run_good() -> None:
        for _ in range(3):
            await good_theirs.send(good_peer.media(ULAW))
            got.append(await good.receive())

    async def run_bad() -> None:
        await bad_theirs.send("{garbage")
        with pytest.raises(TwilioProtocolError):
            await bad.receive()
        await bad.hangup("bad_json")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_bad)
        nursery.start_soon(run_good)
    assert got == [LegAudio(ulaw_to_pcm16(ULAW))] * 3
    assert await closed_code(bad_theirs) == CLOSE_POLICY_VIOLATION


async def test_drain_waits_for_twilio_to_play_what_was_sent(autojump_clock: object) -> None:
    leg, peer, theirs = await open_leg(idle_timeout_s=60)
    events: list[object] = []
    drained: list[bool] = []

    async def reader() -> None:
        while not isinstance(event := await leg.receive(), LegHangup):
            events.append(event)

    async def twilio() -> None:
        media, mark = peer.parse(await theirs.receive()), peer.parse(await theirs.receive())
        assert isinstance(media, OutboundMedia) and isinstance(mark, OutboundMark)
        await trio.sleep(3.0)  # Twilio plays its buffer
        await theirs.send(peer.mark("agent-mark"))
        await theirs.send(peer.mark(mark.name))  # the echo of the leg's own mark
        await trio.sleep(1.0)
        await theirs.send(peer.stop())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(twilio)
        await leg.send_audio(ulaw_to_pcm16(ULAW))
        start = trio.current_time()
        drained.append(await leg.drain(10.0))
        assert trio.current_time() - start == pytest.approx(3.0)
    assert drained == [True]
    assert events == [LegMarkPlayed("agent-mark")]  # the leg's own mark went no further


async def test_drain_gives_up_after_its_timeout(autojump_clock: object) -> None:
    leg, _, _ = await open_leg(idle_timeout_s=60)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(leg.receive)
        assert await leg.drain(2.0) is False
        nursery.cancel_scope.cancel()
