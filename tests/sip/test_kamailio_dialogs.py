"""A caller that ignores Record-Route, through the real Kamailio edge, to two callbridge nodes.

sipp's built-in ``uac`` scenario, unmodified, sends its ACK and BYE to the address it dialled
(the edge) with no Route header: the edge must find the call (dialog module, Call-ID and tags)
and relay them to the node that answered. Before it did, every BYE got 404 and sipp failed.
"""

from __future__ import annotations

import csv
import random
import re
import subprocess
from pathlib import Path

import pytest
import trio

from tests.sip.nodes import start_node
from tests.sip.peers import free_udp_port, kamailio, require_binary

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sip_peers")]
CALLS = 20


async def run_builtin_uac(
    folder: Path, edge_port: int, calls: int, rate_per_s: int
) -> dict[str, str]:
    """``sipp -sn uac -m calls -r rate`` to the edge; returns sipp's last statistics row."""
    stats = folder / f"uac-{random.getrandbits(32)}.csv"
    cmd = [
        require_binary("sipp"), f"127.0.0.1:{edge_port}", "-sn", "uac",
        "-m", str(calls), "-r", str(rate_per_s), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mi", "127.0.0.1", "-mp", str(free_udp_port(pair=True)), "-nostdin",
        "-timeout", "60s", "-timeout_error", "-trace_stat", "-stf", str(stats),
        "-trace_err", "-error_file", str(folder / "uac.err"),
    ]  # fmt: skip
    with trio.fail_after(75):
        proc = await trio.run_process(cmd, capture_stdout=True, stderr=subprocess.STDOUT,
                                      check=False)  # fmt: skip
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, output[-3000:] + (folder / "kamailio.log").read_text()[-3000:]
    with stats.open(newline="") as f:
        *_, last = csv.DictReader(f, delimiter=";")
    return last


async def test_builtin_uac_ignoring_record_route_completes_every_call_on_two_nodes(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    nodes = [await start_node(nursery, echo_agent) for _ in range(2)]
    async with kamailio(tmp_path, [(node.port, 0) for node in nodes]) as edge:  # round-robin
        stats = await run_builtin_uac(tmp_path, edge, CALLS, rate_per_s=10)
    assert (stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == (str(CALLS), "0")
    created = [len(node.hooks.created) for node in nodes]
    assert sum(created) == CALLS and min(created) > 0, created  # both nodes took calls
    with trio.fail_after(10):  # the BYE's 200 may reach sipp before the call's cleanup ends
        while sum(len(node.hooks.hungup) for node in nodes) < CALLS:
            await trio.sleep(0.05)
    for node in nodes:  # each BYE reached the node that held its call
        assert {cause for _, cause, _ in node.hooks.hungup} == {"caller"}
    # The edge's own account: each call's ACK and BYE went to the node its INVITE went to, and
    # the BYE ended the tracked dialog (state 5), so the edge keeps nothing of finished calls.
    log = (tmp_path / "kamailio.log").read_text()
    invited = dict(re.findall(r"INVITE (\S+) to node sip:127\.0\.0\.1:(\d+)", log))
    relayed = relayed_without_route(log)
    assert len(invited) == CALLS and len(relayed) == 2 * CALLS, log[-2000:]
    for method, call_id, port, state in relayed:
        assert port == int(invited[call_id])
        assert state == ("5" if method == "BYE" else "4")


async def test_after_a_failover_the_ack_and_bye_go_to_the_node_that_answered(
    nursery: trio.Nursery, echo_agent: str, tmp_path: Path
) -> None:
    first = await start_node(nursery, echo_agent)
    second = await start_node(nursery, echo_agent)
    # dispatcher algorithm 8: the first node while it is active (it has the higher priority)
    async with kamailio(tmp_path, [(first.port, 10), (second.port, 5)], alg=8) as edge:
        first.stop()  # before a probe notices: the first INVITE times out on it, then fails over
        stats = await run_builtin_uac(tmp_path, edge, 2, rate_per_s=1)
    assert (stats["SuccessfulCall(C)"], stats["FailedCall(C)"]) == ("2", "0")
    assert (len(first.hooks.created), len(second.hooks.created)) == (0, 2)
    relayed = relayed_without_route((tmp_path / "kamailio.log").read_text())
    assert [(method, port) for method, _, port, _ in relayed] == [
        ("ACK", second.port), ("BYE", second.port)] * 2  # fmt: skip


def relayed_without_route(log: str) -> list[tuple[str, str, int, str]]:
    """The edge's log lines for in-dialog requests it routed by dialog: (method, Call-ID, the
    port it sent them to, the dialog's state after the request), in order."""
    found = re.findall(
        r"(ACK|BYE) (\S+) without Route: to sip:\S+@127\.0\.0\.1:(\d+) \(dialog state (\d)\)", log
    )
    return [(method, call_id, int(port), state) for method, call_id, port, state in found]
