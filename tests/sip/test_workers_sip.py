"""``callbridge serve --workers 2 --sip HOST:PORT`` as a user runs it: worker j answers SIP on
PORT+j (a socket the parent bound, so it outlives the worker) with RTP from its own slice of
``--rtp-ports``; a worker that is SIGKILLed takes only its own SIP call, the other worker's call
keeps echoing, and the restarted worker answers on the same port. Slices too small, a
registration, ``--ari-media websocket`` without ``--link-port`` and a SIP port in use are refused
before any worker starts."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from media.config import ConfigError, HostPort
from sip.config import SipConfig, for_worker
from sip.message import SipRequest, SipResponse, parse_message
from tests.conftest import require_service
from tests.sip.peers import free_udp_port, kamailio, sip_options_ok
from tests.sip.uac import Uac
from tests.test_serve import free_port, stop_serve
from tests.test_workers import (
    _redis_up,
    access_key,
    call_rows,
    log_tail,
    post,
    start_workers,
    wait_ready,
    workers_by_id,
)

RTP_PAIRS = 20  # 10 RTP/RTCP pairs per worker


def free_udp_ports(count: int) -> int:
    """A UDP port P on loopback with P .. P+count-1 all free."""
    for _ in range(200):
        base = free_udp_port()
        if all(udp_port_free(port) for port in range(base + 1, base + count)):
            return base
    raise RuntimeError("no free UDP ports")


def udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def sip_call(port: int, call_id: str, contact_port: int = 0) -> Uac:
    """A call answered 200 (whose Contact names ``contact_port``, where one is given)."""
    uac = await Uac.open(port, call_id)
    answer = await uac.call()
    assert answer.status == 200, answer
    if contact_port:
        assert f"@127.0.0.1:{contact_port}>" in (answer.get("Contact") or ""), answer
    return uac


async def row_of(db: Path, sip_call_id: str) -> dict[str, Any]:
    """The call row of a SIP call (its leg_ref is the SIP Call-ID)."""
    with trio.fail_after(20):
        while (row := call_rows(db).get(sip_call_id)) is None:
            await trio.sleep(0.1)
    return row


async def echoed_packets(uac: Uac) -> int:
    """Play the PCMU capture into the call and count the PCMU packets the echo sends back."""
    before = uac.rtp_payload_types[0]
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)
        with trio.move_on_after(20):
            while uac.rtp_payload_types[0] - before < 50:
                await uac.count_rtp(0.5)
        inner.cancel_scope.cancel()
    return uac.rtp_payload_types[0] - before


@pytest.mark.slow
async def test_each_worker_answers_sip_on_its_own_port_and_a_killed_one_takes_only_its_call(
    tmp_path: Path,
) -> None:
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    sip_port, rtp_low = free_udp_ports(2), random.randrange(30_000, 39_000, 2)
    rtp_high = rtp_low + 2 * RTP_PAIRS - 1
    proc, _ = start_workers(
        tmp_path, "--sip", f"127.0.0.1:{sip_port}", "--rtp-ports", f"{rtp_low}-{rtp_high}"
    )
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    slices = {0: range(rtp_low, rtp_low + RTP_PAIRS), 1: range(rtp_low + RTP_PAIRS, rtp_high + 1)}
    uacs: list[Uac] = []
    try:
        ready = await wait_ready(proc, log)
        assert ready["sip"] == [str(sip_port), str(sip_port + 1)], ready
        for worker_id in (0, 1):  # a call to PORT+j is worker j's, with RTP from its slice
            port = sip_port + worker_id
            uacs.append(uac := await sip_call(port, f"to-worker-{worker_id}", contact_port=port))
            assert (await row_of(db, uac.call_id))["worker_id"] == worker_id
            assert uac.remote_rtp[1] in slices[worker_id], (worker_id, uac.remote_rtp)
            assert await echoed_packets(uac) >= 50, worker_id

        pids = workers_by_id(proc)
        os.kill(pids[1], signal.SIGKILL)
        with trio.fail_after(60):  # its call ends (restart or the sibling's reaping)
            while call_rows(db)[uacs[1].call_id]["status"] != "hangup":
                await trio.sleep(0.2)
        assert call_rows(db)[uacs[1].call_id]["hangup_cause"] == "node_lost"
        assert call_rows(db)[uacs[0].call_id]["status"] != "hangup"
        assert await echoed_packets(uacs[0]) >= 50  # the other worker's call goes on

        with trio.fail_after(60):  # restarted under the same id, on the same SIP port
            while workers_by_id(proc).get(1) in (None, pids[1]):
                await trio.sleep(0.2)
            while not await trio.to_thread.run_sync(sip_options_ok, sip_port + 1):
                assert proc.poll() is None, log_tail(log)
        uacs.append(again := await sip_call(sip_port + 1, "to-worker-1-again", sip_port + 1))
        assert (await row_of(db, again.call_id))["worker_id"] == 1
        assert again.remote_rtp[1] in slices[1]
        assert await echoed_packets(again) >= 50

        for uac in (uacs[0], again):
            assert (await uac.in_dialog("BYE")).status == 200
        with trio.fail_after(20):
            while any(call_rows(db)[u.call_id]["status"] != "hangup" for u in (uacs[0], again)):
                await trio.sleep(0.2)
    finally:
        for uac in uacs:
            uac.close()
        await trio.to_thread.run_sync(stop_serve, proc)
    assert proc.returncode == 0, log_tail(log)


async def busy_callee(
    sock: trio.socket.SocketType, db: Path, placed: dict[str, tuple[int, int]]
) -> None:
    """A callee that answers each new INVITE 486 and notes its Call-ID's (source port, worker)."""
    while True:
        data, source = await sock.recvfrom(65535)
        invite = parse_message(data)
        if not isinstance(invite, SipRequest) or invite.method != "INVITE":
            continue  # the ACK of our 486
        call_id = invite.get("Call-ID") or ""
        busy = SipResponse(status=486, reason="Busy Here", headers=[
            (name, invite.get(name) or "") for name in ("Via", "From", "Call-ID", "CSeq")
        ] + [("To", f"{invite.get('To')};tag=busy")])  # fmt: skip
        await sock.sendto(busy.serialize(), source)
        if call_id not in placed:
            placed[call_id] = (int(source[1]), int((await row_of(db, call_id))["worker_id"]))


