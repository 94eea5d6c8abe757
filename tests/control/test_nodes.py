"""Two real ``callbridge serve`` nodes on one MariaDB and one Redis, as an operator runs them.

A command sent to the node that does not hold the call acts on the call and answers as the holder
would (a transfer to another agent included); a holder that stops answering (SIGSTOP) gets a 503
within the bound, never "ended"; a node SIGKILLed with a live call in a conference has the call
ended by the survivor (``node_lost``, one ``call_hungup`` event) within the heartbeat TTL, and the
conference it emptied ended; its recording, valid as far as it got, is named by the survivor's API
and served by the node once it is back on the same ports with its own agent; a node restarted
with the same identity ends its own leftover calls at start.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import trio
from conftest import MYSQL_URL, REDIS_URL, require_service

from control.bootstrap import create_access_key, ensure_bootstrap
from control.bridge import AsyncioBridge
from control.db import Database, DatabaseUrl, open_database
from control.db.migrate import drop_all, migrate
from control.store import Store
from tests.control.test_e2e_audiosocket import _ws_collect
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import tone
from tests.test_serve import free_port, one_echo_call, wait_http

COMMAND_TIMEOUT_S = 2.0  # ControlConfig.command_timeout_s's default


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"


@dataclass
class Platform:
    tmp_path: Path
    prefix: str
    db: Database
    auth: str
    customer_id: str
    nodes: list[Node] = field(default_factory=list)

    async def start(
        self, name: str, ttl_s: float, ports: dict[str, int] | None = None, record: bool = False
    ) -> Node:
        ports = ports or {k: free_port() for k in ("http", "audiosocket", "agent")}
        command = [sys.executable, "-m", "callbridge", "serve", "--agent", "echo"]
        if record:  # each node its own directory, as each box has its own disk
            command += ["--record-dir", str(self.record_dir(name))]
        command += ["--http", f"127.0.0.1:{ports['http']}"]
        command += ["--audiosocket", f"127.0.0.1:{ports['audiosocket']}"]
        command += ["--agent-listen", f"127.0.0.1:{ports['agent']}"]
        command += ["--db", MYSQL_URL, "--db-prefix", self.prefix, "--redis", REDIS_URL]
        command += ["--node-id", name, "--node-ttl", str(ttl_s)]
        log = self.tmp_path / f"{name}-{len(self.nodes)}.log"
        with log.open("wb") as out:
            proc = await trio.to_thread.run_sync(
                lambda: subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out)
            )
        node = Node(name, proc, ports, log)
        self.nodes.append(node)
        await wait_http(ports["http"])
        return node

    def record_dir(self, name: str) -> Path:
        return self.tmp_path / f"{name}-recordings"

    async def api(self, node: Node, method: str, path: str, body: Any = None) -> Response:
        return await trio.to_thread.run_sync(_request, method, node.base + path, self.auth, body)

    async def row(self, call_id: str) -> dict[str, Any]:
        rows = await self.db.fetch_all("SELECT * FROM {p}calls WHERE id = ?", [call_id])
        return dict(rows[0])

    async def hungup_events(self, call_id: str) -> list[dict[str, Any]]:
        return await self.events(call_id, "call_hungup")

    async def events(self, resource_id: str, kind: str) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            "SELECT data FROM {p}events WHERE resource_id = ? AND type = ?", [resource_id, kind]
        )
        return [json.loads(r["data"]) for r in rows]


@dataclass
class Response:
    status: int
    body: dict[str, Any]  # JSON answers; a file's bytes are in ``raw``
    headers: dict[str, str]
    elapsed_s: float
    raw: bytes = b""


def _request(method: str, url: str, auth: str, body: Any) -> Response:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    lowered = {k.lower(): v for k, v in hdrs.items()}
    body = json.loads(raw) if "json" in lowered.get("content-type", "") else {}
    return Response(status, body, lowered, time.monotonic() - started, raw)


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    """MariaDB migrated and bootstrapped the operator's way, an access key; nodes started by the
    test are killed and the tables dropped afterwards."""
    url = DatabaseUrl.parse(MYSQL_URL)
    require_service("MariaDB", url.host, url.port)
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"n{uuid.uuid4().hex[:8]}_"
    bridge = AsyncioBridge()
    try:
        async with open_database(url, prefix, bridge) as db:
            await migrate(db)
            boot = await ensure_bootstrap(Store(db))
            _, token = await create_access_key(Store(db), boot.customer_id, "customer_admin", "t")
            p = Platform(tmp_path, prefix, db, f"AccessKey {token}", boot.customer_id)
            try:
                yield p
            finally:
                for node in p.nodes:
                    if node.proc.poll() is None:
                        os.kill(node.proc.pid, signal.SIGCONT)
                        node.proc.kill()
                        node.proc.wait(10)
                with trio.CancelScope(shield=True):
                    await drop_all(db)
    finally:
        bridge.close()


async def live_call(
    p: Platform, node: Node, nursery: trio.Nursery, pcm16: bytes | None = None
) -> tuple[AsteriskPeer, str]:
    """An AudioSocket caller on ``node`` playing ``pcm16`` (a 440 Hz tone); returns it once its
    call is answered."""
    peer = await AsteriskPeer.connect(node.ports["audiosocket"])
    nursery.start_soon(peer.read_until_closed)
    nursery.start_soon(peer.play, tone(440, 60.0) if pcm16 is None else pcm16)
    with trio.fail_after(15):
        while True:
            listing = await p.api(node, "GET", "/v1.0/calls?status=progressing")
            mine = [c for c in listing.body["result"] if c["leg_ref"] == str(peer.call_uuid)]
            if mine:
                return peer, mine[0]["id"]
            await trio.sleep(0.1)


def recorded_frames(wav: Path) -> int:
    """The frames a recording being written holds, by its header (0 before it has one)."""
    try:
        with wave.open(str(wav)) as recording:
            return int(recording.getnframes())
    except (OSError, EOFError, wave.Error):
        return 0


def dtmf_heard(pcm16: bytes, low_hz: float, high_hz: float, rate_hz: int = 8000) -> bool:
    """In some 200 ms window both tones of a DTMF digit stand far above the band around them."""
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    win = rate_hz // 5
    freqs = np.fft.rfftfreq(win, 1 / rate_hz)
    band = (freqs > 600) & (freqs < 1600)
    for start in range(0, x.size - win + 1, win // 2):
        spectrum = np.abs(np.fft.rfft(x[start : start + win] * np.hanning(win)))
        floor = float(np.median(spectrum[band])) + 1e-9
        peaks = [float(spectrum[np.abs(freqs - f) <= 10].max()) for f in (low_hz, high_hz)]
        if min(peaks) > 20 * floor:
            return True
    return False


async def test_commands_sent_to_the_other_node_act_on_the_call(
    platform: Platform, nursery: trio.Nursery
) -> None:
    p = platform
    a = await p.start("node-a", ttl_s=10)
    b = await p.start("node-b", ttl_s=10)
    peer, call_id = await live_call(p, a, nursery)
    assert (await p.row(call_id))["node_id"] == "node-a"
    path = f"/v1.0/calls/{call_id}"

    said_here = await p.api(a, "POST", f"{path}/say", {"text": "hello from the holder"})
    said = await p.api(b, "POST", f"{path}/say", {"text": "hello from the other node"})
    assert (said.status, said.body) == (said_here.status, said_here.body)
    assert (said.status, said.body) == (200, {"id": call_id, "status": "queued"})

    heard_before = len(peer.audio())
    sent = await p.api(b, "POST", f"{path}/dtmf", {"digits": "5"})
    assert (sent.status, sent.body) == (200, {"id": call_id, "status": "sent"})
    with trio.move_on_after(5):  # 100 ms of in-band tone, paced out after what is queued
        while not dtmf_heard(peer.audio()[heard_before:], 770, 1336):
            await trio.sleep(0.2)
    assert dtmf_heard(peer.audio()[heard_before:], 770, 1336), "the caller did not hear the 5"
    assert not dtmf_heard(peer.audio()[:heard_before], 770, 1336)

    # A transfer to another agent: node A switches the call's agent link, and says so
    sales = await p.api(b, "POST", "/v1.0/agents", {"name": "sales"})
    assert sales.status == 201, sales.body
    moved = await p.api(b, "POST", f"{path}/transfer", {"target": f"agent:{sales.body['id']}"})
    assert (moved.status, moved.body) == (200, {"id": call_id, "status": "transferring"})
    with trio.fail_after(10):
        while not (done := await p.events(call_id, "call_transferred")):
            await trio.sleep(0.1)
    assert done == [{"target": f"agent:{sales.body['id']}", "status": "agent"}]
    assert (await p.row(call_id))["agent_id"] == sales.body["id"]
    # To a number, the holder's own answer (node B has no call to judge by): started, or why not
    dialled = await p.api(b, "POST", f"{path}/transfer", {"target": "+15550001111"})
    if dialled.status == 200:
        assert dialled.body == {"id": call_id, "status": "transferring"}
    else:
        assert (dialled.status, dialled.body["error"]) == (422, "leg_cannot_transfer"), dialled
    ended = await p.api(b, "POST", f"{path}/hangup")
    assert (ended.status, ended.body) == (200, {"id": call_id, "status": "terminating"})
    with trio.fail_after(10):
        while peer.closed_at is None:  # the caller's leg on node A sees the hangup
            await trio.sleep(0.05)
        while (await p.row(call_id))["status"] != "hangup":
            await trio.sleep(0.1)
    assert (await p.row(call_id))["hangup_cause"] == "api"
    again = await p.api(b, "POST", f"{path}/hangup")
    assert again.status == 409 and again.body["error"] == "call_not_live"


async def test_a_stopped_holder_gets_503_within_the_bound_not_ended(
    platform: Platform, nursery: trio.Nursery
) -> None:
    p = platform
    a = await p.start("node-a", ttl_s=30)  # long enough that no one reaps it while stopped
    b = await p.start("node-b", ttl_s=30)
    peer, call_id = await live_call(p, a, nursery)
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        stuck = await p.api(b, "POST", f"/v1.0/calls/{call_id}/hangup")
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert stuck.status == 503 and stuck.body["error"] == "holder_unavailable", stuck.body
    assert "node-a" in stuck.body["message"] and stuck.headers.get("retry-after") == "1"
    assert stuck.elapsed_s < COMMAND_TIMEOUT_S + 2.0  # the bound, plus a loaded machine's slack
    assert (await p.row(call_id))["status"] == "progressing"
    assert peer.closed_at is None
    ended = await p.api(b, "POST", f"/v1.0/calls/{call_id}/hangup")  # awake again: it acts
    assert ended.status == 200
    with trio.fail_after(10):
        while peer.closed_at is None:
            await trio.sleep(0.05)


async def test_a_killed_node_has_its_calls_reaped_and_comes_back_with_its_own_agent(
    platform: Platform, nursery: trio.Nursery
) -> None:
    p = platform
    ttl_s = 4.0
    a = await p.start("node-a", ttl_s=ttl_s, record=True)
    b = await p.start("node-b", ttl_s=ttl_s, record=True)
    events: list[Any] = []
    subscribed = trio.Event()
    token = trio.lowlevel.current_trio_token()

    async def subscriber() -> None:
        events.extend(
            await trio.to_thread.run_sync(
                _ws_collect,
                f"ws://127.0.0.1:{b.ports['http']}/v1.0/ws",
                p.auth,
                f"customer_id:{p.customer_id}:call:*",
                lambda: token.run_sync_soon(subscribed.set),
                "call_hungup",
            )
        )

    nursery.start_soon(subscriber)
    with trio.fail_after(10):
        await subscribed.wait()
    _, call_id = await live_call(p, a, nursery)
    wav = p.record_dir("node-a") / f"{call_id}.wav"
    with trio.fail_after(20):  # some of the call on node A's disk (flushed twice a second)
        while recorded_frames(wav) < 1600:
            await trio.sleep(0.1)
    room = (await p.api(b, "POST", "/v1.0/conferences", {"name": "room"})).body["id"]
    seat = await p.api(a, "POST", f"/v1.0/conferences/{room}/participants", {"call_id": call_id})
    assert seat.status == 201, seat.body  # the call's audio is in node A's bridge now
    (agent,) = psutil.Process(a.proc.pid).children()
    on_disk = recorded_frames(wav)  # (as far as its header says: only whole flushes count)
    a.proc.kill()
    killed_at = trio.current_time()
    with trio.fail_after(ttl_s + ttl_s / 3 + 6):  # TTL, one reaper round, a loaded machine
        while not events:
            await trio.sleep(0.1)
    reaped_after_s = trio.current_time() - killed_at
    assert events[-1]["resource_id"] == call_id and events[-1]["type"] == "call_hungup"
    assert events[-1]["data"]["hangup_cause"] == "node_lost"
    row = await p.row(call_id)
    assert (row["status"], row["hangup_cause"]) == ("hangup", "node_lost")
    assert "node-a/0 stopped answering" in row["hangup_reason"]
    print(f"reaped {reaped_after_s:.1f} s after SIGKILL (node TTL {ttl_s} s)")
    gone, _ = await trio.to_thread.run_sync(psutil.wait_procs, [agent], 10)
    assert agent in gone, "node A's agent outlived it"
    late = await p.api(b, "POST", f"/v1.0/calls/{call_id}/hangup")
    assert late.status == 409 and late.body["error"] == "call_not_live"

    # Node A's bridge died with it: the conference it emptied is ended, its seat left
    with trio.fail_after(5):  # (right after the call's own event)
        while (await p.api(b, "GET", f"/v1.0/conferences/{room}")).body["status"] != "ended":
            await trio.sleep(0.1)
    (left,) = (await p.api(b, "GET", f"/v1.0/conferences/{room}/participants")).body["result"]
    assert (left["call_id"], left["status"]) == (call_id, "left")
    assert len(await p.events(room, "conference_ended")) == 1
    assert len(await p.events(room, "conference_participant_removed")) == 1

    # The recording stays on node A's disk: another node says where, not a bare "not found"
    elsewhere = await p.api(b, "GET", f"/v1.0/calls/{call_id}/recording")
    assert (elsewhere.status, elsewhere.body["error"]) == (404, "recording_on_other_node")
    assert "node-a" in elsewhere.body["message"]

    back = await p.start("node-a", ttl_s=ttl_s, ports=a.ports, record=True)  # same identity
    assert await one_echo_call(back.ports["audiosocket"]) > 30  # answered by its own new agent
    kept = await p.api(back, "GET", f"/v1.0/calls/{call_id}/recording")  # as far as it got
    assert kept.status == 200 and kept.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(kept.raw)) as recorded:
        assert (recorded.getnchannels(), recorded.getframerate()) == (2, 8000)
        assert recorded.getnframes() >= on_disk  # all it had written, and a valid file
        assert len(recorded.readframes(recorded.getnframes())) == recorded.getnframes() * 4
    await trio.sleep(ttl_s)  # a few more reaper rounds on both nodes: still one event
    assert len(await p.hungup_events(call_id)) == 1


async def test_a_node_restarted_with_the_same_identity_ends_its_leftover_calls(
    platform: Platform, nursery: trio.Nursery
) -> None:
    p = platform
    a = await p.start("node-a", ttl_s=60)  # no survivor: only the restart can end the call
    _, call_id = await live_call(p, a, nursery)
    a.proc.kill()
    a.proc.wait(10)
    assert (await p.row(call_id))["status"] == "progressing"  # the ghost the issue saw
    await p.start("node-a", ttl_s=60, ports=a.ports)
    row = await p.row(call_id)  # ended before the restarted node opened HTTP
    assert (row["status"], row["hangup_cause"]) == ("hangup", "node_lost")
    assert row["hangup_reason"].startswith("node restarted")
    (event,) = await p.hungup_events(call_id)
    assert event["hangup_cause"] == "node_lost"
