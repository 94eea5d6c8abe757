"""An ExternalMedia AudioSocket that callbridge claimed is never left silent while Asterisk sets
it up (sip/ari/leg.py's note): Asterisk's chan_audiosocket can sit in a read that polls until a
byte comes, holding the channel's lock, and an agent that waits for the caller sends nothing; so
the ARI app sends whole frames of silence until Asterisk's own audio comes. Against a socket
pair standing in for Asterisk, through the listener's seam (:meth:`AriApp.claim`). The stall
itself, against the real Asterisk: tests/sip/test_ari_asterisk.py, ten concurrent calls."""

from __future__ import annotations

import itertools
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import trio

from media.audiosocket import AudioSocketConnection
from media.audiosocket_leg import AudioSocketLeg
from media.config import HostPort
from media.hooks import CallInfo
from media.leg import LegAudio
from sip.ari import requests as rq
from sip.ari.app import AriApp
from sip.ari.client import AriClient
from sip.ari.config import AriConfig
from sip.ari.events import Channel
from sip.ari.leg import KEEPALIVE_GAP_S, KEEPALIVE_TAIL_S, AriLeg
from sip.ari.state import AriCall

SLIN16 = 0x12
SLIN8 = 0x10


class NoAri:
    async def call(self, req: rq.AriRequest) -> Any:
        return None


@dataclass
class Claimed:
    call: AriCall
    leg: AriLeg
    asterisk: trio.socket.SocketType  # Asterisk's end of the ExternalMedia socket


@asynccontextmanager
async def claimed_call(sndbuf: int = 0) -> AsyncIterator[Claimed]:
    """An ARI call whose ExternalMedia socket the listener has just handed to the app."""
    cfg = AriConfig(
        url="http://127.0.0.1:1/ari", user="u", password="p", media_host=HostPort("h", 1)
    )
    app = AriApp(cfg, cast(AriClient, NoAri()))
    call = AriCall.new(Channel("caller-1"), ())
    app.calls.add(call)
    ours, theirs = trio.socket.socketpair()
    if sndbuf:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    leg = AudioSocketLeg(trio.SocketStream(ours), AudioSocketConnection(), 30.0, 5.0)
    await theirs.send(struct.pack("!BH", 0x01, 16) + uuid.UUID(call.call_uuid).bytes)
    call_uuid = await leg.read_uuid()  # as the listener does before it asks for a claim
    async with trio.open_nursery() as nursery:
        app._nursery = nursery
        info = CallInfo(call_id="c-1", leg="audiosocket", leg_ref=call.call_uuid)
        claimed = app.claim(call_uuid, info, leg)
        assert claimed is not None
        ari_leg = claimed[1]
        assert isinstance(ari_leg, AriLeg)
        yield Claimed(call, ari_leg, theirs)
        await ari_leg.hangup("test over")
        nursery.cancel_scope.cancel()
    theirs.close()


async def frames_for(
    sock: trio.socket.SocketType, seconds: float
) -> list[tuple[float, int, bytes]]:
    """What Asterisk's end receives for ``seconds``, as (arrival, kind, payload) frames; the
    bytes must split into whole frames exactly (no frame cut short, none interleaved)."""
    data = b""
    arrivals: list[tuple[int, float]] = []  # (byte offset reached, when)
    with trio.move_on_after(seconds):
        while True:
            chunk = await sock.recv(65536)
            assert chunk, "our side closed the socket"
            data += chunk
            arrivals.append((len(data), trio.current_time()))
    frames: list[tuple[float, int, bytes]] = []
    at = 0
    while at < len(data):
        assert len(data) - at >= 3, f"a frame header cut short at byte {at}"
        kind, length = struct.unpack_from("!BH", data, at)
        assert len(data) - at - 3 >= length, f"a frame of {length} bytes cut short"
        end = at + 3 + length
        when = next(t for reached, t in arrivals if reached >= end)
        frames.append((when, kind, data[at + 3 : end]))
        at = end
    return frames


async def test_a_quiet_agent_leaves_no_read_of_asterisks_waiting(autojump_clock: object) -> None:
    """Claimed, not yet bridged, the agent silent: Asterisk gets a whole frame of silence at
    least every KEEPALIVE_GAP_S (a read stuck in its header poll is freed within that), and it
    stops once the bridge is up and Asterisk's audio has come."""
    async with claimed_call() as c:
        start = trio.current_time()
        frames = await frames_for(c.asterisk, 1.0)
        assert len(frames) >= 20, "Asterisk's read waited for a frame that never came"
        times = [start] + [t for t, _, _ in frames]
        assert max(b - a for a, b in itertools.pairwise(times)) <= KEEPALIVE_GAP_S + 0.005
        assert all(kind == SLIN8 and p == bytes(320) for _, kind, p in frames)

        c.call.bridged.set()
        # Asterisk's bridge writes the caller's audio to our channel: one 20 ms slin16 frame.
        await c.asterisk.send(struct.pack("!BH", SLIN16, 640) + bytes(640))
        assert isinstance(await c.leg.receive(), LegAudio)
        stop_by = trio.current_time() + KEEPALIVE_TAIL_S + 2 * KEEPALIVE_GAP_S + 0.005
        after = await frames_for(c.asterisk, KEEPALIVE_TAIL_S + 1.0)
        assert after, "silence stopped before the tail"
        assert all(kind == SLIN16 and p == bytes(640) for _, kind, p in after)  # its rate now
        assert max(t for t, _, _ in after) <= stop_by, "silence went on after Asterisk's audio"


async def test_the_agents_frames_go_whole_and_alone_under_short_writes(
    autojump_clock: object,
) -> None:
    """The agent's paced frames and the keep-alive share the socket: with a send buffer smaller
    than a few frames and Asterisk slow to read (every write short), every frame still arrives
    whole and in order, and no silence is slipped between frames that come every 20 ms."""
    async with claimed_call(sndbuf=1024) as c:
        c.call.bridged.set()
        sent = [bytes([n + 1]) * 320 for n in range(40)]

        async def agent() -> None:
            await trio.sleep(0.2)  # keep-alive silence first
            for frame in sent:
                await c.leg.send_audio(frame)
                await trio.sleep(0.02)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent)
            await trio.sleep(0.5)  # Asterisk not reading: the kernel's buffer fills
            frames = await frames_for(c.asterisk, 1.5)
        payloads = [p for _, kind, p in frames if kind == SLIN8]
        assert len(payloads) == len(frames)
        agents = [p for p in payloads if any(p)]
        assert agents == sent
        first, last = payloads.index(sent[0]), payloads.index(sent[-1])
        assert payloads[first : last + 1] == sent, "silence slipped between the agent's frames"
