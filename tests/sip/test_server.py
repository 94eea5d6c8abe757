"""The SIP listener in-process, against a Python caller on loopback (no external binaries):
media echo, hold, INFO DTMF, refused offers, and bad input that must not touch other calls."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from ai_pipeline.echo import echo_call
from media.sdp import parse_sdp
from sip.message import MAX_MESSAGE_BYTES, SipResponse, parse_message
from tests.media.conftest import agent_in_thread
from tests.sip.messages import SDP_OFFER, request
from tests.sip.nodes import Node, start_node
from tests.sip.uac import Uac, offer


@pytest.fixture
def echo_agent() -> Iterator[str]:
    with agent_in_thread(echo_call) as url:
        yield url


@pytest.fixture
async def node(nursery: trio.Nursery, echo_agent: str) -> Node:
    return await start_node(nursery, echo_agent, invite_rate_per_s=1.0, invite_burst=5)


@pytest.fixture
async def uac(node: Node) -> AsyncIterator[Uac]:
    caller = await Uac.open(node.port)
    yield caller
    caller.close()


async def _ended(node: Node, calls: int = 1) -> None:
    with trio.fail_after(15):
        while len(node.hooks.hungup) < calls:
            await trio.sleep(0.05)


async def test_call_echoes_speech_and_dtmf_then_bye(node: Node, uac: Uac) -> None:
    ok = await uac.call()
    assert ok.status == 200 and ok.get("Content-Type") == "application/sdp"
    assert uac.remote_rtp[1] in node.rtp_ports
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)
        await uac.count_rtp(7.0)
    assert uac.rtp_payload_types[0] >= 200  # the echoed speech, PCMU as negotiated
    assert uac.rtp_payload_types[101] >= 3  # the digits, echoed as RFC 4733 events
    assert (await uac.in_dialog("BYE")).status == 200
    await _ended(node)
    assert node.hooks.hungup[0][1:] == ("caller", "sip bye")
    pressed = [text for _, role, text in node.hooks.transcripts if role == "caller"]
    assert pressed == ["pressed 4", "pressed 2", "pressed #"]


async def test_hold_stops_our_media_and_resume_restarts_it(node: Node, uac: Uac) -> None:
    assert (await uac.call()).status == 200
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)  # keeps the echo agent talking throughout
        assert await uac.count_rtp(1.5) > 0
        held = await uac.in_dialog("INVITE", _offer_for(uac, "sendonly"))
        assert held.status == 200
        assert parse_sdp(held.body).media[0].direction == "recvonly"
        await uac.count_rtp(0.3)  # what was already on its way
        assert await uac.count_rtp(1.0) == 0
        resumed = await uac.in_dialog("INVITE", _offer_for(uac, "sendrecv"))
        assert parse_sdp(resumed.body).media[0].direction == "sendrecv"
        assert await uac.count_rtp(1.5) > 0
        inner.cancel_scope.cancel()
    assert (await uac.in_dialog("BYE")).status == 200


async def test_session_refresh_without_an_offer_gets_our_sdp(node: Node, uac: Uac) -> None:
    first = await uac.call()
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)  # RTP keeps the leg alive
        refresh = await uac.in_dialog("INVITE")  # no body: RFC 4028 refresh, or a late offer
        inner.cancel_scope.cancel()
    assert refresh.status == 200 and refresh.body == first.body
    assert (await uac.in_dialog("BYE")).status == 200


def _offer_for(uac: Uac, direction: str) -> bytes:
    return offer(uac.rtp_port, direction)


async def test_info_dtmf_reaches_the_agent(node: Node, uac: Uac) -> None:
    assert (await uac.call()).status == 200
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)  # RTP keeps the leg alive
        info = await uac.in_dialog("INFO", b"Signal=7\r\nDuration=160\r\n",
                                   content_type="application/dtmf-relay")  # fmt: skip
        assert info.status == 200
        with trio.fail_after(10):
            while not any(t == "pressed 7" for _, _, t in node.hooks.transcripts):
                await trio.sleep(0.05)
        inner.cancel_scope.cancel()
    assert (await uac.in_dialog("BYE")).status == 200


async def test_offers_we_cannot_use_are_refused(node: Node, uac: Uac) -> None:
    g729 = SDP_OFFER.split(b"m=audio")[0] + b"m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    await uac.send("INVITE", g729)
    assert (await uac.final_response()).status == 488
    uac.call_id, uac.cseq = "uac-call-2", 1
    await uac.send("INVITE", b"v=0\r\nbogus\r\n")
    assert (await uac.final_response()).status == 400
    assert node.counter("callbridge_sip_rejected_total", reason="offer_488") == 1
    assert node.counter("callbridge_sip_rejected_total", reason="offer_400") == 1
    assert node.hooks.created == []


async def test_bad_input_is_refused_and_counted_while_a_call_goes_on(node: Node, uac: Uac) -> None:
    assert (await uac.call()).status == 200
    attacker = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await attacker.bind(("127.0.0.2", 0))
    to = ("127.0.0.1", node.port)

    async def answer() -> SipResponse:
        with trio.fail_after(10):
            message = parse_message(await attacker.recv(65535))
        assert isinstance(message, SipResponse)
        return message

    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)
        await attacker.sendto(b"\x00\xff garbage", to)
        await attacker.sendto(b"HELLO world\r\n\r\n", to)
        await attacker.sendto(b"OPTIONS " + b"x" * MAX_MESSAGE_BYTES, to)
        await attacker.sendto(request("BYE", call_id="nope", branch="z9hG4bK-x"), to)
        assert (await answer()).status == 481
        statuses = []
        for i in range(8):  # a flood from one source: a burst of 5 is allowed
            await attacker.sendto(request("INVITE", call_id=f"flood-{i}", branch=f"z9hG4bK-f{i}",
                                          body=SDP_OFFER), to)  # fmt: skip
            while (response := await answer()).status == 100:
                pass
            statuses.append(response.status)
            retry_after = response.get("Retry-After")
        assert statuses.count(503) >= 3 and retry_after is not None and int(retry_after) >= 1
        assert await uac.count_rtp(2.0) > 0  # the real call kept its echo throughout
        inner.cancel_scope.cancel()
    attacker.close()
    assert (await uac.in_dialog("BYE")).status == 200
    for reason in ("malformed_no_header_end", "malformed_bad_request_line", "malformed_oversized",
                   "out_of_dialog"):  # fmt: skip
        assert node.counter("callbridge_sip_rejected_total", reason=reason) == 1, reason
    assert node.counter("callbridge_sip_rejected_total", reason="invite_rate_limited") >= 3


async def test_a_call_whose_agent_is_unreachable_is_refused_not_answered(
    nursery: trio.Nursery,
) -> None:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead_agent = f"ws://127.0.0.1:{s.getsockname()[1]}"
    node = await start_node(nursery, dead_agent)
    uac = await Uac.open(node.port)
    response = await uac.call()
    uac.close()
    assert response.status == 480  # never 200 then BYE
    await _ended(node)
    assert node.hooks.hungup[0][1] == "error"
