"""Redis through the asyncio bridge: cache-aside storage and cross-node event fan-out.

redis-py's asyncio client lives on the bridge's loop (``control/bridge.py`` says why); every call
here is one hop.
The pub/sub listener is a long-lived asyncio task whose messages are handed to Trio with
``TrioToken.run_sync_soon``, so the Trio side never blocks on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import trio
from redis.exceptions import RedisError

from control.bridge import AsyncioBridge

log = logging.getLogger(__name__)
_RESUBSCRIBE_FIRST_S = 0.1  # then doubling: Redis back within a second costs ~0.1-0.3 s of messages
_RESUBSCRIBE_CAP_S = 5.0


class RedisLink:
    def __init__(self, url: str, bridge: AsyncioBridge, op_timeout_s: float = 2.0) -> None:
        self._bridge = bridge
        self._url = url
        self._timeout_s = op_timeout_s
        self._client: Any = None

    async def open(self) -> None:
        def make() -> Any:
            return aioredis.from_url(
                self._url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                decode_responses=True,
            )

        async def create() -> Any:
            client = make()
            await client.ping()
            return client

        self._client = await self._bridge.run(create)

    async def ping(self) -> None:
        await self._bridge.run(self._client.ping)

    async def get(self, key: str) -> str | None:
        value: str | None = await self._bridge.run(self._client.get, key)
        return value

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        async def do() -> None:
            await self._client.set(key, value, ex=ttl_s)

        await self._bridge.run(do)

    async def delete(self, key: str) -> None:
        await self._bridge.run(self._client.delete, key)

    async def exists(self, key: str) -> bool:
        return bool(await self._bridge.run(self._client.exists, key))

    async def refresh(self, key: str, value: str, ttl_ms: int) -> bool:
        """Set ``key`` for ``ttl_ms``; ``False`` when it had lapsed (or never existed) before."""

        async def do() -> Any:
            return await self._client.set(key, value, px=ttl_ms, get=True)

        return await self._bridge.run(do) is not None

    async def publish(self, channel: str, message: str) -> int:
        """Publish; returns how many subscribers received it (0: nobody listens)."""
        receivers: int = await self._bridge.run(self._client.publish, channel, message)
        return receivers

    async def listen(
        self,
        channel: str,
        on_message: Callable[[str], None],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``on_message`` (in Trio) for every message on ``channel`` until cancelled.

        A lost connection (Redis restarted, a network blip) is re-established with back-off and
        the channel subscribed again; what was published meanwhile is lost, as pub/sub loses it
        (events' webhooks do not depend on it; a routed call command times out into a 503)."""
        token = trio.lowlevel.current_trio_token()
        subscribed = trio.Event()

        async def loop() -> None:
            delay_s = _RESUBSCRIBE_FIRST_S
            while True:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(channel)
                    token.run_sync_soon(subscribed.set)
                    delay_s = _RESUBSCRIBE_FIRST_S
                    async for msg in pubsub.listen():
                        if msg.get("type") == "message":
                            token.run_sync_soon(on_message, msg["data"])
                except (RedisError, OSError) as exc:
                    log.error(
                        "redis subscription lost; subscribing again",
                        extra={"channel": channel, "error": str(exc), "retry_s": delay_s},
                    )
                finally:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.aclose()
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RESUBSCRIBE_CAP_S)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._bridge.run_unlimited, loop)
            await subscribed.wait()
            task_status.started()

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self._bridge.run(client.aclose)
