"""``POST /v1.0/calls/<id>/transfer`` drives the transfer_call tool's code, through the real
control plane (HTTP, SQLite, events) and media core: an AudioSocket caller (no REFER) is put
through to a number behind the trunk (sipp: answering and echoing RTP, or busy), or handed to
another agent; the outcome comes as call_transferred / call_transfer_failed events, as the
tool's does. The agent plays 600 Hz for every frame it hears, so what the caller hears says
who it talks to (tests/media/tones.py)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from ai_pipeline.link import AgentLink
from control.bootstrap import create_access_key
from control.config import ControlConfig
from control.db import DatabaseUrl
from control.hooks import ControlHooks
from control.plane import open_control_plane
from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferDesk
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from proto.messages import CallStart
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.e2e.conftest import free_port
from tests.e2e.test_conference import http
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import agent_in_thread, tone
from tests.media.test_bridge_transfer import Talker, heard
from tests.media.tones import AGENT_HZ, SAID_HZ, tone_agent, tone_db
from tests.sip.peers import require_binary, sipp_uas

pytestmark = [pytest.mark.service, pytest.mark.slow]

SALES = "+15550002"
CALLER_HZ = 1000.0


@pytest.fixture
def started() -> list[CallStart]:
    """Every agent link's first frame: what each agent was started with."""
    return []


@pytest.fixture
def agent(started: list[CallStart]) -> Iterator[str]:
    require_binary("sipp")

    async def recording_tone_agent(start: CallStart, link: AgentLink) -> None:
        started.append(start)
        await tone_agent(start, link)

    with agent_in_thread(recording_tone_agent) as url:
        yield url


@dataclass
class Stack:
    base: str
    auth: str
    hooks: ControlHooks
    customer_id: str
    audiosocket_port: int

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await trio.to_thread.run_sync(http, method, self.base + path, self.auth, body)

    async def events(self, type_: str) -> list[dict[str, Any]]:
        return await self.hooks.store.find("events", customer_id=self.customer_id, type=type_)

    async def wait_event(self, type_: str) -> dict[str, Any]:
        with trio.fail_after(30):
            while not (found := await self.events(type_)):
                await trio.sleep(0.1)
        return dict(found[0]["data"])

    async def live_call(self, peer: AsteriskPeer) -> str:
        with trio.fail_after(10):
            while True:
                rows = await self.hooks.store.find("calls", customer_id=self.customer_id)
                for row in rows:
                    if row["leg_ref"] == str(peer.call_uuid) and row["status"] == "progressing":
                        return str(row["id"])
                await trio.sleep(0.05)


@pytest.fixture
async def open_stack(
    nursery: trio.Nursery, agent: str, tmp_path: Path
) -> Any:  # a factory: the trunk (sipp) differs per test
    async def start(trunk_port: int) -> Stack:
        port = free_port()
        cfg = ControlConfig(
            http=HostPort("127.0.0.1", port),
            db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/api-transfer.db"),
            jwt_secret="s" * 32,
        )
        calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
        outbound = SipOutbound()
        hooks = await nursery.start(_plane, cfg, calls, metrics, nursery, outbound)
        (customer,) = await hooks.store.find("customers", name="default")
        await hooks.store.insert(
            "agents", {"customer_id": customer["id"], "name": "a", "is_default": 1, "detail": {}}
        )
        _, key = await create_access_key(hooks.store, customer["id"], "customer_admin", "t")
        media_cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent)
        env = CallEnv(media_cfg, hooks, metrics, calls, TransferDesk(outbound))
        base = random.randrange(30_000, 39_000, 2)
        sip_cfg = SipConfig(
            listen=HostPort("127.0.0.1", 0),
            rtp_port_min=base,
            rtp_port_max=base + 198,
            outbound=HostPort("127.0.0.1", trunk_port),
            ring_timeout_s=10,
        )
        await nursery.start(serve_sip, env, sip_cfg, outbound)
        audiosocket_port = await nursery.start(serve_audiosocket, env)
        base_url = f"http://127.0.0.1:{port}"
        return Stack(base_url, f"AccessKey {key}", hooks, customer["id"], audiosocket_port)

    return start


