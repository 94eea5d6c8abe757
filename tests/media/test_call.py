"""Calls end to end on loopback: an Asterisk-like AudioSocket peer, the media core in this Trio
test, and a real agent-link server (asyncio, its own thread)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest
import trio

from ai_pipeline.link import AgentLink
from media.audio import LINK_RATE_HZ
from media.audiosocket_server import serve_audiosocket
from media.call_env import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import CallHandle
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from proto import messages as m
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import (
    Media,
    RecordingHooks,
    agent_in_thread,
    best_snr_db,
    start_media,
    tone,
)
from tests.media.dtmf_detect import dtmf_keys


@pytest.fixture(params=["ws", "mux"])
def agent_link(request: pytest.FixtureRequest) -> str:
    """Every agent-link behaviour over a WebSocket per call and over the multiplexed link."""
    return str(request.param)


@pytest.fixture
async def media_link(nursery: trio.Nursery, echo_agent: str, agent_link: str) -> Media:
    return await start_media(nursery, echo_agent, agent_link=agent_link)


async def run_peer(media: Media, pcm16: bytes, linger_s: float = 0.5) -> AsteriskPeer:
    """Connect, play ``pcm16`` in real time, wait ``linger_s``, hang up by closing."""
    peer = await AsteriskPeer.connect(media.port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.read_until_closed)
        await peer.play(pcm16)
        await trio.sleep(linger_s)
        await peer.close()
    with trio.fail_after(5):
        await media.hooks.ended.wait()
    return peer


async def test_echo_call_returns_the_callers_audio(media_link: Media) -> None:
    src = tone(1000, 1.0)
    peer = await run_peer(media_link, src)
    snr, _delay = best_snr_db(src, peer.audio(), max_delay=2000)
    assert snr > 30, snr  # 8k -> 16k -> link -> 16k -> 8k
    assert len(peer.audio()) >= len(src) * 0.9
    info = media_link.hooks.created[0]
    assert info.leg == "audiosocket" and info.leg_ref == str(peer.call_uuid)
    assert media_link.hooks.answered == [info.call_id]
    assert media_link.hooks.hungup[0][1] == "caller"
    assert media_link.counter("callbridge_leg_frames_in_total", leg="audiosocket") == 50
    assert media_link.counter("callbridge_calls_active", leg="audiosocket") == 0


async def test_dtmf_reaches_the_agent_and_comes_back_as_tones(media_link: Media) -> None:
    peer = await AsteriskPeer.connect(media_link.port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.read_until_closed)
        await peer.play(bytes(320 * 5))
        await peer.send_dtmf("5")
        await peer.play(bytes(320 * 20))
        await trio.sleep(0.5)
        await peer.close()
    y = np.frombuffer(peer.audio(), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(y))
    freqs = np.fft.rfftfreq(len(y), 1 / 8000)

    def peak(f: float) -> float:
        return float(spectrum[np.abs(freqs - f) < 15].max())

    # "5" is 770 + 1336 Hz; the echo agent reported it as a caller transcript too.
    assert peak(770) > 20 * peak(1000) and peak(1336) > 20 * peak(1000)
    assert ("caller", "pressed 5") in [(r, t) for _, r, t in media_link.hooks.transcripts]
    # and the control plane was told, whoever the call talks with (its dtmf_received event)
    assert media_link.hooks.digits == [(media_link.hooks.created[0].call_id, "5")]


def echo_delay(sent: bytes, received: bytes, start_s: float, rate_hz: int = 8000) -> int:
    """Where a second of ``sent`` from ``start_s`` on lies in ``received``, less where it lay
    in ``sent``: the echo's round trip in samples of the stream the caller got."""
    x = np.frombuffer(sent, "<i2").astype(float)
    y = np.frombuffer(received, "<i2").astype(float)
    seg = x[int(start_s * rate_hz) : int((start_s + 1) * rate_hz)]
    corr = np.correlate(y, seg, mode="valid")
    return int(np.argmax(corr)) - int(start_s * rate_hz)


