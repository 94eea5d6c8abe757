"""Whole calls over the WebSocket legs: a Twilio-speaking client (and pipecat's own serializer)
or an Asterisk-like chan_websocket peer, the media core's call session in this Trio test, and
the real echo agent on its own asyncio thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import numpy as np
import trio
from pipecat.frames.frames import InputAudioRawFrame

from media.call import Call, CallEnv
from media.chan_websocket import MediaStart, media_start_text
from media.chan_websocket_leg import ChanWebsocketLeg
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.config import MediaConfig
from media.message_socket import MemoryMessageSocket, memory_socket_pair
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.twilio import OutboundMedia, TwilioPeer
from media.twilio_leg import TwilioLeg
from tests.media.conftest import RecordingHooks, best_snr_db, tone
from tests.media.pipecat_twilio import pipecat_twilio_serializer

SID = "MZaaaabbbbccccddddeeeeffff00001111"
FRAME_S = 0.02


def make_env(agent_url: str) -> tuple[CallEnv, RecordingHooks]:
    hooks = RecordingHooks()
    cfg = replace(MediaConfig(agent=agent_url))
    return CallEnv(cfg, hooks, MediaMetrics(), CallRegistry()), hooks


async def play_in_real_time(chunks: list[bytes], send: Callable[[bytes], Awaitable[None]]) -> None:
    deadline = trio.current_time()
    for chunk in chunks:
        await send(chunk)
        deadline += FRAME_S
        await trio.sleep_until(deadline)


async def collect(socket: MemoryMessageSocket, into: list[str | bytes]) -> None:
    into.extend((await socket.until_closed())[0])


async def test_echo_call_over_the_twilio_leg(echo_agent: str) -> None:
    env, hooks = make_env(echo_agent)
    src = tone(1000, 1.0)
    ours, theirs = memory_socket_pair(256)
    peer = TwilioPeer(SID)
    received: list[str | bytes] = []
    await theirs.send(peer.connected())
    await theirs.send(peer.start({"agent": "echo", "from": "+15550100"}))
    leg = await TwilioLeg.accept(ours)
    info = leg.call_info("call-twilio-1")
    assert info.leg_ref == SID and info.caller == "+15550100" and info.params["agent"] == "echo"

    async def caller() -> None:
        ulaw = pcm16_to_ulaw(src)
        chunks = [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]
        await play_in_real_time(chunks, lambda c: theirs.send(peer.media(c)))
        await play_in_real_time([bytes([0xFF]) * 160] * 25, lambda c: theirs.send(peer.media(c)))
        await theirs.send(peer.stop())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(Call(leg, info, env).run)
        nursery.start_soon(collect, theirs, received)
        nursery.start_soon(caller)
    messages = [peer.parse(text) for text in received]
    echoed = b"".join(ulaw_to_pcm16(msg.ulaw) for msg in messages if isinstance(msg, OutboundMedia))
    snr, _ = best_snr_db(src, echoed, max_delay=4000)
    assert snr > 25, snr  # mu-law both ways on top of 8k -> 16k -> 8k
    assert hooks.hungup and hooks.hungup[0][1] == "caller"


async def test_pipecats_serializer_decodes_what_a_call_sends(echo_agent: str) -> None:
    """The client side of a real call, read by pipecat's TwilioFrameSerializer."""
    env, _ = make_env(echo_agent)
    ours, theirs = memory_socket_pair(256)
    peer = TwilioPeer(SID)
    received: list[str | bytes] = []
    await theirs.send(peer.start())
    leg = await TwilioLeg.accept(ours)
    src = tone(700, 0.6)
    ulaw = pcm16_to_ulaw(src)

    async def caller() -> None:
        chunks = [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]
        await play_in_real_time(
            chunks + [bytes([0xFF]) * 160] * 25, lambda c: theirs.send(peer.media(c))
        )
        await theirs.send(peer.stop())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(Call(leg, leg.call_info("call-pipecat"), env).run)
        nursery.start_soon(collect, theirs, received)
        nursery.start_soon(caller)

    async def decode() -> bytes:
        serializer = await pipecat_twilio_serializer(SID)
        frames = [await serializer.deserialize(text) for text in received]
        return b"".join(f.audio for f in frames if isinstance(f, InputAudioRawFrame))

    pcm16 = asyncio.run(decode())
    snr, _ = best_snr_db(src, pcm16, max_delay=4000)
    assert snr > 25, snr


