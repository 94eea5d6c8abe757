"""A conference whose callers are on two workers of one ``serve --workers 2``: one bridge.

The bridge lives on the worker of the first call to join; the other worker's call joins it over
a conference link, and so does a call on another node (a plain ``serve`` on the same database
and Redis, as another box). Every worker shares the one ``--http`` listener, so a link sent
there could be accepted by the sibling, which has no ticket for it (``503
conference_unreachable``); each worker takes its links on a listener of its own
(``--link-port``, here ports the kernel picks). Each caller hears the others and not itself;
kicks and the end sent through either worker act.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import require_service
from tests.control.test_nodes_conference import LEVEL, TONES_HZ, Expected, hear_soon
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import tone
from tests.test_serve import free_port, stop_serve
from tests.test_workers import (
    REDIS_URL,
    _redis_up,
    access_key,
    api_via,
    place_calls,
    placed_on,
    start_workers,
    wait_ready,
)


def start_node(tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[str, int], Path]:
    """A one-process ``serve`` on the workers' database and Redis: another node."""
    ports = {"http": free_port(), "audiosocket": free_port(), "agent": free_port()}
    log = tmp_path / "node.log"
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "callbridge", "serve", "--agent", "echo"),
                *("--redis", REDIS_URL, "--node-ttl", "3", "--leg-idle-timeout", "300"),
                *("--http", f"127.0.0.1:{ports['http']}"),
                *("--audiosocket", f"127.0.0.1:{ports['audiosocket']}"),
                *("--agent-listen", f"127.0.0.1:{ports['agent']}"),
                *("--db", f"sqlite:///{tmp_path / 'serve.db'}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return proc, ports, log


def said_ready(proc: subprocess.Popen[bytes], log: Path) -> bool:
    text = log.read_text()
    assert proc.poll() is None, text[-3000:]
    return '"callbridge ready"' in text


async def node_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    with trio.fail_after(120):
        while not said_ready(proc, log):
            await trio.sleep(0.2)


@pytest.mark.slow
async def test_callers_on_two_workers_and_another_node_hear_each_other_in_one_bridge(
    tmp_path: Path,
) -> None:
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    proc, ports = start_workers(tmp_path)
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    node = None
    try:
        await wait_ready(proc, log)
        key = access_key(log)
        node, node_ports, node_log = start_node(tmp_path)
        await node_ready(node, node_log)
        async with trio.open_nursery() as nursery:
            # Callers until both workers hold some and not as many (a worker is told apart by
            # its /health's calls_active); the first on each worker talks, the rest are silent.
            held: dict[int, list[AsteriskPeer]] = {0: [], 1: []}
            await place_calls(
                ports["audiosocket"],
                db,
                nursery,
                held,
                lambda h: bool(h[0] and h[1]) and len(h[0]) != len(h[1]),
            )
            count = {w: len(peers) for w, peers in held.items()}
            other = await AsteriskPeer.connect(node_ports["audiosocket"])  # on the other node
            nursery.start_soon(other.read_until_closed)
            peers = [held[0][0], held[1][0], other]
            call_ids = [str((await placed_on(db, peer))["id"]) for peer in peers]
            for i, peer in enumerate(peers):
                nursery.start_soon(peer.play, tone(TONES_HZ[i], 90.0, level=LEVEL))

            async def via(worker: int, method: str, path: str, body: Any = None) -> Any:
                return await trio.to_thread.run_sync(
                    api_via, ports["http"], count[worker], key, method, path, body
                )

            created = await via(0, "POST", "/v1.0/conferences", {"name": "w", "tones": False})
            assert created[0] == 201, created
            conf = created[1]["id"]
            seats = f"/v1.0/conferences/{conf}/participants"

            async def join(through: int, caller: int) -> str:
                status, body = await via(through, "POST", seats, {"call_id": call_ids[caller]})
                assert status == 201, (through, caller, body)  # (before: 503 unreachable)
                return str(body["id"])

            # Caller 0 (worker 0) first: worker 0 holds the bridge; caller 1 (worker 1) and
            # caller 2 (the other node) join it over links, the requests sent through either.
            seat = {0: await join(1, 0), 1: await join(0, 1), 2: await join(1, 2)}
            together: Expected = [
                (p, {0, 1, 2} - {i}, f"{i} hears the others") for i, p in enumerate(peers)
            ]
            await hear_soon(together, trio.current_time() + 0.3)

            # Callers 1 and 2 kicked (back with their echo agents) and joined again, three
            # times, through either worker: each join is a new link (before: any of them could
            # land on the worker that does not hold the bridge, 503). Then caller 0, on the
            # holder, kicked through worker 1.
            apart: Expected = [
                (peers[0], set(), "0 alone"),
                (peers[1], {1}, "1 with its agent"),
                (peers[2], {2}, "2 with its agent"),
            ]
            for through in (0, 1, 0):
                for caller, by in ((1, through), (2, 1 - through)):
                    kicked = await via(by, "DELETE", f"{seats}/{seat[caller]}")
                    assert kicked[0] == 200 and kicked[1]["status"] == "left", kicked
                await hear_soon(apart, trio.current_time() + 0.3)
                seat[1], seat[2] = await join(1 - through, 1), await join(through, 2)
                await hear_soon(together, trio.current_time() + 0.3)
            kicked = await via(1, "DELETE", f"{seats}/{seat[0]}")
            assert kicked[0] == 200 and kicked[1]["status"] == "left", kicked
            without0: Expected = [
                (peers[0], {0}, "0 with its agent"),
                (peers[1], {2}, "1 hears 2"),
                (peers[2], {1}, "2 hears 1"),
            ]
            await hear_soon(without0, trio.current_time() + 0.3)

            # Caller 0 back; the end, through worker 1: everyone back with their agents.
            seat[0] = await join(0, 0)
            await hear_soon(together, trio.current_time() + 0.3)
            ended = await via(1, "DELETE", f"/v1.0/conferences/{conf}")
            assert ended[0] == 200 and ended[1]["status"] == "ended", ended
            own: Expected = [
                (p, {i}, f"{i} with its agent after the end") for i, p in enumerate(peers)
            ]
            await hear_soon(own, trio.current_time() + 0.3)
            listing = await via(0, "GET", f"{seats}?page_size=50")
            assert sorted(r["status"] for r in listing[1]["result"]) == ["left"] * 10
            nursery.cancel_scope.cancel()
    finally:
        if node is not None:
            stop_serve(node)
        stop_serve(proc)
