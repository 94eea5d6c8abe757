"""The inter-node media link (:mod:`media.bridge_link`) in one process: a holder's bridge with
one local participant and one over a link (two connected in-memory WebSockets carrying the
real frames). What each side hears, who is told what when the holder takes the call out or the
call leaves, and a link that breaks, goes silent or speaks nonsense: the call goes where its
conference says and the bridge's other participants go on."""

from __future__ import annotations

import numpy as np
import trio

from media.bridge import Bridge
from media.bridge_core import BridgeEvent, Left
from media.bridge_link import LINK_SILENT_S, LinkedParticipant, MessageFrames, RemoteBridge
from media.message_socket import memory_socket_pair
from media.mixer import FRAME_SAMPLES

FRAME_S = 0.02


def frame(value: int) -> bytes:
    return np.full(FRAME_SAMPLES, value, "<i2").tobytes()


class Ends:
    """A holder's bridge with local participant ``local`` (it talks: 1000 in every sample),
    and ``remote``'s call on the other end of a link."""

    def __init__(self, nursery: trio.Nursery, on_leave: str = "agent") -> None:
        self.events: list[BridgeEvent] = []
        self.bridge = Bridge("conf-1", tones=False, on_event=self.events.append)
        self.local_heard: list[bytes] = []
        self.remote_heard: list[bytes] = []
        self.gone: list[str] = []
        self.local = self.bridge.join("local", lambda pcm, _: self.local_heard.append(pcm))
        self.holder_end, self.call_end = memory_socket_pair(capacity=64)
        self.linked = LinkedParticipant(self.bridge, "remote", MessageFrames(self.holder_end))
        self.remote = RemoteBridge(
            "conf-1", MessageFrames(self.call_end), on_leave, self.gone.append
        )
        self.port = self.remote.join("remote", lambda pcm, _: self.remote_heard.append(pcm))
        self.nursery = nursery

    async def start(self) -> None:
        self.nursery.start_soon(self.bridge.run)
        self.nursery.start_soon(self.linked.serve)
        await self.nursery.start(self.remote.run)
        self.nursery.start_soon(self._talk)

    async def _talk(self) -> None:
        while True:  # both callers talk, a frame every 20 ms: local at 1000, remote at 300
            self.local.uplink(frame(1000))
            if "remote" in self.remote.participants:
                self.port.uplink(frame(300))
            await trio.sleep(FRAME_S)


def level(frames: list[bytes]) -> int:
    return int(np.median([np.frombuffer(f, "<i2").max() for f in frames])) if frames else 0


async def test_each_side_hears_the_other_and_not_itself(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery)
        await ends.start()
        await trio.sleep(1.0)
        assert "remote" in ends.bridge.participants and ends.remote.participants == ("remote",)
        # (N-1 mixing: each hears the other only; 2 participants get the other's frame as is)
        assert level(ends.local_heard[-20:]) == 300
        assert level(ends.remote_heard[-20:]) == 1000
        assert len(ends.remote_heard) >= 40  # a frame every tick, over the link
        nursery.cancel_scope.cancel()


async def test_taken_out_by_the_holder_the_call_goes_where_it_is_told(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery, on_leave="agent")
        await ends.start()
        await trio.sleep(0.5)
        ends.linked.take_out("hangup")
        await trio.sleep(0.5)
        assert ends.gone == ["hangup"] and not ends.remote.lost
        assert "remote" not in ends.bridge.participants
        assert Left("remote") in ends.events
        nursery.cancel_scope.cancel()


async def test_a_call_that_leaves_tells_the_holder(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery)
        await ends.start()
        await trio.sleep(0.5)
        ends.remote.leave("remote")  # (the call hung up, or its node took it out)
        await trio.sleep(0.2)
        assert Left("remote") in ends.events and "remote" not in ends.bridge.participants
        assert ends.gone == []  # it left by itself: nobody moves it
        heard = len(ends.local_heard)
        await trio.sleep(0.5)
        assert len(ends.local_heard) - heard >= 20  # the local participant goes on
        nursery.cancel_scope.cancel()


async def test_a_broken_link_sends_the_call_by_on_leave(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery, on_leave="hangup")
        await ends.start()
        await trio.sleep(0.5)
        ends.holder_end.close_now(1006, "holder gone")  # a reset: the holder's process died
        await trio.sleep(0.1)
        assert ends.gone == ["hangup"] and ends.remote.lost
        nursery.cancel_scope.cancel()


async def test_a_silent_holder_is_a_lost_one(autojump_clock: trio.abc.Clock) -> None:
    """A holder whose box vanished sends no reset: LINK_SILENT_S without a frame ends it."""
    _holder_end, call_end = memory_socket_pair(capacity=64)  # (the holder never sends)
    gone: list[str] = []
    remote = RemoteBridge("conf-1", MessageFrames(call_end), "agent", gone.append)
    remote.join("remote", lambda pcm, _: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(remote.run)
        await trio.sleep(LINK_SILENT_S - 0.1)
        assert gone == []
        await trio.sleep(0.2)
        assert gone == ["agent"] and remote.lost


async def test_nonsense_on_the_link_ends_that_participant_only(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery)
        await ends.start()
        await trio.sleep(0.5)
        await ends.call_end.send("not a frame")  # a text message: not this protocol
        await trio.sleep(0.2)
        assert "remote" not in ends.bridge.participants and Left("remote") in ends.events
        assert ends.gone == ["agent"]  # the call's end sees the link close
        heard = len(ends.local_heard)
        await trio.sleep(0.5)
        assert len(ends.local_heard) - heard >= 20
        nursery.cancel_scope.cancel()


async def test_a_refused_link_is_never_linked(autojump_clock: trio.abc.Clock) -> None:
    """A holder that does not know the ticket closes at once (control/conference_links.py):
    the call's node sees no first frame, so it does not move the call (the API says why). Its
    join knows at once (``settled``), not after LINK_CONNECT_S: a join carried to the call's
    node as a command must answer within the command's 2 s."""
    holder_end, call_end = memory_socket_pair(capacity=64)
    remote = RemoteBridge("conf-1", MessageFrames(call_end), "agent", lambda then: None)
    async with trio.open_nursery() as nursery:
        await nursery.start(remote.run)
        await holder_end.close(4401, "unauthorized: no such conference link")
        with trio.fail_after(0.1):
            await remote.settled.wait()
    assert not remote.linked.is_set() and remote.lost
    async with trio.open_nursery() as nursery:
        ends = Ends(nursery)
        await ends.start()
        with trio.fail_after(0.1):
            await ends.remote.settled.wait()  # a holder that took it sends its mix at once
        assert ends.remote.linked.is_set()
        nursery.cancel_scope.cancel()
