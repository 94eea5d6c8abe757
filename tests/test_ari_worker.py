"""``serve --workers N --ari`` without Asterisk or Redis: where worker 0's ExternalMedia listener
is bound, the role that hands it over, and the requests another worker carries to worker 0's ARI
app (callbridge/ari_worker.py) over an in-memory stand-in for the Redis transport."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import trio

from callbridge.ari_worker import AriAtWorkerZero, ari_commands, ari_executor, ari_media_address
from callbridge.workers import NO_FD, ROLE_ENV, WorkerRole
from control.call_commands import CallCommands, Holder, Reply
from media.config import HostPort
from sip.ari.app import AriApp
from sip.ari.client import AriUnavailable
from sip.ari.config import AriConfig
from sip.outbound import OriginateRefused
from tests.sip.test_workers_sip import serve_refuses


class Channels:
    """Pub/sub between the workers of one test: a message reaches the inbox's listener."""

    def __init__(self) -> None:
        self.listeners: dict[str, Callable[[str], None]] = {}

    async def publish(self, channel: str, message: str) -> int:
        listener = self.listeners.get(channel)
        if listener is None:
            return 0
        listener(message)
        return 1

    async def listen(
        self,
        channel: str,
        on_message: Callable[[str], None],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.listeners[channel] = on_message
        task_status.started()
        await trio.sleep_forever()


@dataclass
class FakeOutbound:
    answer: str | OriginateRefused = "call-1"
    takes_s: float = 0.0
    asked: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        self.asked.append((source, destination, dict(params)))
        await trio.sleep(self.takes_s)
        if isinstance(self.answer, OriginateRefused):
            raise self.answer
        return self.answer


@dataclass
class FakeConferences:
    ended: list[str] = field(default_factory=list)

    async def join(self, call_id: str, conference_id: str) -> str:
        if call_id != "ari-call":
            raise LookupError(f"call {call_id} is not a live Asterisk call")
        return f"cbc-{conference_id}"

    async def end(self, conference_id: str) -> None:
        self.ended.append(conference_id)


@dataclass
class FakeClient:
    connected: bool = True

    async def check_ready(self) -> None:
        if not self.connected:
            raise AriUnavailable("events socket down")


@dataclass
class FakeApp:
    outbound: FakeOutbound = field(default_factory=FakeOutbound)
    conferences: FakeConferences = field(default_factory=FakeConferences)
    client: FakeClient = field(default_factory=FakeClient)


ARI = AriConfig(url="http://127.0.0.1:8088/ari", user="u", password="p")
QUICK_S = 0.05  # the call commands' usual wait: far shorter than an originate's


def base(transport: Channels, worker_id: int) -> CallCommands:
    async def unused(_target: str, _op: str, _args: dict[str, Any]) -> Reply:
        raise AssertionError("only ARI requests here")

    return CallCommands(Holder("box", worker_id), unused, transport, timeout_s=QUICK_S)


async def worker_1(nursery: trio.Nursery, app: FakeApp | None) -> AriAtWorkerZero:
    """Worker 1's end, and worker 0's serving ``app`` (none: worker 0 is down)."""
    transport = Channels()
    if app is not None:
        zero = ari_commands(base(transport, 0), "", ari_executor(cast(AriApp, app)))
        await nursery.start(zero.serve)
    one = ari_commands(base(transport, 1), "", ari_executor(cast(AriApp, FakeApp())))
    await nursery.start(one.serve)
    return AriAtWorkerZero(one, ARI)


async def test_an_originate_on_worker_1_is_placed_by_worker_0s_app_with_its_answer() -> None:
    app = FakeApp(FakeOutbound(takes_s=4 * QUICK_S))  # rings longer than a command's usual wait
    async with trio.open_nursery() as nursery:
        zero = await worker_1(nursery, app)
        assert await zero.originate("+1555", "+1666", {"agent_id": "a1"}) == "call-1"
        app.outbound.answer = OriginateRefused(504, "no_answer", "no answer in 30 s")
        with pytest.raises(OriginateRefused) as refused:
            await zero.originate("+1555", "+1666", {})
        nursery.cancel_scope.cancel()
    assert (refused.value.status, refused.value.code) == (504, "no_answer")
    assert app.outbound.asked[0] == ("+1555", "+1666", {"agent_id": "a1"})


async def test_without_worker_0_an_originate_is_refused_503() -> None:
    async with trio.open_nursery() as nursery:
        zero = await worker_1(nursery, None)
        with pytest.raises(OriginateRefused) as refused:
            await zero.originate("+1555", "+1666", {})
        nursery.cancel_scope.cancel()
    assert (refused.value.status, refused.value.code) == (503, "holder_unavailable")


async def test_conference_joins_and_ends_on_worker_1_run_in_worker_0s_app() -> None:
    app = FakeApp()
    async with trio.open_nursery() as nursery:
        zero = await worker_1(nursery, app)
        assert await zero.join("ari-call", "conf-1") == "cbc-conf-1"
        with pytest.raises(Exception, match="not a live Asterisk call"):
            await zero.join("sip-call", "conf-1")
        await zero.end("conf-1")
        nursery.cancel_scope.cancel()
    assert app.conferences.ended == ["conf-1"]


async def test_worker_1s_ready_check_is_worker_0s_apps() -> None:
    app = FakeApp()
    async with trio.open_nursery() as nursery:
        zero = await worker_1(nursery, app)
        await zero.check_ready()
        app.client.connected = False
        with pytest.raises(AriUnavailable, match="events socket down"):
            await zero.check_ready()
        nursery.cancel_scope.cancel()


def test_worker_0s_media_listener_is_its_own_port_on_the_audiosocket_host() -> None:
    audiosocket = HostPort("10.0.0.5", 9000)
    assert ari_media_address(audiosocket, HostPort("10.0.0.5", 9000)) == HostPort("10.0.0.5", 0)
    assert ari_media_address(audiosocket, HostPort("pbx.example", 9100)) == HostPort(
        "10.0.0.5", 9100
    )


def test_the_role_carries_the_ari_listener_and_older_roles_still_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    role = WorkerRole(0, 3, 4, 5, 6, NO_FD, 7)
    monkeypatch.setenv(ROLE_ENV, str(role))
    assert WorkerRole.from_environ() == role
    monkeypatch.setenv(ROLE_ENV, "1,3,4,5,6,8")
    assert WorkerRole.from_environ() == WorkerRole(1, 3, 4, 5, 6, 8, NO_FD)
    assert WorkerRole(1, 3, 4, 5, 6).ari_media() is None


def test_worker_0s_media_port_in_use_stops_serve_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ari = ("--ari", "http://127.0.0.1:8088", "--ari-user", "u")
        done = serve_refuses(
            tmp_path,
            "--workers",
            "2",
            *ari,
            "--ari-media-host",
            f"127.0.0.1:{port}",
            env={"CALLBRIDGE_ARI_PASSWORD": "x"},
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port} (--ari-media-host)" in done.stderr
    assert '"worker ready"' not in done.stderr


async def test_bad_requests_to_worker_0_get_400_and_the_next_one_is_answered() -> None:
    """A request another worker (a newer or broken one) carried with missing arguments or an
    op worker 0 does not know is refused with a clear 400; it places nothing, and the next
    request is answered as usual."""
    app = FakeApp()
    execute = ari_executor(cast(AriApp, app))
    missing = await execute("", "originate", {"source": "+1555"})
    assert (missing.status, missing.body["code"]) == (400, "invalid_request")
    assert "bad arguments" in missing.body["message"]
    wrong_type = await execute("", "originate", {"source": "a", "destination": "b", "params": 7})
    assert (wrong_type.status, wrong_type.body["code"]) == (400, "invalid_request")
    unknown = await execute("", "transfer_everyone", {})
    assert (unknown.status, unknown.body["code"]) == (400, "invalid_request")
    assert "transfer_everyone" in unknown.body["message"]
    assert app.outbound.asked == []
    good = await execute("", "originate", {"source": "+1555", "destination": "+1666", "params": {}})
    assert (good.status, good.body) == (200, {"call_id": "call-1"})
