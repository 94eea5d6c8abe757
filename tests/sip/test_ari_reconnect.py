"""The ARI connection's faults against a real Asterisk: the events socket drops (through a TCP
proxy we cut), a caller hangs up while it is down, callbridge restarts with callers in Stasis,
Asterisk restarts mid-call, wrong credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from sip.ari import requests as rq
from sip.ari.client import AriClient
from sip.ari.events import AriEvent
from sip.ari.events_socket import AriAuthError
from tests.asterisk_instance import (
    ARI_APP,
    ARI_PASSWORD,
    ARI_USER,
    Asterisk,
    running_asterisk,
    write_wav,
)
from tests.sip.ari_harness import ari_bench, caller_dialplan, require_asterisk, tone_pcm16

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(700.0, 1.5))
    with running_asterisk(lambda root: caller_dialplan(root, wav)) as ast:
        yield ast


class Proxy:
    """A TCP proxy to Asterisk's HTTP port whose connections the test can cut (and refuse)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0  # connections made through it
        self.refuse = False
        self.flowing = trio.Event()  # cleared: bytes wait (a stalled Asterisk)
        self.flowing.set()
        self._scopes: list[trio.CancelScope] = []

    async def serve(self, *, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.refuse:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._scopes.append(scope)
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            async with client, upstream, trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, upstream)
                nursery.start_soon(self._pipe, upstream, client)
        self._scopes.remove(scope)

    def cut(self) -> None:
        for scope in self._scopes:
            scope.cancel()

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                await self.flowing.wait()
                await dst.send_all(data)
        except trio.BrokenResourceError:
            pass
        await dst.send_eof()


@asynccontextmanager
async def proxied(asterisk: Asterisk) -> AsyncIterator[tuple[Asterisk, Proxy]]:
    proxy = Proxy(asterisk.http_port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield replace_port(asterisk, proxy.port), proxy
        nursery.cancel_scope.cancel()


def replace_port(asterisk: Asterisk, port: int) -> Asterisk:
    seen = Asterisk(asterisk.root, port)
    seen.proc = asterisk.proc
    return seen


async def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    with trio.fail_after(timeout_s):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.05)


