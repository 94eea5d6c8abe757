"""A node's Redis subscriptions (events, call commands) survive Redis restarting: the listener
subscribes again instead of taking the node down. Runs its own redis-server on a free port (the
shared one on 6379 is never restarted)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import trio
from redis.exceptions import ConnectionError as RedisConnectionError

from control.bridge import AsyncioBridge
from control.redis_link import RedisLink
from tests.conftest import end_process, require_service
from tests.test_serve import free_port


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def redis_port() -> Iterator[int]:
    if shutil.which("redis-server") is None:
        require_service("redis-server", "the redis-server binary is not installed")
    yield free_port()


async def _wait_up(port: int) -> None:
    with trio.fail_after(10):
        while True:
            try:
                await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                return
            except OSError:
                await trio.sleep(0.05)


async def test_a_subscription_comes_back_after_redis_restarts(redis_port: int) -> None:
    server = _redis_server(redis_port)
    bridge = AsyncioBridge()
    got: list[str] = []
    try:
        await _wait_up(redis_port)
        link = RedisLink(f"redis://127.0.0.1:{redis_port}/0", bridge)
        await link.open()
        async with trio.open_nursery() as nursery:
            await nursery.start(link.listen, "chan", got.append)
            assert await link.publish("chan", "before") == 1
            with trio.fail_after(5):
                while got != ["before"]:
                    await trio.sleep(0.02)
            end_process(server, 5)
            await trio.sleep(0.5)  # the listener sees the connection drop and retries
            server = _redis_server(redis_port)
            await _wait_up(redis_port)
            with trio.fail_after(15):  # publishes until the listener has subscribed again
                while "after" not in got:
                    with contextlib.suppress(RedisConnectionError):  # a pooled dead socket
                        await link.publish("chan", "after")
                    await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        await link.aclose()
    finally:
        end_process(server, 5)
        bridge.close()