async def test_echo_call_over_chan_websocket_slin16(echo_agent: str) -> None:
    env, hooks = make_env(echo_agent)
    src = tone(1000, 1.0, rate_hz=16000)
    ours, asterisk = memory_socket_pair(256)
    start = MediaStart(
        "media1",
        "WebSocket/media1/0x1",
        "1764062400.9",
        "slin16",
        640,
        20,
        {"CALLER": "200", "AGENT": "echo"},
    )
    await asterisk.send(media_start_text(start, "json"))
    leg = await ChanWebsocketLeg.accept(ours)
    info = leg.call_info("call-ws-1")
    assert info.leg_ref == "1764062400.9" and info.caller == "200"
    received: list[str | bytes] = []

    async def asterisk_side() -> None:
        chunks = [src[i : i + 640] for i in range(0, len(src), 640)]
        await play_in_real_time(chunks + [bytes(640)] * 25, asterisk.send)
        await asterisk.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(Call(leg, info, env).run)
        nursery.start_soon(collect, asterisk, received)
        nursery.start_soon(asterisk_side)
    echoed = b"".join(m for m in received if isinstance(m, bytes))
    snr, _ = best_snr_db(src, echoed, max_delay=8000)
    assert snr > 30, snr
    assert hooks.hungup[0][1] == "caller"
    frames_in = env.metrics.registry.get_sample_value(
        "callbridge_leg_frames_in_total", {"leg": "chan_websocket"}
    )
    assert frames_in == 75


def _rms(pcm16: bytes) -> float:
    return float(np.sqrt(np.mean(np.frombuffer(pcm16, dtype="<i2").astype(float) ** 2)))


async def test_garbage_from_one_twilio_client_ends_only_its_call(echo_agent: str) -> None:
    env, hooks = make_env(echo_agent)
    good_ours, good_theirs = memory_socket_pair(256)
    bad_ours, bad_theirs = memory_socket_pair(256)
    good_peer, bad_peer = TwilioPeer(SID), TwilioPeer("MZbad")
    await good_theirs.send(good_peer.start())
    await bad_theirs.send(bad_peer.start())
    good = await TwilioLeg.accept(good_ours)
    bad = await TwilioLeg.accept(bad_ours)
    received: list[str | bytes] = []
    bad_end: list[Any] = []
    src = tone(500, 0.8)

    async def good_caller() -> None:
        ulaw = pcm16_to_ulaw(src)
        chunks = [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]
        await play_in_real_time(
            chunks + [bytes([0xFF]) * 160] * 25, lambda c: good_theirs.send(good_peer.media(c))
        )
        await good_theirs.send(good_peer.stop())

    async def bad_caller() -> None:
        await bad_theirs.send(bad_peer.media(bytes(160)))
        await bad_theirs.send('{"event": "media", "sequenceNumber": "3"')  # cut short
        bad_end.append(await bad_theirs.until_closed())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(Call(good, good.call_info("good"), env).run)
        nursery.start_soon(Call(bad, bad.call_info("bad"), env).run)
        nursery.start_soon(collect, good_theirs, received)
        nursery.start_soon(good_caller)
        nursery.start_soon(bad_caller)
    assert bad_end[0][1] == 1008
    ends = {call_id: cause for call_id, cause, _ in hooks.hungup}
    assert ends == {"bad": "error", "good": "caller"}
    errors = env.metrics.registry.get_sample_value(
        "callbridge_leg_errors_total", {"leg": "twilio", "reason": "bad_json"}
    )
    assert errors == 1
    echoed = b"".join(
        ulaw_to_pcm16(m.ulaw)
        for m in map(good_peer.parse, received)
        if isinstance(m, OutboundMedia)
    )
    assert best_snr_db(src, echoed, max_delay=4000)[0] > 25
    assert _rms(echoed) > 1000
