"""The media core's end of the multiplexed agent link (media/agent_mux.py): every call to one
agent process over one connection, a bad record from the agent ends its call only, and an agent
that dies ends each of its calls cleanly while the next call connects afresh."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio
from websockets.asyncio.server import Server, ServerConnection, serve

from ai_pipeline.echo import echo_call
from ai_pipeline.server import AgentServer
from proto import mux
from proto.codec import decode, encode
from proto.messages import Audio
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import Media, start_media
from tests.media.test_bad_peers import good_call


@contextmanager
def server_in_thread(
    start: Callable[[], Awaitable[Server]],
) -> Iterator[tuple[str, Server, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        state["server"] = loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        for conn in state["server"].connections:
            conn.transport.abort()
        state["server"].close()
        loop.run_until_complete(state["server"].wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="agent", daemon=True)
    thread.start()
    assert ready.wait(10)
    server: Server = state["server"]
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", server, loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


async def echo_call_through(media: Media) -> tuple[float, int]:
    """A caller's second of tone and its whole echo (test_bad_peers' good call): SNR, bytes."""
    results: list[tuple[float, int]] = []
    await good_call(media, results)
    return results[0]


async def calls_while(media: Media, n: int, check: Callable[[], object]) -> list[tuple[float, int]]:
    """``n`` echo calls at once; ``check`` runs while they are all up."""
    results: list[tuple[float, int]] = []

    async def one() -> None:
        results.append(await echo_call_through(media))

    async with trio.open_nursery() as calls:
        for _ in range(n):
            calls.start_soon(one)
        await trio.sleep(0.5)
        check()
    return results


def assert_one_mux_connection(*servers: Server) -> None:
    for server in servers:
        paths = [c.request.path for c in server.connections if c.request is not None]
        assert paths == [mux.MUX_PATH], paths


async def test_every_call_goes_over_one_connection(nursery: trio.Nursery) -> None:
    def start() -> Awaitable[Server]:
        return AgentServer(echo_call).start("127.0.0.1", 0)

    with server_in_thread(start) as (url, server, _):
        media = await start_media(nursery, url, agent_link="mux")
        results = await calls_while(media, 5, lambda: assert_one_mux_connection(server))
    assert len(results) == 5 and all(snr > 30 and n >= 16000 for snr, n in results), results


async def rogue_agent(ws: ServerConnection) -> None:
    """Echoes every call's audio, but feeds channel 1 a frame that is no protobuf after its
    fifth echo, and adds records for a call it was never given and of a kind nobody knows."""
    echoed: dict[int, int] = {}
    async for message in ws:
        assert isinstance(message, bytes)
        out: list[bytes] = []
        for record in mux.parse_batch(message):
            if not isinstance(record, mux.FrameRecord):
                continue
            if isinstance(decode(record.payload), Audio):
                echoed[record.channel] = echoed.get(record.channel, 0) + 1
                out.append(mux.frame_record(record.channel, record.payload))
                if record.channel == 1 and echoed[1] == 5:
                    out.append(mux.frame_record(1, b"\xff\xff\xff"))
                    out.append(mux.frame_record(777, encode(Audio(bytes(640), 16000))))
                    out.append(mux.HEADER.pack(2, 42, 2) + b"??")
        if out:
            await ws.send(b"".join(out))


async def test_a_bad_frame_from_the_agent_ends_only_its_call(nursery: trio.Nursery) -> None:
    async def start() -> Server:
        return await serve(rogue_agent, "127.0.0.1", 0, max_size=mux.MAX_BATCH_BYTES)

    with server_in_thread(start) as (url, _, _):
        media = await start_media(nursery, url, agent_link="mux")
        first = await AsteriskPeer.connect(media.port)  # channel 1
        async with trio.open_nursery() as n:
            n.start_soon(first.read_until_closed)
            n.start_soon(first.play, bytes(320 * 100))
            with trio.fail_after(5):
                await media.hooks.ended.wait()
            snr, nbytes = await echo_call_through(media)  # channel 2, after the bad frames
            n.cancel_scope.cancel()
    assert first.got_hangup_frame()
    first_id = media.hooks.created[0].call_id
    assert (first_id, "error", "agent link bad_frame") in media.hooks.hungup
    assert media.counter("callbridge_link_errors_total", reason="bad_frame") == 1
    assert snr > 30 and nbytes >= 16000  # the other call never noticed


async def test_an_agent_that_dies_ends_its_calls_and_the_next_call_reconnects(
    nursery: trio.Nursery,
) -> None:
    def start() -> Awaitable[Server]:
        return AgentServer(echo_call).start("127.0.0.1", 0)

    with server_in_thread(start) as (url, server, loop):
        media = await start_media(nursery, url, agent_link="mux")
        peers = [await AsteriskPeer.connect(media.port) for _ in range(3)]
        async with trio.open_nursery() as n:
            for peer in peers:
                n.start_soon(peer.read_until_closed)
                n.start_soon(peer.play, bytes(320 * 500))
            await trio.sleep(0.5)
            for conn in list(server.connections):  # as a crash would: no close, no goodbye
                loop.call_soon_threadsafe(conn.transport.abort)
            with trio.fail_after(5):
                while len(media.hooks.hungup) < 3:
                    await trio.sleep(0.05)
            n.cancel_scope.cancel()
        # (whichever of the call's link reader and its sender notices first says why)
        assert all(h[1] == "error" for h in media.hooks.hungup), media.hooks.hungup
        assert {h[2] for h in media.hooks.hungup} <= {"agent link closed", "agent link lost"}
        assert all(peer.got_hangup_frame() for peer in peers)
        snr, nbytes = await echo_call_through(media)  # a new connection for the next call
    assert snr > 30 and nbytes >= 16000


async def test_several_agent_processes_get_one_connection_each(nursery: trio.Nursery) -> None:
    def start() -> Awaitable[Server]:
        return AgentServer(echo_call).start("127.0.0.1", 0)

    with server_in_thread(start) as (url_a, a, _), server_in_thread(start) as (url_b, b, _):
        media = await start_media(nursery, f"{url_a},{url_b}", agent_link="mux")
        # the calls are spread over both agents, each agent holding one connection
        results = await calls_while(media, 6, lambda: assert_one_mux_connection(a, b))
    assert len(results) == 6 and all(snr > 30 and n >= 16000 for snr, n in results), results
