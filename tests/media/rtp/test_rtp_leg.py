"""The Trio RTP leg over real loopback UDP: a fixture in, decoded audio and digits out, and back."""

from __future__ import annotations

import socket

import pytest
import trio

from media.hooks import LegCannotDo
from media.leg import LegAudio, LegDtmf, LegError, LegEvent, LegHangup
from media.rtp.dtmf import DtmfDecoder, DtmfDigit
from media.rtp.packet import RtpPacket, is_rtcp, parse_rtp
from media.rtp.pcap import read_pcap
from media.rtp.rtcp import Bye, ReceiverReport, SenderReport, parse_rtcp
from media.rtp.session import RtpSession, RtpSessionConfig
from media.rtp_leg import RtpLeg, bind_udp_pair, ntp_timestamp
from tests.media.rtp.fixture_data import FIXTURES, MANIFEST, reference_index

FIXTURE = "speech_pcmu_dtmf.pcap"


async def _udp() -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


async def _play_capture(sock: trio.socket.SocketType, to: tuple[str, int]) -> None:
    """Send the fixture's datagrams with their captured timing."""
    datagrams = read_pcap((FIXTURES / FIXTURE).read_bytes()).datagrams
    start = trio.current_time()
    for d in datagrams:
        await trio.sleep_until(start + d.time_s - datagrams[0].time_s)
        await sock.sendto(d.payload, to)


@pytest.mark.usefixtures("quiet_gc")
async def test_fixture_over_loopback_gives_audio_digits_and_symmetric_replies() -> None:
    leg = await RtpLeg.open(RtpSessionConfig(local_ssrc=0xCA11), port_min=31000, port_max=39000)
    assert leg.local_address[1] % 2 == 0
    peer, spoofer = await _udp(), await _udp()
    events: list[LegEvent] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_play_capture, peer, leg.local_address)
        with trio.fail_after(15):
            while len([e for e in events if isinstance(e, LegDtmf)]) < 3:
                events.append(await leg.receive())
                if len(events) == 50:  # latched by now: an injected stream must be ignored
                    injected = RtpPacket(0, 1, 160, 0xBAD, b"\xff" * 160).serialize()
                    for _ in range(5):
                        await spoofer.sendto(injected, leg.local_address)
    assert leg.session.counters.rejected["spoofed_source"] == 5

    digits = [(e.digit, e.duration_ms) for e in events if isinstance(e, LegDtmf)]
    assert digits == [("4", 100), ("2", 100), ("#", 100)]
    index = reference_index(FIXTURE)
    positions = [index[e.pcm16] for e in events if isinstance(e, LegAudio) and e.pcm16 in index]
    frames = MANIFEST["fixtures"][FIXTURE]["audio_frames"]
    assert positions == sorted(positions)  # in order over real UDP and the Trio clock
    assert len(positions) >= frames - 5  # scheduling hiccups may cost a frame or two, not more

    # Symmetric RTP: our audio goes back to the address the fixture came from.
    for _ in range(3):
        await leg.send_audio(b"\x10\x00" * 160)
    await leg.send_dtmf("9")
    decoder, got_audio = DtmfDecoder(), 0
    got_digits: list[DtmfDigit] = []
    with trio.fail_after(5):
        while not got_digits:
            data, _ = await peer.recvfrom(2048)
            if is_rtcp(data):
                continue  # a periodic report may come first
            packet = parse_rtp(data)
            assert packet.ssrc == 0xCA11
            if packet.payload_type == 0:
                got_audio += 1
            else:
                got_digits += decoder.receive(packet.timestamp, packet.payload)
    assert got_audio >= 3 and [d.digit for d in got_digits] == ["9"]

    # The peer's RTCP BYE ends the leg; our hangup answers with SR + BYE.
    bye = RtpSession(RtpSessionConfig(local_ssrc=0x5EED0000)).build_report(0, 0, bye="done")
    await peer.sendto(bye, leg.local_address)
    with trio.fail_after(2):
        while not isinstance(event := await leg.receive(), LegHangup):
            pass
    assert "BYE" in event.reason
    with pytest.raises(LegError):
        await leg.receive()  # LegHangup comes once; the leg is done after it
    await leg.hangup("normal")
    with trio.fail_after(2):
        while not is_rtcp(data := (await peer.recvfrom(2048))[0]):
            pass  # the tail of the key press we sent
    packets = parse_rtcp(data)
    assert isinstance(packets[0], SenderReport) and isinstance(packets[-1], Bye)
    assert packets[0].reports[0].cumulative_lost == 0
    with pytest.raises(LegError):
        await leg.receive()
    peer.close()
    spoofer.close()


async def test_silence_on_the_socket_times_out() -> None:
    leg = await RtpLeg.open(RtpSessionConfig(local_ssrc=1), idle_timeout_s=0.3)
    with trio.fail_after(2), pytest.raises(LegError) as info:
        while True:
            await leg.receive()
    assert info.value.reason == "idle_timeout"
    await leg.hangup("timeout")


