"""media.message_socket: the in-memory pair and the bounded helpers every WebSocket leg uses."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from media.leg import LegError
from media.message_socket import (
    CLOSE_POLICY_VIOLATION,
    NOWAIT_STREAK,
    MessageSocketClosed,
    accept_within,
    close_quietly,
    memory_socket_pair,
    receive_within,
    relay,
    send_within,
)


async def test_pair_carries_text_and_binary_both_ways() -> None:
    a, b = memory_socket_pair()
    await a.send("hello")
    await b.send(b"\x00\x01")
    assert await b.receive() == "hello"
    assert await a.receive() == b"\x00\x01"


async def test_close_reaches_the_peer_with_its_code() -> None:
    a, b = memory_socket_pair()
    await a.send("last")
    await a.close(CLOSE_POLICY_VIOLATION, "bad_json")
    assert await b.receive() == "last"  # what was sent before the close still arrives
    with pytest.raises(MessageSocketClosed) as info:
        await b.receive()
    assert (info.value.code, info.value.reason) == (CLOSE_POLICY_VIOLATION, "bad_json")
    with pytest.raises(MessageSocketClosed):
        await b.send("too late")
    with pytest.raises(MessageSocketClosed):
        await a.send("too late")
    await a.close()  # idempotent
    await close_quietly(b, 1000, "again")  # never raises
    assert b.close_code == CLOSE_POLICY_VIOLATION


async def test_send_within_gives_up_on_a_peer_that_never_reads(autojump_clock: object) -> None:
    a, _b = memory_socket_pair(capacity=1)
    await send_within(a, "fits", 1.0)
    start = trio.current_time()
    with pytest.raises(LegError) as info:
        await send_within(a, "blocks", 2.0)
    assert info.value.reason == "send_timeout"
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_send_within_on_a_closed_socket_is_closed() -> None:
    a, b = memory_socket_pair()
    await b.close()
    with pytest.raises(LegError) as info:
        await send_within(a, "x", 1.0)
    assert info.value.reason == "closed"


async def test_receive_within_times_out(autojump_clock: object) -> None:
    a, _b = memory_socket_pair()
    with pytest.raises(LegError) as info:
        await receive_within(a, 5.0)
    assert info.value.reason == "idle_timeout"


def _until_go(message: str | bytes) -> str | None:
    if message == "bad":
        raise LegError("bad_thing")
    return "started" if message == "go" else None


async def test_accept_within_feeds_until_a_result() -> None:
    a, b = memory_socket_pair()
    for message in ("wait", b"\x00", "go"):
        await b.send(message)
    assert await accept_within(a, 1.0, _until_go) == "started"


@pytest.mark.parametrize(
    ("messages", "reason", "close_code"),
    [(["bad"], "bad_thing", CLOSE_POLICY_VIOLATION), ([], "start_timeout", CLOSE_POLICY_VIOLATION)],
)
async def test_accept_within_closes_on_errors(
    autojump_clock: object, messages: list[str], reason: str, close_code: int
) -> None:
    a, b = memory_socket_pair()
    for message in messages:
        await b.send(message)
    with pytest.raises(LegError) as info:
        await accept_within(a, 5.0, _until_go)
    assert info.value.reason == reason
    with pytest.raises(MessageSocketClosed) as closed:
        await b.receive()
    assert closed.value.code == close_code


async def test_accept_within_when_the_peer_leaves() -> None:
    a, b = memory_socket_pair()
    await b.close()
    with pytest.raises(LegError) as info:
        await accept_within(a, 1.0, _until_go)
    assert info.value.reason == "closed"


async def test_relay_pumps_both_ways_and_passes_the_legs_close_code() -> None:
    client, outer = memory_socket_pair()
    leg_end, inner = memory_socket_pair(4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, outer, inner)
        await client.send("from client")
        assert await leg_end.receive() == "from client"
        await leg_end.send(b"\x01\x02")
        assert await client.receive() == b"\x01\x02"
        await leg_end.close(CLOSE_POLICY_VIOLATION, "bad_json")
    assert await client.until_closed() == ([], CLOSE_POLICY_VIOLATION)


async def test_relay_turns_a_transport_cancel_into_a_close_the_leg_sees() -> None:
    _client, outer = memory_socket_pair()
    leg_end, inner = memory_socket_pair(4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, outer, inner)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # what Quart-Trio does when the client disconnects
    assert await leg_end.until_closed() == ([], 1001)


async def test_relay_keeps_the_leg_free_of_a_transport_that_blocks(autojump_clock: object) -> None:
    _client, outer = memory_socket_pair(capacity=0)  # nobody ever reads the client side
    leg_end, inner = memory_socket_pair(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay, outer, inner)
        with pytest.raises(LegError) as info:
            for _ in range(10):
                await send_within(leg_end, "agent audio", 1.0)
        assert info.value.reason == "send_timeout"
        nursery.cancel_scope.cancel()


async def test_a_leg_that_keeps_finding_messages_still_lets_others_run() -> None:
    """Messages already waiting are taken (and handed over) without a scheduling round, but
    every NOWAIT_STREAK-th one waits once: one busy call cannot hold the loop."""
    a, b = memory_socket_pair()
    n = 4 * NOWAIT_STREAK
    for i in range(n):
        await b.send(str(i))
    turns: list[str] = []

    async def other_call() -> None:
        while True:
            turns.append("o")
            await trio.lowlevel.checkpoint()

    def others_turns() -> int:
        """How often the other call ran meanwhile: about once each time the leg yielded."""
        count = turns.count("o")
        turns.clear()
        return count

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_call)
        await trio.lowlevel.checkpoint()  # let it start
        turns.clear()
        for i in range(n):
            assert await receive_within(a, 1.0) == str(i)
            turns.append("l")
        received = others_turns()
        for i in range(n):
            await send_within(a, str(i), 1.0)
            turns.append("l")
        sent = others_turns()
        nursery.cancel_scope.cancel()
    assert [await b.receive() for _ in range(n)] == [str(i) for i in range(n)]
    for others in (received, sent):
        # It ran every NOWAIT_STREAK messages or so (a yield is one or two scheduling rounds),
        # neither never nor after every message.
        assert 1 <= others <= 2 * (n // NOWAIT_STREAK) + 1, others
