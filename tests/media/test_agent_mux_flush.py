"""The multiplexed agent link's writes (media/agent_mux.py): caller audio added over several
scheduling rounds leaves in one message once the flush interval has passed, and a call's
start, other frames and close are not held back for company."""

from __future__ import annotations

from typing import cast

import trio
import trio.testing

from media.agent_mux import FLUSH_S, AgentMux, MuxSocket
from proto import messages as m
from proto import mux
from proto.codec import decode


class WrittenSocket:
    """What :class:`AgentMux` writes through, kept (the kernel takes everything at once)."""

    has_unsent = False

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def send_message_nowait(self, message: bytes) -> bool:
        self.messages.append(message)
        return True


def frames_of(message: bytes) -> list[tuple[int, m.LinkFrame | None]]:
    records = mux.parse_batch(message)
    return [(r.channel, decode(r.payload)) for r in records if isinstance(r, mux.FrameRecord)]


async def test_audio_of_many_rounds_leaves_in_one_message(
    mock_clock: trio.testing.MockClock,
) -> None:
    socket = WrittenSocket()
    conn = AgentMux("ws://agent", cast(MuxSocket, socket), send_timeout_s=1.0)
    links = [conn.open_link(queue_bytes=64000) for _ in range(5)]
    for round_no in range(3):  # frames of five calls arriving over three scheduling rounds
        for link in links:
            assert link.send_nowait(m.Audio(bytes([round_no]) * 640, 16000))
        await trio.lowlevel.checkpoint()
    await trio.testing.wait_all_tasks_blocked()
    assert socket.messages == []  # (the clock stands still: the interval has not passed)
    mock_clock.jump(FLUSH_S)
    await trio.testing.wait_all_tasks_blocked()
    assert len(socket.messages) == 1
    frames = frames_of(socket.messages[0])
    assert [channel for channel, _ in frames] == [link.channel for link in links] * 3
    assert all(link.queued_bytes == 0 for link in links)  # written: each call may add again


async def test_a_calls_other_frames_and_its_close_go_at_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    socket = WrittenSocket()
    conn = AgentMux("ws://agent", cast(MuxSocket, socket), send_timeout_s=1.0)
    waiting, ending = conn.open_link(queue_bytes=64000), conn.open_link(queue_bytes=64000)
    assert waiting.send_nowait(m.Audio(bytes(640), 16000))
    await ending.send(m.Hangup(reason="caller hung up"))
    await ending.aclose(1000, "bye")
    await trio.testing.wait_all_tasks_blocked()
    assert len(socket.messages) == 1  # with the clock standing still
    records = mux.parse_batch(socket.messages[0])
    assert [type(r).__name__ for r in records] == ["FrameRecord", "FrameRecord", "CloseRecord"]
    assert frames_of(socket.messages[0])[1] == (ending.channel, m.Hangup(reason="caller hung up"))
    mock_clock.jump(FLUSH_S)  # the audio's own slot comes: nothing is left to write
    await trio.testing.wait_all_tasks_blocked()
    assert len(socket.messages) == 1