async def test_keys_played_back_as_tones_do_not_delay_the_echo(media_link: Media) -> None:
    """The echo agent plays each key the caller presses back as an in-band tone (AudioSocket has
    no DTMF signalling). "1234" is heard, and the caller's audio echoed after it comes back with
    the same round trip as before: queued behind the audio, each tone used to add 160 ms to the
    rest of the call (11 ms -> 1121 ms measured after "1234")."""
    rng = np.random.default_rng(5)
    noise = np.convolve(rng.normal(0, 3000, 8000 * 4), [0.25, 0.5, 0.25], mode="same")
    src = np.clip(noise, -32767, 32767).astype("<i2").tobytes()
    half_bytes = 2 * 8000 * 2
    peer = await AsteriskPeer.connect(media_link.port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.read_until_closed)
        await peer.play(src[:half_bytes])  # 2 s, then the keys
        for digit in "1234":
            await peer.send_dtmf(digit)
        await peer.play(src[half_bytes:])
        await trio.sleep(1.0)
        await peer.close()
    got = peer.audio()
    before, after = echo_delay(src, got, 0.5), echo_delay(src, got, 2.9)
    assert 0 <= before < 800, before  # under 100 ms
    assert abs(after - before) <= 160, (before, after)  # within a frame: the timeline held
    assert dtmf_keys(got, 8000) == "1234"
    digits = [t for _, r, t in media_link.hooks.transcripts if r == "caller"]
    assert digits == [f"pressed {d}" for d in "1234"]


class ScriptedAgent:
    """An agent whose behaviour a test scripts; records every frame it receives."""

    def __init__(self, script: Any) -> None:
        self.script = script
        self.received: list[m.LinkFrame] = []
        self.starts: list[m.CallStart] = []
        self.done = threading.Event()

    async def __call__(self, start: m.CallStart, link: AgentLink) -> None:
        self.starts.append(start)
        try:
            await self.script(link, self)
        finally:
            self.done.set()

    async def drain(self, link: AgentLink) -> None:
        while True:
            frame = await link.recv()
            self.received.append(frame)
            if isinstance(frame, m.Hangup):
                return


def link_audio(seconds: float, freq_hz: float = 440) -> list[m.Audio]:
    pcm = tone(freq_hz, seconds, LINK_RATE_HZ)
    return [m.Audio(pcm[i : i + 640], LINK_RATE_HZ) for i in range(0, len(pcm), 640)]


async def test_burst_of_agent_audio_is_paced_in_20ms_frames(
    nursery: trio.Nursery, agent_link: str
) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        for frame in link_audio(1.0):  # one second of speech, sent at once
            await link.send(frame)
        await agent.drain(link)

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url, agent_link=agent_link)
        peer = await run_peer(media, bytes(320 * 75), linger_s=0.2)
    frames = peer.audio_frames()
    assert len(frames) == 50 and all(len(f.payload) == 320 for f in frames)
    gaps = np.diff([f.t for f in frames])
    assert 0.9 < frames[-1].t - frames[0].t < 1.2  # played over a second, not in a burst
    assert np.median(gaps) > 0.015
    assert agent.starts[0].agent_id == "test-agent" and agent.starts[0].sample_rate_hz == 16000
    assert agent.starts[0].agent_config == {"k": "v"} and agent.starts[0].leg == "audiosocket"


async def test_interruption_flushes_queued_audio_at_once(
    nursery: trio.Nursery, agent_link: str
) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        for frame in link_audio(3.0):
            await link.send(frame)
        await asyncio.sleep(0.3)
        await link.send(m.Interruption())
        await agent.drain(link)

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url, agent_link=agent_link)
        peer = await run_peer(media, bytes(320 * 75), linger_s=0.5)
    played_s = len(peer.audio()) / 2 / 8000
    assert 0.2 < played_s < 0.8, played_s  # 3 s queued, ~0.3 s played, the rest flushed
    assert media.counter("callbridge_playout_flushes_total") == 1


async def test_caller_hangup_tells_the_agent(nursery: trio.Nursery, agent_link: str) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        await agent.drain(link)

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url, agent_link=agent_link)
        await run_peer(media, bytes(320 * 10), linger_s=0.1)
        assert agent.done.wait(5)
    audio = [f for f in agent.received if isinstance(f, m.Audio)]
    assert len(audio) == 10 and all(len(f.pcm16) == 640 for f in audio)
    assert isinstance(agent.received[-1], m.Hangup)
    assert media.hooks.hungup[0][1] == "caller"


async def test_agent_hangup_plays_queued_audio_then_hangs_up(
    nursery: trio.Nursery, agent_link: str
) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        for frame in link_audio(0.5):
            await link.send(frame)
        await link.send(m.Hangup("goodbye"))

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url, agent_link=agent_link)
        peer = await AsteriskPeer.connect(media.port)
        async with trio.open_nursery() as n:
            n.start_soon(peer.read_until_closed)
            n.start_soon(peer.play, bytes(320 * 100))
            with trio.fail_after(5):
                await media.hooks.ended.wait()
            await trio.sleep(0.1)
            n.cancel_scope.cancel()
    assert len(peer.audio()) == 0.5 * 8000 * 2, media.hooks.hungup  # every queued frame played
    assert peer.got_hangup_frame() and peer.received[-1].kind == 0x00
    assert media.hooks.hungup[0][1:] == ("agent", "goodbye")


