"""End to end with real peers: sipp calls through a real Kamailio to callbridge SIP nodes.

Kamailio runs ``sip/kamailio/kamailio.cfg`` (dispatcher, OPTIONS probing, record-route) on a
loopback port of its own; the nodes run in this test's Trio loop with the echo agent.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from ai_pipeline.link import AgentLink
from media.hooks import CallHandle, ToolOutcome
from media.rtp.codec import PT_PCMU, make_codec
from proto.messages import CallStart, FunctionCall, Hangup
from tests.media.conftest import RecordingHooks, agent_in_thread
from tests.sip.nodes import start_node
from tests.sip.peers import (
    FIXTURES,
    free_udp_port,
    kamailio,
    require_raw_sockets,
    run_sipp,
    sniff_rtp_to,
    wait_for_line,
)

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sip_peers")]
TRANSFER_TARGET = "sip:sales@127.0.0.1:5099"


def _rms(pcm16: bytes) -> float:
    samples = np.frombuffer(pcm16, dtype="<i2").astype(float)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


async def test_call_through_kamailio_plays_speech_and_dtmf_and_hears_the_echo(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    require_raw_sockets("sipp's play_pcap_audio and the RTP sniffer use raw sockets")
    node = await start_node(nursery, echo_agent)
    media_port = free_udp_port(pair=True)
    async with kamailio(tmp_path, [(node.port, 0)]) as edge:
        with sniff_rtp_to(media_port) as sniffed:
            run = await run_sipp(tmp_path, "uac_pcap.xml", edge, media_port)
    assert run.returncode == 0, run.stdout[-2000:] + run.errors
    assert "Record-Route: <sip:127.0.0.1" in run.messages  # the dialog stays on the edge
    with trio.fail_after(10):
        await node.hooks.ended.wait()
    (info,) = node.hooks.created
    assert (info.leg, info.caller, info.callee) == ("sip", "sipp", "agent")
    assert node.hooks.hungup[0][1:] == ("caller", "sip bye")
    # DTMF 4, 2, # of the capture reached the agent (the echo agent reports each press)...
    pressed = [text for _, role, text in node.hooks.transcripts if role == "caller"]
    assert pressed == ["pressed 4", "pressed 2", "pressed #"]
    # ...and the caller heard the echo: speech as PCMU, and the digits as RFC 4733 events.
    assert sniffed.payload_types[0] >= 200  # of the capture's 246 audio frames
    assert sniffed.payload_types[101] >= 3
    with wave.open(str(FIXTURES / "speech_8k.wav")) as w:
        sent = w.readframes(w.getnframes())
    heard = make_codec(PT_PCMU).decode(b"".join(sniffed.payloads))
    assert _rms(heard) > 0.5 * _rms(sent)  # speech came back, not silence
    assert node.counter("callbridge_leg_frames_in_total", leg="sip") >= 240


async def test_the_edge_spreads_calls_over_the_nodes(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    nodes = [await start_node(nursery, echo_agent) for _ in range(2)]
    async with kamailio(tmp_path, [(node.port, 0) for node in nodes]) as edge:  # round-robin
        run = await run_sipp(tmp_path, "uac_basic.xml", edge, free_udp_port(pair=True), calls=4)
    assert run.returncode == 0, run.errors + run.messages
    assert [len(node.hooks.created) for node in nodes] == [2, 2]


async def test_second_node_takes_calls_when_the_first_is_stopped(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    first = await start_node(nursery, echo_agent)
    second = await start_node(nursery, echo_agent)
    # dispatcher algorithm 8: always the first active node by priority (first has the higher)
    async with kamailio(tmp_path, [(first.port, 10), (second.port, 5)], alg=8) as edge:
        run = await run_sipp(tmp_path, "uac_basic.xml", edge, free_udp_port(pair=True))
        assert run.returncode == 0, run.errors + run.messages
        assert (len(first.hooks.created), len(second.hooks.created)) == (1, 0)
        first.stop()
        for _ in range(2):  # the first after the stop may wait for the edge's INVITE timeout
            run = await run_sipp(tmp_path, "uac_basic.xml", edge, free_udp_port(pair=True))
            assert run.returncode == 0, run.stdout[-2000:] + run.errors
    assert (len(first.hooks.created), len(second.hooks.created)) == (1, 2)
    with trio.fail_after(10):  # the BYE's 200 may reach sipp before the call's cleanup ends
        while len(second.hooks.hungup) < 2:
            await trio.sleep(0.05)
    assert [cause for _, cause, _ in second.hooks.hungup] == ["caller", "caller"]


async def test_probing_takes_a_dead_node_out_and_brings_it_back(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    first = await start_node(nursery, echo_agent)
    second = await start_node(nursery, echo_agent)
    log = tmp_path / "kamailio.log"
    first_uri = f"sip:127.0.0.1:{first.port}"
    async with kamailio(tmp_path, [(first.port, 10), (second.port, 5)], alg=8) as edge:
        first.stop()
        await wait_for_line(log, f"dispatcher: node {first_uri} down")  # OPTIONS unanswered
        run = await run_sipp(tmp_path, "uac_basic.xml", edge, free_udp_port(pair=True))
        assert run.returncode == 0, run.errors + run.messages
        assert len(second.hooks.created) == 1
        assert "failing over" not in log.read_text()  # not tried at all: the probe took it out
        again = await start_node(nursery, echo_agent, port=first.port)
        await wait_for_line(log, f"dispatcher: node {first_uri} up")
        run = await run_sipp(tmp_path, "uac_basic.xml", edge, free_udp_port(pair=True))
        assert run.returncode == 0, run.errors + run.messages
    assert (len(again.hooks.created), len(second.hooks.created)) == (1, 1)


class TransferHooks(RecordingHooks):
    """Executes transfer_call the way the control plane's tool executor does."""

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        self.tools.append((name, arguments))
        call.transfer(str(arguments["target"]))
        return ToolOutcome({"status": "transferring"})


async def transferring_agent(start: CallStart, link: AgentLink) -> None:
    await link.send(FunctionCall("tool-1", "transfer_call", {"target": TRANSFER_TARGET}))
    while not isinstance(await link.recv(), Hangup):
        pass


async def test_agent_transfer_call_sends_refer_through_kamailio(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    hooks = TransferHooks()
    with agent_in_thread(transferring_agent) as agent_url:
        node = await start_node(nursery, agent_url, hooks)
        async with kamailio(tmp_path, [(node.port, 0)]) as edge:
            run = await run_sipp(tmp_path, "uac_refer.xml", edge, free_udp_port(pair=True))
        # sipp checked the Refer-To header (ereg check_it) and got our BYE after its NOTIFY 200.
        assert run.returncode == 0, run.stdout[-2000:] + run.errors + run.messages
        with trio.fail_after(10):
            await hooks.ended.wait()
    assert f"Refer-To: <{TRANSFER_TARGET}>" in run.messages
    assert hooks.tools == [("transfer_call", {"target": TRANSFER_TARGET})]
    assert hooks.hungup[0][1:] == ("caller", "transferred")