@pytest.mark.slow
async def test_a_call_placed_through_the_api_leaves_from_its_workers_own_sip_port(
    tmp_path: Path,
) -> None:
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    sip_port = free_udp_ports(2)
    callee = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await callee.bind(("127.0.0.1", 0))
    trunk = f"127.0.0.1:{callee.getsockname()[1]}"
    proc, ports = start_workers(tmp_path, "--sip", f"127.0.0.1:{sip_port}", "--sip-outbound", trunk)
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    placed: dict[str, tuple[int, int]] = {}  # SIP Call-ID -> (INVITE's source port, worker)
    try:
        await wait_ready(proc, log)
        key = access_key(log)
        status, text = post(ports["http"], "/v1.0/agents", key, {"name": "dialler"})
        assert status == 201, text
        body = {"leg": "sip", "source": "+15550001", "destination": "+15550002",
                "agent_id": json.loads(text)["id"]}  # fmt: skip
        async with trio.open_nursery() as nursery:
            nursery.start_soon(busy_callee, callee, db, placed)
            with trio.fail_after(60):  # each request on a new connection: either worker's
                while {worker for _, worker in placed.values()} != {0, 1}:
                    answer = await trio.to_thread.run_sync(
                        post, ports["http"], "/v1.0/calls", key, body
                    )
                    assert answer[0] == 201, answer
                    await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
        for source_port, worker_id in placed.values():
            assert source_port == sip_port + worker_id, placed
    finally:
        callee.close()
        await trio.to_thread.run_sync(stop_serve, proc)