async def test_tool_call_runs_and_its_result_returns(
    nursery: trio.Nursery, agent_link: str
) -> None:
    async def script(link: AgentLink, agent: ScriptedAgent) -> None:
        await link.send(m.FunctionCall("t1", "transfer_call", {"department": "sales"}))
        while not isinstance(frame := await link.recv(), m.FunctionCallResult):
            pass
        agent.received.append(frame)
        await link.send(m.FunctionCall("t2", "end_call", {}))
        await agent.drain(link)

    agent = ScriptedAgent(script)
    with agent_in_thread(agent) as url:
        media = await start_media(nursery, url, agent_link=agent_link)
        peer = await AsteriskPeer.connect(media.port)
        async with trio.open_nursery() as n:
            n.start_soon(peer.read_until_closed)
            n.start_soon(peer.play, bytes(320 * 100))
            with trio.fail_after(5):
                await media.hooks.ended.wait()
            n.cancel_scope.cancel()
    assert media.hooks.tools == [("transfer_call", {"department": "sales"}), ("end_call", {})]
    result = next(f for f in agent.received if isinstance(f, m.FunctionCallResult))
    assert result.tool_call_id == "t1" and result.result == {"ok": True, "tool": "transfer_call"}
    assert media.hooks.hungup[0][1:] == ("agent", "goodbye")


async def test_unreachable_agent_ends_the_call_cleanly(
    nursery: trio.Nursery, agent_link: str
) -> None:
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    media = await start_media(nursery, f"ws://127.0.0.1:{port}", agent_link=agent_link)
    peer = await AsteriskPeer.connect(media.port)
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(peer.read_until_closed)
            n.start_soon(peer.play, bytes(320 * 10))
            await media.hooks.ended.wait()
    assert peer.closed_at is not None or peer.got_hangup_frame()
    assert media.hooks.hungup[0][1] == "error"
    assert media.counter("callbridge_link_errors_total", reason="connect_failed") == 1


async def test_agent_that_never_answers_times_out(nursery: trio.Nursery, agent_link: str) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    silent_port = listeners[0].socket.getsockname()[1]
    accepted: list[trio.SocketStream] = []

    async def accept_and_ignore() -> None:
        accepted.append(await listeners[0].accept())
        await trio.sleep_forever()

    nursery.start_soon(accept_and_ignore)
    media = await start_media(
        nursery, f"ws://127.0.0.1:{silent_port}", agent_connect_timeout_s=0.5, agent_link=agent_link
    )
    peer = await AsteriskPeer.connect(media.port)
    start = trio.current_time()
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(peer.read_until_closed)
            await media.hooks.ended.wait()
    assert 0.4 < trio.current_time() - start < 2.0
    assert media.counter("callbridge_link_errors_total", reason="connect_timeout") == 1
    assert peer.got_hangup_frame()


class HungUpWhileAnswering(RecordingHooks):
    """A control plane whose record of the answer takes a while (a loaded database, the event
    bus), and an API hangup that arrives meanwhile."""

    async def call_answered(self, call: CallHandle) -> None:
        call.end("api", "hung up while the answer was being recorded")
        await trio.sleep(0.05)  # the UPDATE and the call_answered event
        await super().call_answered(call)


async def test_a_hangup_does_not_cut_short_the_answer_being_recorded(
    nursery: trio.Nursery, echo_agent: str
) -> None:
    # The call_answered event was lost (its publication cancelled with the call) when the API
    # hung up while it was on its way: the row said progressing, no event ever said so.
    cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=echo_agent)
    hooks = HungUpWhileAnswering()
    env = CallEnv(config=cfg, hooks=hooks, metrics=MediaMetrics(), registry=CallRegistry())
    port = await nursery.start(serve_audiosocket, env)
    peer = await AsteriskPeer.connect(port)
    async with trio.open_nursery() as inner:
        inner.start_soon(peer.read_until_closed)
        inner.start_soon(peer.play, tone(440, 2.0))
        with trio.fail_after(10):
            await hooks.ended.wait()
        inner.cancel_scope.cancel()
    (info,) = hooks.created
    assert hooks.answered == [info.call_id]  # recorded whole, then the hangup
    assert hooks.hungup == [(info.call_id, "api", "hung up while the answer was being recorded")]