async def test_garbage_datagrams_do_not_keep_the_leg_alive_or_break_it() -> None:
    leg = await RtpLeg.open(RtpSessionConfig(local_ssrc=1), idle_timeout_s=0.4)
    sender = await _udp()
    async with trio.open_nursery() as nursery:

        async def spray() -> None:
            for n in range(30):
                await sender.sendto(bytes([n]) * (n + 1), leg.local_address)
                await trio.sleep(0.02)

        nursery.start_soon(spray)
        with trio.fail_after(3), pytest.raises(LegError):
            while True:
                await leg.receive()
    assert sum(leg.session.counters.rejected.values()) >= 15  # all that came before timeout
    assert leg.session.latched is None
    await leg.hangup("bad input")
    sender.close()


async def test_dtmf_without_telephone_event_cannot_be_sent() -> None:
    config = RtpSessionConfig(local_ssrc=1, telephone_event_pt=None)
    leg = await RtpLeg.open(config)
    with pytest.raises(LegCannotDo):
        await leg.send_dtmf("1")
    await leg.hangup("done")


async def test_separate_rtcp_port_and_port_range_bounds() -> None:
    rtp, rtcp = await bind_udp_pair("127.0.0.1", 41000, 41010, with_rtcp=True)
    assert rtcp is not None
    assert rtcp.getsockname()[1] == rtp.getsockname()[1] + 1
    rtp.close()
    rtcp.close()
    with pytest.raises(ValueError):
        await bind_udp_pair("127.0.0.1", 41001, 41001, with_rtcp=False)
    with pytest.raises(ValueError):
        await bind_udp_pair("127.0.0.1", 0, 10, with_rtcp=False)
    assert ntp_timestamp(0.0) >> 32 == 2_208_988_800


async def test_hangup_while_a_reader_waits_ends_the_read_with_leg_error() -> None:
    leg = await RtpLeg.open(RtpSessionConfig(local_ssrc=1))
    outcome: list[BaseException] = []

    async def reader() -> None:
        try:
            while True:
                await leg.receive()
        except LegError as exc:
            outcome.append(exc)

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.1)
            await leg.hangup("api")
    assert len(outcome) == 1 and isinstance(outcome[0], LegError)


async def test_separate_rtcp_port_carries_reports_both_ways_and_bye() -> None:
    config = RtpSessionConfig(local_ssrc=0xCA11)
    leg = await RtpLeg.open(config, rtcp_mux=False, rtcp_interval_s=0.2, idle_timeout_s=3)
    peer_rtp, peer_rtcp = await _udp(), await _udp()
    host, port = leg.local_address
    peer = RtpSession(RtpSessionConfig(local_ssrc=0x5EED))
    for _ in range(10):
        for packet in peer.send_audio(bytes(320)):
            await peer_rtp.sendto(packet, (host, port))
    sr = peer.build_report(0.0, ntp_timestamp(1_764_000_000.0))
    events: list[LegEvent] = []

    async def pump() -> None:  # the call's reader: it drives ticks, RTCP included
        while not events or not isinstance(events[-1], LegHangup):
            events.append(await leg.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            while not events:
                await trio.sleep(0.01)  # latched onto the peer's RTP
            await peer_rtcp.sendto(sr, (host, port + 1))
            while True:  # our reports go where the peer's RTCP came from (symmetric RTCP)
                report = parse_rtcp((await peer_rtcp.recvfrom(2048))[0])[0]
                assert isinstance(report, SenderReport | ReceiverReport)
                if report.reports and report.reports[0].lsr:
                    break
            block = report.reports[0]
            assert block.ssrc == 0x5EED and block.lsr == leg.session.stats.last_sr_lsr
            quality = leg.session.quality()
            assert quality.packets_in == 10 and quality.lost == 0 and quality.rejected == 0
            await peer_rtcp.sendto(peer.build_report(0.0, 0, bye="bye"), (host, port + 1))
    assert isinstance(events[-1], LegHangup)
    await leg.hangup("done")
    peer_rtp.close()
    peer_rtcp.close()


async def test_signalling_events_hold_and_a_moved_peer() -> None:
    """What SIP does to the leg: BYE/INFO arrive as events, hold mutes us and silences the idle
    timeout, a re-INVITE that moves the peer redirects our media to the new address."""
    old_peer, new_peer = await _udp(), await _udp()
    config = RtpSessionConfig(local_ssrc=7, remote=old_peer.getsockname())
    leg = await RtpLeg.open(config, idle_timeout_s=0.3)
    leg.set_hold(True)
    await leg.send_audio(b"\x00\x00" * 160)
    with trio.move_on_after(0.6):  # twice the idle timeout: held, so no LegError
        await leg.receive()
    assert leg.session.counters.packets_out == 0
    leg.set_hold(False)
    leg.move_remote(new_peer.getsockname())
    await leg.send_audio(b"\x00\x00" * 160)
    with trio.fail_after(5):
        packet = parse_rtp((await new_peer.recvfrom(2048))[0])
    assert packet.ssrc == 7
    leg.push_event(LegDtmf("5", 160))
    leg.push_event(LegHangup("sip bye"))
    with trio.fail_after(2):
        assert await leg.receive() == LegDtmf("5", 160)
        assert await leg.receive() == LegHangup("sip bye")
    await leg.hangup("done")
    old_peer.close()
    new_peer.close()
