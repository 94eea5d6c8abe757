"""``callbridge serve --workers 2`` as a user runs it: two media processes behind one AudioSocket
port and one HTTP port, sharing state through Redis. Both take calls and echo them; a worker that
is SIGKILLed takes only its own calls (their rows end as ``node_lost`` with one ``call_hungup``
each, the other worker's calls keep echoing) and is restarted; API commands (hangup, say, DTMF, a
transfer) reach the calls of either worker, the other worker's included."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from callbridge.workers import ROLE_ENV
from tests.conftest import require_service
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import best_snr_db, tone
from tests.media.dtmf_detect import dtmf_keys
from tests.test_serve import free_port, stop_serve

REDIS_URL = os.environ.get("CALLBRIDGE_TEST_REDIS", "redis://127.0.0.1:6379/15")
ECHO_SNR_DB = 30.0  # the echo agent plays the caller back: a clean copy, not noise


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def start_workers(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    ports = {"http": free_port(), "audiosocket": free_port(), "agent": free_port()}
    with (tmp_path / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "callbridge", "serve", "--workers", "2"),
                *("--agent", "echo", "--redis", REDIS_URL, "--node-ttl", "3"),
                *("--leg-idle-timeout", "300"),  # the test's callers are silent between tones
                *("--http", f"127.0.0.1:{ports['http']}"),
                *("--audiosocket", f"127.0.0.1:{ports['audiosocket']}"),
                *("--agent-listen", f"127.0.0.1:{ports['agent']}"),
                *("--db", f"sqlite:///{tmp_path / 'serve.db'}", *extra),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    return proc, ports


def parent_ready(log: Path) -> dict[str, Any] | None:
    """The parent's "callbridge ready" record (each worker logs its own, without ``workers``)."""
    for line in log.read_text().splitlines():
        if '"callbridge ready"' in line and '"workers"' in line:
            return json.loads(line)  # type: ignore[no-any-return]
    return None