async def _plane(
    cfg: ControlConfig,
    calls: CallRegistry,
    metrics: MediaMetrics,
    nursery: trio.Nursery,
    outbound: SipOutbound,
    task_status: trio.TaskStatus[ControlHooks] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with open_control_plane(cfg, calls, metrics, nursery, sip=outbound) as hooks:
        task_status.started(hooks)
        await trio.sleep_forever()


async def test_api_transfer_to_a_number_bridges_and_reports(
    open_stack: Any, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, rtp_echo=True) as uas:
        stack: Stack = await open_stack(uas.port)
        peer = await AsteriskPeer.connect(stack.audiosocket_port)
        async with trio.open_nursery() as calls:
            calls.start_soon(peer.read_until_closed)
            talker = Talker(peer, tone(CALLER_HZ, 1.5), tone(CALLER_HZ, 2))
            calls.start_soon(talker.run)
            call_id = await stack.live_call(peer)
            await trio.sleep(1.4)
            status, body = await stack.api("POST", f"/v1.0/calls/{call_id}/transfer",
                                           {"target": SALES})  # fmt: skip
            assert (status, body) == (200, {"id": call_id, "status": "transferring"})
            done = await stack.wait_event("call_transferred")
            assert done == {"target": SALES, "status": "answered"}
            talked = await talker.resume()
            await peer.close()
            with trio.fail_after(15):
                while len(await stack.events("call_hungup")) < 2:
                    await trio.sleep(0.1)
    assert not await stack.events("call_transfer_failed")
    run = uas.result()
    assert f"INVITE sip:{SALES}@127.0.0.1" in run.messages
    far_end = heard(peer, talked + 0.3, talked + 1.8)
    assert tone_db(far_end, CALLER_HZ) > -16, "the caller hears itself back from sipp"
    assert tone_db(far_end, AGENT_HZ) < -50, "and no longer its agent"


async def test_api_transfer_to_a_busy_number_reports_the_failure(
    open_stack: Any, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, "uas_busy.xml") as uas:
        stack: Stack = await open_stack(uas.port)
        peer = await AsteriskPeer.connect(stack.audiosocket_port)
        async with trio.open_nursery() as calls:
            calls.start_soon(peer.read_until_closed)
            talker = Talker(peer, tone(CALLER_HZ, 1.0), tone(CALLER_HZ, 1.5))
            calls.start_soon(talker.run)
            call_id = await stack.live_call(peer)
            await trio.sleep(0.9)
            status, _ = await stack.api("POST", f"/v1.0/calls/{call_id}/transfer",
                                        {"target": SALES})  # fmt: skip
            assert status == 200
            failed = await stack.wait_event("call_transfer_failed")
            failed_at = trio.current_time()
            await trio.sleep(1.5)  # the agent says why (its announcement was before ringback)
            talked = await talker.resume()
            await peer.close()
    assert failed["target"] == SALES and "486" in failed["reason"], failed
    assert not await stack.events("call_transferred")
    told = heard(peer, failed_at, failed_at + 1.5)
    assert tone_db(told, SAID_HZ) > -16, "the agent tells the caller the transfer failed"
    again = heard(peer, talked + 0.3, talked + 1.1)
    assert tone_db(again, AGENT_HZ) > -14, "the caller is back with its agent"


async def test_api_transfer_to_an_agent_switches_and_reports(
    open_stack: Any, started: list[CallStart]
) -> None:
    stack: Stack = await open_stack(9)  # no far end: nothing is dialled
    store = stack.hooks.store
    sales = await store.insert(
        "agents", {"customer_id": stack.customer_id, "name": "sales", "is_default": 0,
                   "detail": {}},
    )  # fmt: skip
    peer = await AsteriskPeer.connect(stack.audiosocket_port)
    async with trio.open_nursery() as calls:
        calls.start_soon(peer.read_until_closed)
        calls.start_soon(peer.play, tone(CALLER_HZ, 4.0))
        call_id = await stack.live_call(peer)
        path = f"/v1.0/calls/{call_id}/transfer"
        status, body = await stack.api("POST", path, {"target": "agent:nobody"})
        assert status == 400, body  # not an agent id
        status, _ = await stack.api("POST", path, {"target": f"agent:{uuid.uuid4()}"})
        assert status == 200  # started; the outcome is an event
        failed = await stack.wait_event("call_transfer_failed")
        assert "no agent" in failed["reason"]
        said = [("agent", "Hello, how can I help?"), ("caller", "My invoice is wrong."),
                ("agent", "Let me get you to sales.")]  # fmt: skip
        for role, text in said:  # as the agent link reports them (ControlHooks.transcript)
            await stack.hooks.transcript(call_id, role, text, final=True)
        await stack.hooks.transcript(call_id, "caller", "my invo", final=False)  # not a turn
        status, _ = await stack.api("POST", path, {"target": f"agent:{sales['id']}"})
        assert status == 200
        done = await stack.wait_event("call_transferred")
        await trio.sleep(1.0)
        await peer.close()
    assert done == {"target": f"agent:{sales['id']}", "status": "agent"}
    # The new agent was started over its link with the conversation so far; the first had none.
    first, handed = started[0], started[-1]
    assert len(started) == 2 and handed.agent_id == sales["id"]
    assert "history" not in first.agent_config
    assert handed.agent_config["history"] == [{"role": r, "text": t} for r, t in said]
    row = await store.get("calls", call_id, stack.customer_id)
    assert row is not None and row["agent_id"] == sales["id"]
