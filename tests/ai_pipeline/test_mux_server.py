"""The agent's end of the multiplexed link (ai_pipeline/mux_server.py) against a raw client that
speaks proto/mux.py: bad records, unknown calls, a crashing or slow handler each affect their
own call only, and the echo of every other call comes through whole."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from ai_pipeline.echo import echo_call
from ai_pipeline.link import AgentLink
from proto import mux
from proto.codec import decode, encode
from proto.messages import Audio, CallStart, Error, Hangup, LinkFrame
from tests.media.conftest import agent_in_thread

FRAME = Audio(b"\x01\x00" * 320, 16000)


async def crashing_or_slow(start: CallStart, link: AgentLink) -> None:
    """``crash``: fails at its first frame; ``slow``: never reads; anything else echoes."""
    if start.call_id == "crash":
        await link.recv()
        raise RuntimeError("handler bug")
    if start.call_id == "slow":
        await asyncio.sleep(30)
    await echo_call(start, link)


@pytest.fixture
def client() -> Iterator[ClientConnection]:
    with (
        agent_in_thread(crashing_or_slow) as url,
        connect(url + mux.MUX_PATH, max_size=mux.MAX_BATCH_BYTES, close_timeout=1) as ws,
    ):
        yield ws


def opens(*calls: tuple[int, str]) -> bytes:
    return b"".join(mux.frame_record(ch, encode(CallStart(call_id=cid))) for ch, cid in calls)


def audio(*channels: int, frames: int = 1) -> bytes:
    record = encode(FRAME)
    return b"".join(mux.frame_record(ch, record) for _ in range(frames) for ch in channels)


def read_until(
    ws: ClientConnection, done: dict[int, int], closes: set[int], timeout_s: float = 10
) -> tuple[dict[int, list[LinkFrame]], dict[int, mux.CloseRecord]]:
    """Read batches until each channel in ``done`` has that many frames and each channel in
    ``closes`` has closed."""
    frames: dict[int, list[LinkFrame]] = {}
    closed: dict[int, mux.CloseRecord] = {}
    while any(len(frames.get(ch, [])) < n for ch, n in done.items()) or not closes <= closed.keys():
        message = ws.recv(timeout=timeout_s)
        assert isinstance(message, bytes)
        for record in mux.parse_batch(message):
            if isinstance(record, mux.FrameRecord):
                frame = decode(record.payload)
                assert frame is not None
                frames.setdefault(record.channel, []).append(frame)
            elif isinstance(record, mux.CloseRecord):
                closed[record.channel] = record
            else:
                raise AssertionError(record)
    return frames, closed


def test_calls_are_echoed_each_on_its_own_channel(client: ClientConnection) -> None:
    client.send(opens((1, "a"), (2, "b")) + audio(1, 2, frames=10))
    frames, _ = read_until(client, {1: 10, 2: 10}, set())
    assert frames[1] == [FRAME] * 10 and frames[2] == [FRAME] * 10
    client.send(mux.frame_record(1, encode(Hangup("bye"))))
    _, closed = read_until(client, {}, {1})
    assert closed[1].code == 1000  # the handler returned: its call is closed, 2 goes on
    client.send(audio(2))
    assert read_until(client, {2: 1}, set())[0][2] == [FRAME]


def test_a_bad_frame_ends_its_call_only(client: ClientConnection) -> None:
    client.send(opens((1, "a"), (2, "b")) + mux.frame_record(1, b"\xff\xff\xff") + audio(2))
    frames, closed = read_until(client, {2: 1}, {1})
    assert closed[1].code == 1002 and "bad frame" in closed[1].reason
    assert 1 not in frames and frames[2] == [FRAME]


def test_unknown_and_malformed_records_disturb_no_call(client: ClientConnection) -> None:
    client.send(opens((3, "a")))
    client.send(
        audio(99)  # a call never opened (and not new: 99 > 3, so it opens... as no call_start)
        + mux.HEADER.pack(3, 42, 1)  # an unknown kind for call 3: skipped, 3 goes on
        + b"x"
        + audio(3)
    )
    frames, closed = read_until(client, {3: 1}, {99})
    assert closed[99].reason == "expected call_start" and frames[3] == [FRAME]
    client.send(audio(3) + mux.HEADER.pack(3, mux.KIND_FRAME, 50)[:5])  # a cut header
    assert read_until(client, {3: 1}, set())[0][3] == [FRAME]  # the records before it stand
    client.send(audio(2) + audio(99) + audio(3))  # 2 and 99: over or refused, not new
    assert read_until(client, {3: 1}, set())[0] == {3: [FRAME]}


def test_a_crashing_handler_ends_its_call_with_an_error(client: ClientConnection) -> None:
    client.send(opens((1, "crash"), (2, "b")) + audio(1, 2))
    frames, closed = read_until(client, {1: 1, 2: 1}, {1})
    assert frames[1] == [Error("internal", "RuntimeError", fatal=True)]
    assert closed[1].code == 1011 and frames[2] == [FRAME]
    client.send(audio(2, frames=3))
    assert read_until(client, {2: 3}, set())[0][2] == [FRAME] * 3


def test_a_call_that_does_not_read_stalls_no_other(client: ClientConnection) -> None:
    client.send(opens((1, "slow"), (2, "b")))
    for _ in range(40):  # 8 s of audio for each: far more than the slow call's inbox holds
        client.send(audio(1, 2, frames=10))
    frames, _ = read_until(client, {2: 400}, set())
    assert len(frames[2]) == 400 and 1 not in frames