def log_tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def wait_ready(proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    with trio.fail_after(120):
        while (record := parent_ready(log)) is None:
            assert proc.poll() is None, log_tail(log)
            await trio.sleep(0.2)
    return record


def access_key(log: Path) -> str:
    for line in log.read_text().splitlines():
        if '"first admin access key created"' in line:
            return str(json.loads(line)["access_key"])
    raise AssertionError("no first access key in the log")


def workers_by_id(proc: subprocess.Popen[bytes]) -> dict[int, int]:
    """Worker id -> pid, from the role each worker was started with (``ID,FDS...``)."""
    found = {}
    for child in psutil.Process(proc.pid).children():
        role = child.environ().get(ROLE_ENV)
        if role is not None:
            found[int(role.split(",")[0])] = child.pid
    return found


def call_rows(db: Path) -> dict[str, dict[str, Any]]:
    """Every call row by its AudioSocket UUID (leg_ref), read the way a second process reads."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, leg_ref, worker_id, status, hangup_cause FROM calls")
        return {r["leg_ref"]: dict(r) for r in rows}


def hungup_events(db: Path, call_id: str) -> int:
    with sqlite3.connect(db) as conn:
        query = "SELECT COUNT(*) FROM events WHERE type = 'call_hungup' AND resource_id = ?"
        return int(conn.execute(query, (call_id,)).fetchone()[0])


async def placed_on(db: Path, peer: AsteriskPeer) -> dict[str, Any]:
    with trio.fail_after(20):
        while (row := call_rows(db).get(str(peer.call_uuid))) is None:
            await trio.sleep(0.1)
    return row


async def echo_snr_db(peer: AsteriskPeer, freq_hz: float) -> float:
    """Play a tone on an open call and measure how cleanly it comes back."""
    src, before = tone(freq_hz, 0.6), len(peer.audio())
    await peer.play(src)
    with trio.move_on_after(10):
        while len(peer.audio()) - before < len(src):
            await trio.sleep(0.05)
    return best_snr_db(src, peer.audio()[before:], max_delay=1500)[0]


def post(port: int, path: str, key: str, body: Any = None) -> tuple[int, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Authorization": f"AccessKey {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def api_via(
    port: int, calls_active: int, key: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """``method path`` on a keep-alive connection that the worker holding ``calls_active``
    calls accepted (its /health says so), however many connections it takes."""
    headers = {"Authorization": f"AccessKey {key}", "Content-Type": "application/json"}
    for _ in range(300):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/health")
            if json.loads(conn.getresponse().read())["calls_active"] == calls_active:
                data = None if body is None else json.dumps(body).encode()
                conn.request(method, path, data, headers)
                answer = conn.getresponse()
                return int(answer.status), json.loads(answer.read())
        finally:
            conn.close()
    raise AssertionError(f"no worker answered /health with calls_active {calls_active}")


def command_via(
    port: int, calls_active: int, call_id: str, key: str, op: str, body: Any = None
) -> tuple[int, Any]:
    """POST call command ``op`` through the worker holding ``calls_active`` calls."""
    return api_via(port, calls_active, key, "POST", f"/v1.0/calls/{call_id}/{op}", body or {})


async def place_calls(
    port: int,
    db: Path,
    nursery: trio.Nursery,
    held: dict[int, list[AsteriskPeer]],
    enough: Callable[[dict[int, list[AsteriskPeer]]], bool],
) -> None:
    """AudioSocket callers, each listed under the worker that took it, until ``enough``
    (whichever worker is free accepts)."""
    with trio.fail_after(60):
        while not enough(held):
            peer = await AsteriskPeer.connect(port)
            nursery.start_soon(peer.read_until_closed)
            held[int((await placed_on(db, peer))["worker_id"])].append(peer)


def events_of(db: Path, call_id: str, kind: str) -> list[Any]:
    with sqlite3.connect(db) as conn:
        query = "SELECT data FROM events WHERE type = ? AND resource_id = ?"
        return [json.loads(r[0]) for r in conn.execute(query, (kind, call_id))]


async def commands_reach_the_sibling(
    port: int, calls_active: int, peer: AsteriskPeer, call_id: str, key: str, db: Path
) -> None:
    """Say, DTMF and a transfer to another agent, sent to the worker that does not hold the call
    (it holds ``calls_active`` calls), act on it; to a number, the holder gives its own answer."""

    async def via(op: str, body: Any) -> tuple[int, Any]:
        return await trio.to_thread.run_sync(
            command_via, port, calls_active, call_id, key, op, body
        )

    assert await via("say", {"text": "hello"}) == (200, {"id": call_id, "status": "queued"})
    heard_before = len(peer.audio())
    assert await via("dtmf", {"digits": "5"}) == (200, {"id": call_id, "status": "sent"})
    with trio.move_on_after(5):  # 100 ms of in-band tone, paced out
        while "5" not in dtmf_keys(peer.audio()[heard_before:], 8000):
            await trio.sleep(0.2)
    assert "5" in dtmf_keys(peer.audio()[heard_before:], 8000), "the caller did not hear the 5"
    status, text = await trio.to_thread.run_sync(post, port, "/v1.0/agents", key, {"name": "s"})
    assert status == 201, text
    target = f"agent:{json.loads(text)['id']}"
    moved = await via("transfer", {"target": target})
    assert moved == (200, {"id": call_id, "status": "transferring"})
    with trio.fail_after(10):
        while not (done := events_of(db, call_id, "call_transferred")):
            await trio.sleep(0.1)
    assert done == [{"target": target, "status": "agent"}]
    status, dialled = await via("transfer", {"target": "+15550001111"})  # the holder's answer
    assert (status, dialled.get("error")) in ((200, None), (422, "leg_cannot_transfer")), dialled


@pytest.mark.slow
async def test_two_workers_share_the_port_and_a_killed_one_takes_only_its_calls(
    tmp_path: Path,
) -> None:
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    proc, ports = start_workers(tmp_path)
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    try:
        ready = await wait_ready(proc, log)
        assert ready["workers"] == 2 and len(ready["pids"]) == 2
        key = access_key(log)  # minted once, by the parent, before the workers started
        assert log.read_text().count('"first admin access key created"') == 1
        async with trio.open_nursery() as nursery:
            peers: dict[int, list[AsteriskPeer]] = {0: [], 1: []}
            await place_calls(  # until both workers have two
                ports["audiosocket"], db, nursery, peers, lambda h: min(map(len, h.values())) >= 2
            )
            for worker_id, held in peers.items():  # echo heard on each worker's calls
                for peer in held:
                    snr = await echo_snr_db(peer, 500 + 100 * worker_id)
                    assert snr > ECHO_SNR_DB, (worker_id, snr)

            pids = workers_by_id(proc)
            os.kill(pids[1], signal.SIGKILL)
            with trio.fail_after(10):  # the kernel closes the dead worker's connections
                while any(p.closed_at is None for p in peers[1]):
                    await trio.sleep(0.05)
            for peer in peers[0]:  # the other worker's calls carry on, untouched
                assert peer.closed_at is None
                assert await echo_snr_db(peer, 900) > ECHO_SNR_DB
            with trio.fail_after(60):  # ended by its restart or by the surviving sibling
                while any(call_rows(db)[str(p.call_uuid)]["status"] != "hangup" for p in peers[1]):
                    await trio.sleep(0.2)
            for peer in peers[1]:
                row = call_rows(db)[str(peer.call_uuid)]
                assert row["hangup_cause"] == "node_lost"
            with trio.fail_after(60):  # restarted under the same worker id
                while (restarted := workers_by_id(proc).get(1)) in (None, pids[1]):
                    await trio.sleep(0.2)
            with trio.fail_after(60):  # ...and taking calls again
                while True:
                    peer = await AsteriskPeer.connect(ports["audiosocket"])
                    nursery.start_soon(peer.read_until_closed)
                    if (await placed_on(db, peer))["worker_id"] == 1:
                        break
                    peers[0].append(peer)
            assert workers_by_id(proc)[1] == restarted
            assert await echo_snr_db(peer, 700) > ECHO_SNR_DB
            peers[1] = [peer]
            for peer in peers[0]:
                assert peer.closed_at is None  # the restart did not touch the other worker's

            # A command reaches the call on the other worker: /health's calls_active is the
            # answering worker's own, which names the worker that accepted a keep-alive
            # connection; on it, hang up the sibling's call (worker 0 holds 2 or more, 1 one).
            on_worker0 = len(peers[0])
            for via_calls, peer in ((on_worker0, peers[1][0]), (0, peers[0][0])):
                call_id = call_rows(db)[str(peer.call_uuid)]["id"]
                if via_calls:  # worker 0 acting on worker 1's call: the other commands too
                    await commands_reach_the_sibling(
                        ports["http"], via_calls, peer, call_id, key, db
                    )
                status, _ = await trio.to_thread.run_sync(
                    command_via, ports["http"], via_calls, call_id, key, "hangup"
                )
                assert status == 200, (status, call_rows(db)[str(peer.call_uuid)])
                with trio.fail_after(10):
                    while peer.closed_at is None:
                        await trio.sleep(0.05)
            for peer in peers[0][1:]:  # the rest on new connections, whichever worker takes them
                call_id = call_rows(db)[str(peer.call_uuid)]["id"]
                answer = post(ports["http"], f"/v1.0/calls/{call_id}/hangup", key)
                assert answer[0] == 200, (answer, call_rows(db)[str(peer.call_uuid)])
                with trio.fail_after(10):
                    while peer.closed_at is None:
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        with trio.fail_after(20):  # rows, and their events, exactly once each
            while any(r["status"] != "hangup" for r in call_rows(db).values()):
                await trio.sleep(0.2)
        await trio.sleep(5)  # past a heartbeat round: a late second reaper would show now
        for row in call_rows(db).values():
            assert hungup_events(db, row["id"]) == 1, row
        last = await AsteriskPeer.connect(ports["audiosocket"])  # live when serve stops
        await placed_on(db, last)
        children = psutil.Process(proc.pid).children()
    finally:
        stop_serve(proc)
    assert proc.returncode == 0
    _, alive = psutil.wait_procs(children, timeout=10)  # the workers and the agent stop too
    assert not alive, alive
    row = call_rows(db)[str(last.call_uuid)]  # its worker ended it before it closed storage
    assert (row["status"], row["hangup_cause"]) == ("hangup", "shutdown"), row
    assert hungup_events(db, row["id"]) == 1


def test_more_than_one_worker_needs_redis(tmp_path: Path) -> None:
    """Without Redis each worker would keep its own events and caches: refused, and said why."""
    done = subprocess.run(
        [sys.executable, "-m", "callbridge", "serve", "--workers", "2", "--agent", "echo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "--workers > 1 needs --redis" in done.stderr


def test_a_worker_that_cannot_start_stops_serve_with_its_reason(tmp_path: Path) -> None:
    """Redis refusing the workers: each would exit at start forever; serve stops and says so."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "callbridge", "serve", "--workers", "2", "--agent", "echo"),
            *("--redis", dead_redis, "--http", f"127.0.0.1:{free_port()}"),
            *("--audiosocket", f"127.0.0.1:{free_port()}"),
            *("--agent-listen", f"127.0.0.1:{free_port()}"),
            *("--db", f"sqlite:///{tmp_path / 'serve.db'}"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "callbridge cannot start: worker 0 exited with status 1" in done.stderr
