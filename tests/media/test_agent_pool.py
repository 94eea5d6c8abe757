"""Which agent a call goes to (:mod:`media.agent_pool`): the least-loaded ready one, never one being
restarted, the next one when a connect finds nobody there, and a wait within the connect deadline
when every supervised agent is restarting."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from media.agent_client import AgentLinkError
from media.agent_pool import RETRY_AFTER_S, AgentPool, open_least_loaded
from media.config import ConfigError, HostPort, MediaConfig

URLS = ("ws://127.0.0.1:8000", "ws://127.0.0.1:8001", "ws://127.0.0.1:8002")


def test_each_call_goes_to_the_agent_with_the_fewest_live_calls() -> None:
    pool = AgentPool(URLS)
    leases = [pool.lease(0.0) for _ in range(5)]
    assert [lease.index for lease in leases if lease] == [0, 1, 2, 0, 1]
    assert pool.live_calls == [2, 2, 1]
    for lease in leases[:2]:
        assert lease is not None
        lease.release()
        lease.release()  # idempotent: a call's end is counted once
    assert pool.live_calls == [1, 1, 1]
    nxt = pool.lease(0.0)
    assert nxt is not None and nxt.index == 0  # ties: the first


def test_an_agent_being_restarted_gets_no_call_even_when_idle() -> None:
    ready = {0: True, 1: False, 2: True}
    pool = AgentPool(URLS, ready.__getitem__)
    for _ in range(4):
        assert pool.lease(0.0) is not None
    assert pool.live_calls == [2, 0, 2]
    ready[1] = True  # back: it is the least loaded now
    back = pool.lease(0.0)
    assert back is not None and back.index == 1
    ready.update({0: False, 1: False, 2: False})
    assert pool.lease(0.0) is None


def test_an_unreachable_unsupervised_agent_is_tried_last_for_a_while() -> None:
    pool = AgentPool(URLS[:2])
    pool.unreachable(0, now=10.0)
    soon = pool.lease(10.0 + RETRY_AFTER_S / 2)
    assert soon is not None and soon.index == 1
    soon.release()
    later = pool.lease(10.0 + RETRY_AFTER_S)
    assert later is not None and later.index == 0
    only_down = AgentPool(URLS[:1])
    only_down.unreachable(0, now=0.0)
    tried = only_down.lease(0.1)  # still tried: it is the only one
    assert tried is not None and tried.index == 0


async def test_a_connect_that_finds_nobody_goes_to_the_next_agent() -> None:
    pool = AgentPool(URLS)
    asked: list[str] = []

    async def open_link(url: str) -> str:
        asked.append(url)
        if url == URLS[0]:
            raise AgentLinkError("connect_failed", "refused")
        return f"link to {url}"

    link, lease = await open_least_loaded(pool, open_link, 1.0)
    assert (link, lease.index) == (f"link to {URLS[1]}", 1)
    assert asked == [URLS[0], URLS[1]]
    assert pool.live_calls == [0, 1, 0]  # the failed try was given back
    _, second = await open_least_loaded(pool, open_link, 1.0)
    assert second.index == 2  # agent 0 is tried last for a while, though it has no call


async def test_every_agent_unreachable_ends_the_call_with_the_last_reason() -> None:
    pool = AgentPool(URLS[:2])

    async def refused(url: str) -> str:
        raise AgentLinkError("connect_failed", url)

    with pytest.raises(AgentLinkError) as caught:
        await open_least_loaded(pool, refused, 1.0)
    assert caught.value.reason == "connect_failed" and pool.live_calls == [0, 0]


async def test_other_failures_are_not_retried_elsewhere() -> None:
    pool = AgentPool(URLS)
    asked: list[str] = []

    async def too_slow(url: str) -> str:
        asked.append(url)
        raise AgentLinkError("connect_timeout", url)

    with pytest.raises(AgentLinkError):
        await open_least_loaded(pool, too_slow, 1.0)
    assert asked == [URLS[0]] and pool.live_calls == [0, 0, 0]


async def test_a_call_waits_for_a_restarting_agent_within_its_deadline() -> None:
    ready = [False]
    pool = AgentPool(URLS[:1], lambda i: ready[i])

    async def open_link(url: str) -> str:
        return url

    async with trio.open_nursery() as nursery:

        async def back_after(delay_s: float) -> None:
            await trio.sleep(delay_s)
            ready[0] = True

        nursery.start_soon(back_after, 0.3)
        t0 = trio.current_time()
        link, _ = await open_least_loaded(pool, open_link, 2.0)
        assert link == URLS[0] and trio.current_time() - t0 >= 0.3
    ready[0] = False
    with pytest.raises(AgentLinkError) as caught:
        await open_least_loaded(pool, open_link, 0.2)
    assert caught.value.reason == "connect_timeout"


async def test_a_lease_is_held_while_the_link_runs() -> None:
    pool = AgentPool(URLS[:1])
    lease = pool.lease(-math.inf)
    assert lease is not None

    async def link_run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(lease.held_while, link_run)
        assert pool.live_calls == [1]
        nursery.cancel_scope.cancel()
    assert pool.live_calls == [0]


def test_the_configuration_lists_the_agents() -> None:
    two = MediaConfig(agent="echo", agent_listen=HostPort("127.0.0.1", 8100), agent_workers=2)
    assert two.agent_urls == ("ws://127.0.0.1:8100", "ws://127.0.0.1:8101")
    assert two.agent_url == "ws://127.0.0.1:8100,ws://127.0.0.1:8101"  # a media worker's --agent
    remote = MediaConfig(agent="ws://a:1,ws://b:2/?agent_protocol=pipecat")
    assert remote.agent_urls == ("ws://a:1", "ws://b:2/?agent_protocol=pipecat")
    with pytest.raises(ConfigError, match="--agent-workers"):
        MediaConfig(agent="ws://a:1", agent_workers=2)
    with pytest.raises(ConfigError, match="--agent-workers"):
        MediaConfig(agent="echo", agent_workers=0)
    with pytest.raises(ConfigError, match="65535"):
        MediaConfig(agent="echo", agent_listen=HostPort("127.0.0.1", 65535), agent_workers=2)
    with pytest.raises(ConfigError, match="--agent"):
        MediaConfig(agent="ws://a:1,http://b:2")