@pytest.mark.slow
async def test_kamailio_spreads_calls_over_the_workers_sip_ports(
    tmp_path: Path, sip_peers: None
) -> None:
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    sip_port = free_udp_ports(2)
    proc, _ = start_workers(tmp_path, "--sip", f"127.0.0.1:{sip_port}")
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    uacs: list[Uac] = []
    try:
        await wait_ready(proc, log)
        # One dispatcher.list line per worker port, as the README says; round-robin (4)
        async with kamailio(tmp_path, [(sip_port, 0), (sip_port + 1, 0)], alg=4) as edge:
            for n in range(4):
                uacs.append(uac := await sip_call(edge, f"via-kamailio-{n}"))
                await row_of(db, uac.call_id)
            workers = [call_rows(db)[uac.call_id]["worker_id"] for uac in uacs]
            assert sorted(workers) == [0, 0, 1, 1], workers
            for uac in uacs:
                assert await echoed_packets(uac) >= 50, uac.call_id
                assert (await uac.in_dialog("BYE")).status == 200
    finally:
        for uac in uacs:
            uac.close()
        await trio.to_thread.run_sync(stop_serve, proc)


def serve_refuses(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``serve --workers`` with ``args``, against a Redis nobody listens on: what is checked
    before any worker starts never reaches it."""
    return subprocess.run(
        [
            *(sys.executable, "-m", "callbridge", "serve", "--agent", "echo"),
            *("--redis", f"redis://127.0.0.1:{free_port()}/0"),
            *("--http", f"127.0.0.1:{free_port()}", "--audiosocket", f"127.0.0.1:{free_port()}"),
            *("--agent-listen", f"127.0.0.1:{free_port()}"),
            *("--db", f"sqlite:///{tmp_path / 'serve.db'}", *args),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_worker_rtp_slice_too_small_is_refused_at_start(tmp_path: Path) -> None:
    sip = f"127.0.0.1:{free_udp_ports(3)}"
    done = serve_refuses(tmp_path, "--workers", "3", "--sip", sip, "--rtp-ports", "30000-30003")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--rtp-ports 30000-30003 holds 2 RTP port pair(s) for 3 workers" in done.stderr


def test_registration_and_ari_websocket_media_without_link_port_are_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    """--ari runs with workers (tests/sip/test_workers_ari.py); only its chan_websocket media
    without --link-port is refused: Asterisk's websocket_client.conf must name worker 0's own
    listener, which has no fixed port without it."""
    sip = f"127.0.0.1:{free_udp_ports(2)}"
    register = ("--sip", sip, "--sip-register", "sip:bot@127.0.0.1:5080")
    done = serve_refuses(tmp_path, "--workers", "2", *register)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--sip-register with --workers > 1" in done.stderr
    ari = ("--ari", "http://127.0.0.1:8088", "--ari-user", "callbridge", "--ari-media", "websocket")
    done = serve_refuses(tmp_path, "--workers", "2", *ari, env={"CALLBRIDGE_ARI_PASSWORD": "x"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--ari-media websocket with --workers > 1 needs --link-port" in done.stderr


def test_a_worker_sip_port_in_use_stops_serve_before_any_worker_starts(tmp_path: Path) -> None:
    base = free_udp_ports(2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", base + 1))  # worker 1's port
        done = serve_refuses(tmp_path, "--workers", "2", "--sip", f"127.0.0.1:{base}")
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{base + 1} (--sip)" in done.stderr
    assert '"worker ready"' not in done.stderr


def test_worker_slices_are_disjoint_whole_pairs_of_the_range() -> None:
    cfg = SipConfig(HostPort("127.0.0.1", 5080), rtp_port_min=10_001, rtp_port_max=10_020)
    parts = [for_worker(cfg, j, 3) for j in range(3)]
    assert [p.listen.port for p in parts] == [5080, 5081, 5082]
    ports = [range(p.rtp_port_min, p.rtp_port_max + 1) for p in parts]
    assert [(r.start, r.stop - 1) for r in ports] == [(10_002, 10_007), (10_008, 10_013),
                                                      (10_014, 10_021)]  # fmt: skip
    assert for_worker(cfg, 0, 1) is cfg  # one worker: the flags as given
    kernel = for_worker(SipConfig(HostPort("127.0.0.1", 0)), 1, 2)
    assert kernel.listen.port == 0  # port 0: each worker's picked by the kernel
    with pytest.raises(ConfigError, match="65536"):
        for_worker(SipConfig(HostPort("127.0.0.1", 65535)), 1, 2)
    with pytest.raises(ConfigError, match="1 RTP port pair"):
        for_worker(SipConfig(HostPort("127.0.0.1", 5080), rtp_port_min=10_000,
                             rtp_port_max=10_001), 0, 2)  # fmt: skip
