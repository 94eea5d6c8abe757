"""Bad AudioSocket peers get a logged reason, a clean close and a counter, and no other call
notices: each case runs beside a good echo call that must come through whole."""

from __future__ import annotations

import socket

import pytest
import trio

from media.audiosocket import encode_frame
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import Media, best_snr_db, start_media, tone


async def good_call(media: Media, results: list[tuple[float, int]], freq_hz: float = 1000) -> None:
    """Play a second of tone, wait (up to 10 s: the machine may be loaded) until the echo of all
    of it is back, then hang up. Disturbance shows as missing or distorted audio."""
    src = tone(freq_hz, 1.0)
    peer = await AsteriskPeer.connect(media.port)
    async with trio.open_nursery() as n:
        n.start_soon(peer.read_until_closed)
        await peer.play(src)
        with trio.move_on_after(10):
            while len(peer.audio()) < len(src):
                await trio.sleep(0.05)
        await peer.close()
    snr, _ = best_snr_db(src, peer.audio(), max_delay=1200)
    results.append((snr, len(peer.audio())))


async def wait_closed(peer: AsteriskPeer, within_s: float) -> float:
    start = trio.current_time()
    with trio.fail_after(within_s):
        await peer.read_until_closed()
    return trio.current_time() - start


UUID_FRAME = encode_frame(0x01, bytes(range(16)))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (UUID_FRAME + encode_frame(0x07, b"x"), "unknown_kind"),
        (UUID_FRAME + encode_frame(0x10, b""), "zero_length"),
        (UUID_FRAME + b"\x10\xff\xff" + bytes(1000), "oversized"),
        (UUID_FRAME + encode_frame(0x03, b"Z"), "bad_dtmf"),
        (encode_frame(0x10, bytes(320)), "before_uuid"),
        (encode_frame(0x03, b"1"), "before_uuid"),
    ],
)
async def test_malformed_peer_is_closed_and_counted(
    media_echo: Media, data: bytes, reason: str
) -> None:
    results: list[tuple[float, int]] = []
    async with trio.open_nursery() as n:
        n.start_soon(good_call, media_echo, results)
        await trio.sleep(0.2)
        bad = await AsteriskPeer.connect(media_echo.port, send_uuid=False)
        await bad.send_raw(data)
        await wait_closed(bad, 3)
    stage = "no_uuid" if reason == "before_uuid" else reason
    assert (
        media_echo.counter("callbridge_leg_errors_total", leg="audiosocket", reason=reason)
        + media_echo.counter("callbridge_leg_errors_total", leg="audiosocket", reason=stage)
        >= 1
    )
    snr, nbytes = results[0]
    assert snr > 30 and nbytes >= 16000  # the good call never noticed


async def test_truncated_frame_then_close(media_echo: Media) -> None:
    bad = await AsteriskPeer.connect(media_echo.port)
    await bad.send_raw(encode_frame(0x10, bytes(320)) + encode_frame(0x10, bytes(320))[:100])
    await bad.stream.send_eof()
    await wait_closed(bad, 3)
    with trio.fail_after(3):
        await media_echo.hooks.ended.wait()
    assert (
        media_echo.counter("callbridge_leg_errors_total", leg="audiosocket", reason="truncated")
        == 1
    )
    assert media_echo.hooks.hungup[0][1] == "error"


async def test_peer_that_stops_sending_is_hung_up(nursery: trio.Nursery, echo_agent: str) -> None:
    media = await start_media(nursery, echo_agent, leg_idle_timeout_s=0.5)
    peer = await AsteriskPeer.connect(media.port)
    await peer.play(bytes(320 * 5))
    took = await wait_closed(peer, 3)
    assert 0.4 < took < 2.0
    assert peer.got_hangup_frame()
    assert (
        media.counter("callbridge_leg_errors_total", leg="audiosocket", reason="idle_timeout") == 1
    )


async def test_peer_that_never_reads_is_hung_up(nursery: trio.Nursery, echo_agent: str) -> None:
    media = await start_media(nursery, echo_agent, leg_send_timeout_s=0.5)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await sock.connect(("127.0.0.1", media.port))
    stream = trio.SocketStream(sock)
    await stream.send_all(UUID_FRAME)
    # Talk at 16 kHz for up to 15 s and never read: the echo fills the socket buffers.
    with trio.move_on_after(15):
        for _i in range(750):
            try:
                await stream.send_all(encode_frame(0x12, tone(500, 0.02, 16000)))
            except trio.BrokenResourceError:
                break
            await trio.sleep(0.02)
            if media.hooks.ended.is_set():
                break
    with trio.fail_after(3):
        await media.hooks.ended.wait()
    await stream.aclose()
    assert (
        media.counter("callbridge_leg_errors_total", leg="audiosocket", reason="send_timeout") == 1
    )
    assert media.hooks.hungup[0][1] == "error"


@pytest.mark.slow
async def test_fifty_echo_calls_with_one_malformed_peer(media_echo: Media) -> None:
    results: list[tuple[float, int]] = []
    async with trio.open_nursery() as n:
        for i in range(50):
            n.start_soon(good_call, media_echo, results, 300 + 50 * i)
        await trio.sleep(0.4)
        bad = await AsteriskPeer.connect(media_echo.port)
        await bad.send_raw(encode_frame(0x10, bytes(320)) + b"\x99\x00\x01x")
        await wait_closed(bad, 3)
    assert len(results) == 50
    weak = [(snr, nbytes) for snr, nbytes in results if snr < 30 or nbytes < 16000]
    assert not weak, weak
    assert (
        media_echo.counter("callbridge_leg_errors_total", leg="audiosocket", reason="unknown_kind")
        == 1
    )
    with trio.fail_after(5):  # the server side finishes each call's cleanup on its own time
        while len(media_echo.hooks.hungup) < 51:
            await trio.sleep(0.05)
    causes = [cause for _, cause, _ in media_echo.hooks.hungup]
    assert causes.count("caller") == 50 and causes.count("error") == 1
