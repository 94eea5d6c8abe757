"""End to end with real peers, callbridge as the SIP client: calls it places (sipp answering,
sipp challenging with 401, Kamailio challenging with 407 and relaying), and its registration
with Kamailio as a digest-checking registrar (refreshed, found by lookup, removed on stop)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from media.config import HostPort
from tests.sip.nodes import Node, start_node
from tests.sip.peers import (
    REGISTRAR_CFG,
    free_udp_port,
    kamailio_with,
    run_sipp,
    sipp_uas,
    wait_for_line,
)

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sip_peers")]
WAIT_S = 20  # generous: conditions are awaited, never timed


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (``what`` names it in a failure), polling; never timed."""
    with trio.move_on_after(WAIT_S) as waited:
        while not condition():
            await trio.sleep(0.05)
    if waited.cancelled_caught:
        pytest.fail(f"no {what} within {WAIT_S} s")


async def _answered_then_hung_up(node: Node) -> str:
    call_id = await node.originate()
    await _until(lambda: node.hooks.answered == [call_id], "answered")
    (info,) = node.hooks.created
    assert (info.caller, info.callee, info.params["direction"]) == (
        "+15550001",
        "+15550002",
        "outgoing",
    )
    handle = node.env.registry.get(call_id)
    assert handle is not None
    handle.hangup("api")
    with trio.fail_after(WAIT_S):
        await node.hooks.ended.wait()
    assert node.hooks.hungup == [(call_id, "api", "api")]
    return call_id


async def test_outbound_call_answered_by_sipp_runs_and_ends_with_bye(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path) as uas:
        node = await start_node(nursery, echo_agent, outbound=HostPort("127.0.0.1", uas.port))
        await _answered_then_hung_up(node)
    run = uas.result()
    assert run.returncode == 0, run.messages[-3000:] + run.errors
    assert "INVITE sip:+15550002@127.0.0.1" in run.messages
    assert "m=audio" in run.messages and "BYE sip:" in run.messages


async def test_outbound_call_answers_sipps_401_challenge(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, "uas_auth.xml") as uas:
        node = await start_node(
            nursery,
            echo_agent,
            outbound=HostPort("127.0.0.1", uas.port),
            auth_user="alice",
            auth_password="secret",
        )
        await _answered_then_hung_up(node)
    run = uas.result()
    assert run.returncode == 0, run.messages[-3000:] + run.errors
    assert "CSeq: 2 INVITE" in run.messages and "Authorization: Digest" in run.messages
    assert "403 Forbidden" not in run.messages  # sipp's verifyauth accepted our digest


async def test_outbound_call_refused_by_the_callee_ends_with_its_status(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path, "uas_auth.xml") as uas:  # a wrong password: 403
        node = await start_node(
            nursery,
            echo_agent,
            outbound=HostPort("127.0.0.1", uas.port),
            auth_user="alice",
            auth_password="wrong",
        )
        call_id = await node.originate()
        with trio.fail_after(WAIT_S):
            await node.hooks.ended.wait()
    assert node.hooks.hungup == [(call_id, "caller", "sip 403 Forbidden")]
    assert node.hooks.answered == []


async def test_outbound_call_through_kamailio_answers_its_407(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    async with sipp_uas(tmp_path) as uas:
        defines = ['PASSWORD="secret"', f'UAS="sip:127.0.0.1:{uas.port}"']
        async with kamailio_with(tmp_path, REGISTRAR_CFG, defines) as proxy:
            node = await start_node(
                nursery,
                echo_agent,
                outbound=HostPort("127.0.0.1", proxy),
                auth_user="alice",
                auth_password="secret",
            )
            await _answered_then_hung_up(node)
            log = tmp_path / "kamailio.log"
            await wait_for_line(log, "registrar: authenticated INVITE from sip:+15550001@")
    assert "challenging INVITE" in log.read_text()
    run = uas.result()
    assert run.returncode == 0, run.messages[-3000:] + run.errors
    assert "Record-Route:" in run.messages  # the BYE went through the proxy


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_registers_with_kamailio_gets_calls_and_unregisters_on_stop(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path, algorithm: str
) -> None:
    defines = ['PASSWORD="secret"', f'ALGORITHM="{algorithm}"']
    async with kamailio_with(tmp_path, REGISTRAR_CFG, defines) as registrar:
        node = await start_node(
            nursery,
            echo_agent,
            register=f"sip:alice@127.0.0.1:{registrar}",
            auth_password="secret",
        )
        await _until(lambda: node.counter("callbridge_sip_registered") == 1, "registered")
        log = tmp_path / "kamailio.log"
        assert "challenging REGISTER" in log.read_text()
        # a call to the AOR reaches us through the registrar's location lookup
        run = await run_sipp(
            tmp_path, "uac_basic.xml", registrar, free_udp_port(pair=True), service="alice"
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.errors
        assert len(node.hooks.created) == 1
        node.stop()
        await wait_for_line(log, "expires 0")  # our Expires: 0 was accepted and saved
        unregistered = {"state": "unregistered"}
        await _until(
            lambda: node.counter("callbridge_sip_registrations_total", **unregistered) == 1,
            "the registrar's 200 to Expires: 0",
        )


@pytest.mark.parametrize("ring_timeout_s", [60.0, 1.0])
async def test_an_unanswered_call_is_cancelled_by_hangup_or_ring_timeout(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path, ring_timeout_s: float
) -> None:
    async with sipp_uas(tmp_path, "uas_ring_cancel.xml") as uas:
        node = await start_node(
            nursery,
            echo_agent,
            outbound=HostPort("127.0.0.1", uas.port),
            ring_timeout_s=ring_timeout_s,
        )
        call_id = await node.originate()
        if ring_timeout_s > WAIT_S:  # hang up through the API once it rings
            await _until(lambda: "SIP/2.0 180 Ringing" in uas.result().messages, "180")
            handle = node.env.registry.get(call_id)
            assert handle is not None
            handle.hangup("api")
        with trio.fail_after(WAIT_S):
            await node.hooks.ended.wait()
    run = uas.result()
    assert run.returncode == 0, run.messages[-3000:] + run.errors  # CANCEL, 487 ACKed
    assert "CANCEL sip:+15550002@" in run.messages
    expected = ("api", "api") if ring_timeout_s > WAIT_S else ("caller", "no answer in 1 s")
    assert node.hooks.hungup == [(call_id, *expected)]
    assert node.hooks.answered == []
