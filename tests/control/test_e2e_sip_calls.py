"""``POST /v1.0/calls`` with ``leg: sip`` as ``callbridge serve --sip --sip-outbound`` mounts it:
the real control plane on Hypercorn, the SIP listener, the echo agent, and sipp as the callee.
The call is a row (direction ``outgoing``) that moves ringing -> progressing -> hangup, and a
call the callee refuses ends with the SIP status as its hangup reason."""

from __future__ import annotations

import urllib.error
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from ai_pipeline.echo import echo_call
from control.bootstrap import create_access_key
from control.config import ControlConfig
from control.db import DatabaseUrl
from control.plane import open_control_plane
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.control.test_e2e_audiosocket import _free_port, _http
from tests.media.conftest import agent_in_thread
from tests.sip.peers import free_udp_port, require_binary, sipp_uas

pytestmark = [pytest.mark.service, pytest.mark.slow]
WAIT_S = 20


@dataclass
class Plane:
    base: str
    auth: str
    agent_id: str
    callee_port: int  # where the SIP listener sends INVITEs (--sip-outbound)


@pytest.fixture
async def plane(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Plane]:
    require_binary("sipp")
    http = HostPort("127.0.0.1", _free_port())
    cfg = ControlConfig(http=http, db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/sip.db"))
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    outbound = SipOutbound()
    callee_port = free_udp_port()
    sip_cfg = SipConfig(
        listen=HostPort("127.0.0.1", 0), outbound=HostPort("127.0.0.1", callee_port)
    )
    with agent_in_thread(echo_call) as agent_url:
        async with open_control_plane(cfg, calls, metrics, nursery, sip=outbound) as hooks:
            (customer,) = await hooks.store.find("customers", name="default")
            (agent,) = await hooks.store.find("agents", customer_id=customer["id"])
            _, key = await create_access_key(hooks.store, customer["id"], "customer_admin", "t")
            media_cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
            env = CallEnv(media_cfg, hooks, metrics, calls)
            await nursery.start(serve_sip, env, sip_cfg, outbound)
            yield Plane(f"http://{http}", f"AccessKey {key}", agent["id"], callee_port)


async def api(plane: Plane, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await trio.to_thread.run_sync(_http, method, plane.base + path, plane.auth, body)


async def row_until(plane: Plane, call_id: str, status: str) -> dict[str, Any]:
    with trio.fail_after(WAIT_S):
        while True:
            _, row = await api(plane, "GET", f"/v1.0/calls/{call_id}")
            if row["status"] == status:
                return dict(row)
            await trio.sleep(0.1)


def call_body(plane: Plane) -> dict[str, str]:
    return {
        "leg": "sip",
        "source": "+15550001",
        "destination": "+15550002",
        "agent_id": plane.agent_id,
    }


async def test_post_calls_places_a_sip_call_that_the_api_hangs_up(
    plane: Plane, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, port=plane.callee_port) as uas:
        status, row = await api(plane, "POST", "/v1.0/calls", call_body(plane))
        assert status == 201
        assert (row["leg"], row["direction"]) == ("sip", "outgoing")
        # ringing when the reply is built, or already answered: sipp on loopback can be quicker
        assert row["status"] in ("ringing", "progressing")
        assert (row["source"], row["destination"]) == ("+15550001", "+15550002")
        await row_until(plane, row["id"], "progressing")  # sipp answered
        hangup = f"/v1.0/calls/{row['id']}/hangup"
        status, _ = await api(plane, "POST", hangup, {"cause": "busy"})
        assert status == 200
        ended = await row_until(plane, row["id"], "hangup")
    assert (ended["hangup_cause"], ended["hangup_reason"]) == ("api", "api: busy")
    run = uas.result()
    assert run.returncode == 0, run.messages[-3000:] + run.errors  # it got our BYE
    [bye] = [m for m in run.messages.split("\n\n") if m.lstrip().startswith("BYE ")]
    assert "Reason: Q.850;cause=17" in bye  # the API's cause, told to the callee (RFC 3326)


async def test_a_refused_sip_call_ends_with_the_status_as_reason(
    plane: Plane, tmp_path: Path
) -> None:
    # sipp challenges with 401 and this listener has no credentials: the call fails at once
    async with sipp_uas(tmp_path, "uas_auth.xml", timeout_s=2, port=plane.callee_port):
        _, row = await api(plane, "POST", "/v1.0/calls", call_body(plane))
        ended = await row_until(plane, row["id"], "hangup")
    assert ended["hangup_cause"] == "caller"
    assert ended["hangup_reason"] == "sip 401 Unauthorized: no credentials configured"
    assert ended["tm_answer"] is None


async def test_other_legs_still_cannot_originate(plane: Plane) -> None:
    body = {**call_body(plane), "leg": "audiosocket"}
    with pytest.raises(urllib.error.HTTPError) as caught:
        await api(plane, "POST", "/v1.0/calls", body)
    assert caught.value.code == 422