async def test_events_socket_drop_reconnects_and_the_call_goes_on(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with proxied(asterisk) as (via_proxy, proxy), ari_bench(via_proxy, echo_agent) as bench:
        await bench.originate("hold")
        [call_id] = await bench.wait_running()
        await bench.wait_bridged()
        client = bench.app.client
        proxy.cut()
        await wait_for(lambda: client.connects == 2)
        assert bench.env.registry.get(call_id) is not None, "the drop ended the call"
        handle = bench.env.registry.get(call_id)
        assert handle is not None
        handle.hangup("api")  # ARI works again: the hangup reaches Asterisk
        await bench.wait_ended()
        await bench.wait_asterisk_idle()
    assert bench.hooks.hungup[0][1] == "api"


async def test_caller_gone_while_disconnected_ends_the_call_on_reconnect(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with proxied(asterisk) as (via_proxy, proxy), ari_bench(via_proxy, echo_agent) as bench:
        await bench.originate("hold")
        await bench.wait_running()
        await bench.wait_bridged()
        caller = bench.hooks.created[0].params["asterisk_channel"]
        proxy.refuse = True
        proxy.cut()
        await wait_for(lambda: not bench.app.client.connected)
        await trio.to_thread.run_sync(asterisk.rx, f"channel request hangup {caller}")
        await trio.sleep(1.0)
        assert not bench.hooks.hungup, "nothing could tell the call while ARI was down"
        assert bench.counter("callbridge_ari_connected") == 0
        proxy.refuse = False
        await bench.wait_ended()
        await bench.wait_asterisk_idle()
        assert bench.counter("callbridge_ari_connects_total") == 2
    assert bench.hooks.hungup[0][2] == "asterisk: the caller's channel is gone"


async def test_callbridge_restart_adopts_callers_still_in_stasis(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with ari_bench(asterisk, echo_agent) as first:
        await first.originate("hold")
        await first.wait_running()
    assert first.hooks.hungup[0][1] == "shutdown"
    caller = first.hooks.created[0].params["asterisk_channel"]
    assert caller in {c["id"] for c in asterisk.channels()}, "shutdown hung up the caller"
    async with ari_bench(asterisk, echo_agent) as second:
        await second.wait_running()
        info = second.hooks.created[0]
        assert info.params["asterisk_channel"] == caller
        assert info.params["agent_id"] == "42"
        await trio.to_thread.run_sync(asterisk.rx, f"channel request hangup {caller}")
        await second.wait_ended()
        await second.wait_asterisk_idle()
    assert second.hooks.hungup[0][1] == "caller"


async def test_asterisk_restart_ends_calls_cleanly_and_reconnects(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with ari_bench(asterisk, echo_agent) as bench:
        await bench.originate("hold")
        await bench.wait_running()
        await trio.to_thread.run_sync(asterisk.stop)
        await bench.wait_ended()
        await wait_for(lambda: not bench.app.client.connected)
        await trio.to_thread.run_sync(asterisk.start)
        await wait_for(lambda: bench.app.client.connects == 2, timeout_s=15)
        await bench.originate("hold")
        await bench.wait_running()
    assert bench.hooks.hungup[0][1] in ("caller", "error")
    assert len(bench.hooks.created) == 2


async def test_wrong_password_is_a_clear_start_up_error(asterisk: Asterisk) -> None:
    client = AriClient(f"{asterisk.base_url}/ari", ARI_USER, "wrong", ARI_APP)

    async def nothing(*_: object) -> None:
        return None

    with pytest.raises(ExceptionGroup) as err, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run, nothing, nothing)
    assert err.group_contains(AriAuthError, match="refused the ARI credentials")


async def test_asterisk_down_at_start_is_retried(echo_agent: str, tmp_path: Path) -> None:
    require_asterisk()
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(700.0, 1.0))
    with running_asterisk(lambda root: caller_dialplan(root, wav)) as asterisk:
        asterisk.stop()
        async with ari_bench(asterisk, echo_agent) as bench:
            assert not bench.app.client.connected and bench.app.client.last_error
            await trio.to_thread.run_sync(asterisk.start)
            await wait_for(lambda: bench.app.client.connected, timeout_s=15)
            await bench.originate("hold")
            await bench.wait_running()


async def test_a_stalled_asterisk_never_holds_up_the_media_core(
    asterisk: Asterisk, echo_agent: str
) -> None:
    """ARI answers nothing for a while: an API hangup and the agent's DTMF still act at once
    in the media core; the ARI work waits in its queue and reaches Asterisk once it answers."""
    async with proxied(asterisk) as (via_proxy, proxy), ari_bench(via_proxy, echo_agent) as bench:
        await bench.originate("hold")
        [call_id] = await bench.wait_running()
        await bench.wait_bridged()
        handle = bench.env.registry.get(call_id)
        assert handle is not None
        proxy.flowing = trio.Event()  # Asterisk's HTTP server stalls
        started = trio.current_time()
        handle.send_dtmf("1")
        handle.hangup("api")
        await bench.wait_ended(timeout_s=5)
        ended_s = trio.current_time() - started
        caller = bench.hooks.created[0].params["asterisk_channel"]
        still_up = caller in {c["id"] for c in asterisk.channels()}  # ARI did not get through
        proxy.flowing.set()
        await bench.wait_asterisk_idle(timeout_s=15)
    assert bench.hooks.hungup[0][1] == "api" and still_up
    # Waiting on ARI would take the call's whole cleanup bound (2 s) or the REST deadline (5 s).
    assert ended_s < 1.0, "the call waited on ARI"


async def test_a_failing_event_handler_costs_that_event_only(asterisk: Asterisk) -> None:
    """A bug in handling one event must not close the events socket (and every call with it)."""
    client = AriClient(f"{asterisk.base_url}/ari", ARI_USER, ARI_PASSWORD, ARI_APP)
    seen: list[AriEvent] = []

    async def on_event(event: AriEvent) -> None:
        seen.append(event)
        if len(seen) == 1:
            raise RuntimeError("a bug in one handler")

    async def nothing() -> None:
        return None

    async with trio.open_nursery() as nursery:
        await nursery.start(client.run, nothing, on_event)
        originate = "channel originate Local/hold@caller/n extension 5551234@incoming"
        await trio.to_thread.run_sync(asterisk.rx, originate)
        await wait_for(lambda: len(seen) >= 1)
        await trio.to_thread.run_sync(asterisk.rx, originate)  # a second StasisStart
        await wait_for(lambda: len(seen) >= 2)
        nursery.cancel_scope.cancel()
    assert (client.handler_errors, client.connects) == (1, 1)


async def test_rest_calls_share_kept_alive_connections(asterisk: Asterisk) -> None:
    """REST calls one after another go over one connection; calls at once each take one, and
    those are kept too; a kept connection that the far end closed is replaced, and the call
    made on it still succeeds."""
    async with proxied(asterisk) as (via_proxy, proxy):
        client = AriClient(f"{via_proxy.base_url}/ari", ARI_USER, ARI_PASSWORD, ARI_APP)
        for _ in range(10):
            assert (await client.call(rq.info()))["system"]["version"]
        sequential = proxy.accepted
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(client.call, rq.list_channels())
        at_once = proxy.accepted
        for _ in range(6):
            await client.call(rq.list_bridges())
        kept = proxy.accepted
        proxy.cut()  # Asterisk closes the kept connections (its keep-alive ran out)
        assert await client.call(rq.list_channels()) == []
        await client.aclose()
    assert (sequential, at_once, kept) == (1, 3, 3)
    assert proxy.accepted == 4 == client.http.opened
