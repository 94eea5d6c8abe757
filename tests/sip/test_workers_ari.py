"""``callbridge serve --workers 2 --ari ...`` against a real Asterisk: worker 0 runs the ARI app,
each Stasis call's ExternalMedia reaches it on the listener the parent bound for it (the echo comes
back), ``POST /v1.0/calls`` with leg ``asterisk`` is placed whichever worker takes the request
(worker 1 carries it to worker 0), each worker's ``/ready`` says the app's connection, a call
command sent to worker 1 reaches the ARI call, and an Asterisk-mixed conference is joined and
ended through worker 1. A SIGKILLed worker 0 ends its ARI call (``node_lost``); restarted, its app
reconnects and adopts the caller still in the Stasis app. Over chan_websocket, Asterisk's
websocket_client.conf names worker 0's own listener (``--link-port``), and the calls echo too."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from tests.asterisk_instance import ARI_PASSWORD, ARI_USER, Asterisk, running_asterisk, write_wav
from tests.conftest import require_service
from tests.sip.ari_harness import (
    caller_dialplan,
    require_asterisk,
    seconds_of,
    target_dialplan,
    tone_pcm16,
)
from tests.test_agent_workers import free_port_pair
from tests.test_serve import stop_serve
from tests.test_workers import (
    _redis_up,
    access_key,
    api_via,
    command_via,
    log_tail,
    post,
    start_workers,
    wait_ready,
    workers_by_id,
)

pytestmark = [pytest.mark.slow, pytest.mark.service]
ORIGINATE = "channel originate Local/{}@caller/n extension 5551234@incoming"


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    if not _redis_up():
        require_service("redis", "serve --workers 2 shares its state through Redis")
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(700.0, 1.5))

    def dialplan(root: Path) -> str:
        forever = "exten => forever,1,Answer()\n same => n,Wait(600)\n"  # ends when hung up
        return caller_dialplan(root, wav, agent="", extra=forever) + target_dialplan(root, wav)

    with running_asterisk(dialplan) as ast:
        yield ast


def asterisk_rows(db: Path) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        query = "SELECT * FROM calls WHERE leg = 'asterisk' ORDER BY tm_create"
        return [dict(r) for r in conn.execute(query)]


async def wait_rows(db: Path, want: int, status: str = "") -> list[dict[str, Any]]:
    """At least ``want`` Asterisk call rows (in ``status``, where one is given)."""
    with trio.fail_after(60):
        while True:
            rows = [r for r in asterisk_rows(db) if not status or r["status"] == status]
            if len(rows) >= want:
                return rows
            await trio.sleep(0.2)


async def app_subscribed(asterisk: Asterisk) -> None:
    with trio.fail_after(60):
        while (await trio.to_thread.run_sync(asterisk.ari, "GET", "/applications")) == []:
            await trio.sleep(0.2)


def worker_0(proc: Any) -> int | None:
    """Worker 0's pid; None while it is gone (a zombie's environment cannot be read)."""
    try:
        return workers_by_id(proc).get(0)
    except psutil.NoSuchProcess:
        return None


async def place_via(port: int, calls_active: int, key: str, body: dict[str, Any]) -> Any:
    """POST /v1.0/calls through the worker that holds ``calls_active`` calls."""
    status, answer = await trio.to_thread.run_sync(
        api_via, port, calls_active, key, "POST", "/v1.0/calls", body
    )
    assert status == 201, answer
    return answer


async def asterisk_conference_through_worker_1(
    asterisk: Asterisk, port: int, key: str, db: Path
) -> None:
    """An Asterisk-mixed conference, joined and ended through worker 1: the join runs on the
    call's holder (worker 0), the end is carried to worker 0's app, which hangs the member up
    and drops Asterisk's bridge (the caller would otherwise wait there 600 s)."""
    for _ in range(2):  # one joins; the other keeps worker 0 told apart from worker 1 (no call)
        await trio.to_thread.run_sync(asterisk.rx, ORIGINATE.format("forever"))
        await wait_rows(db, 1 + len(await wait_rows(db, 0, "progressing")), "progressing")
    joining, staying = await wait_rows(db, 2, "progressing")
    create = {"name": "ari", "tones": False, "mixer": "asterisk"}
    status, text = post(port, "/v1.0/conferences", key, create)
    assert status == 201, text
    conference_id = json.loads(text)["id"]
    path = f"/v1.0/conferences/{conference_id}/participants"
    status, answer = await trio.to_thread.run_sync(
        api_via, port, 0, key, "POST", path, {"call_id": joining["id"]}
    )
    assert status in (200, 201), answer
    caller_id = joining["leg_ref"].split("/")[0]
    with trio.fail_after(20):  # the caller is in Asterisk's bridge, its agent gone
        while await bridge_of(asterisk, f"cbc-{conference_id}") != [caller_id]:
            await trio.sleep(0.2)
        await wait_rows(db, 1, "progressing")  # worker 0 holds only `staying` now
    status, answer = await trio.to_thread.run_sync(
        api_via, port, 0, key, "DELETE", f"/v1.0/conferences/{conference_id}"
    )
    assert status == 200, answer
    with trio.fail_after(20):
        while await bridge_of(asterisk, f"cbc-{conference_id}") is not None or caller_id in {
            c["id"] for c in await trio.to_thread.run_sync(asterisk.channels)
        }:
            await trio.sleep(0.2)
    status, _ = await trio.to_thread.run_sync(command_via, port, 0, staying["id"], key, "hangup")
    assert status == 200
    with trio.fail_after(30):
        while await wait_rows(db, 0, "progressing"):
            await trio.sleep(0.2)


async def bridge_of(asterisk: Asterisk, bridge_id: str) -> list[str] | None:
    """The channels in Asterisk's bridge ``bridge_id``; None once it is gone."""
    bridges = await trio.to_thread.run_sync(asterisk.ari, "GET", "/bridges")
    found = [list(b["channels"]) for b in bridges if b["id"] == bridge_id]
    return found[0] if found else None


async def test_workers_run_ari_calls_in_worker_0_and_place_them_from_either(
    asterisk: Asterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", ARI_PASSWORD)
    ari = ["--ari", asterisk.base_url, "--ari-user", ARI_USER]
    ari += ["--ari-outbound-dial", "Local/{destination}@callees/n"]
    proc, ports = start_workers(tmp_path, *ari)
    log, db, port = tmp_path / "serve.log", tmp_path / "serve.db", ports["http"]
    try:
        ready = await wait_ready(proc, log)
        assert ready["ari_media"] not in ("off", ports["audiosocket"]), ready
        key = access_key(log)
        await app_subscribed(asterisk)

        await trio.to_thread.run_sync(asterisk.rx, ORIGINATE.format("talk"))
        [talk] = await wait_rows(db, 1, "hangup")
        assert (talk["worker_id"], talk["hangup_cause"]) == (0, "caller")
        heard = (asterisk.root / "talk-heard.wav").read_bytes()[44:]
        assert seconds_of(heard, 700.0) >= 1.0, "the echo did not come back through worker 0"

        await trio.to_thread.run_sync(asterisk.rx, ORIGINATE.format("hold"))
        [hold] = await wait_rows(db, 1, "progressing")  # worker 0 holds 1 call, worker 1 none
        for calls_active in (1, 0):  # each worker's /ready says the app's connection
            status, ready = await trio.to_thread.run_sync(
                api_via, port, calls_active, key, "GET", "/ready"
            )
            assert (status, ready["checks"].get("asterisk")) == (200, "ok"), ready
        status, text = post(port, "/v1.0/agents", key, {"name": "dialler"})
        assert status == 201, text
        body = {"leg": "asterisk", "source": "+15550001", "destination": "+15559999"}
        body["agent_id"] = json.loads(text)["id"]
        by_zero = await place_via(port, 1, key, body)
        by_one = await place_via(port, 0, key, body)  # worker 1 carries it to worker 0
        for placed in (by_zero, by_one):
            assert (placed["leg"], placed["direction"], placed["worker_id"]) == (
                "asterisk",
                "outgoing",
                0,
            )
        assert log.read_text().count('"ari originate carried to worker 0"') == 1
        status, _ = await trio.to_thread.run_sync(command_via, port, 0, hold["id"], key, "hangup")
        assert status == 200
        with trio.fail_after(30):
            while {r["status"] for r in asterisk_rows(db)} != {"hangup"}:
                await trio.sleep(0.2)

        await asterisk_conference_through_worker_1(asterisk, port, key, db)

        await trio.to_thread.run_sync(asterisk.rx, ORIGINATE.format("hold"))
        [held] = await wait_rows(db, 1, "progressing")
        before = len(asterisk_rows(db))
        pid = workers_by_id(proc)[0]
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(60):  # its call ends; restarted, the app adopts the caller
            while worker_0(proc) in (None, pid):
                await trio.sleep(0.2)
            while len(asterisk_rows(db)) == before:
                assert proc.poll() is None, log_tail(log)
                await trio.sleep(0.2)
        rows = {r["id"]: r for r in asterisk_rows(db)}
        assert rows[held["id"]]["hangup_cause"] == "node_lost"
        adopted = [r for r in rows.values() if r["status"] != "hangup"]
        assert [r["worker_id"] for r in adopted] == [0], adopted
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    assert proc.returncode == 0, log_tail(log)


async def test_workers_take_ari_media_over_chan_websocket_on_worker_0s_own_listener(
    asterisk: Asterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ari-media websocket with --link-port BASE: websocket_client.conf's URI names worker 0's
    listener (BASE + 0), never the shared --http one, so every call's media reaches the app."""
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", ARI_PASSWORD)
    link_port = free_port_pair()
    ari = ["--ari", asterisk.base_url, "--ari-user", ARI_USER, "--ari-media", "websocket"]
    proc, _ = start_workers(tmp_path, *ari, "--link-port", str(link_port))
    log, db = tmp_path / "serve.log", tmp_path / "serve.db"
    try:
        ready = await wait_ready(proc, log)
        assert ready["ari_media"] == "off", ready  # no AudioSocket listener for it
        (asterisk.root / "etc" / "websocket_client.conf").write_text(
            "[callbridge]\ntype = websocket_client\nconnection_type = per_call_config\n"
            f"uri = ws://127.0.0.1:{link_port}/v1.0/chan-websocket?access_key={access_key(log)}\n"
            "protocols = media\n"
        )
        await trio.to_thread.run_sync(asterisk.rx, "module reload res_websocket_client.so")
        await app_subscribed(asterisk)
        for n in (1, 2):
            await trio.to_thread.run_sync(asterisk.rx, ORIGINATE.format("talk"))
            rows = await wait_rows(db, n, "hangup")
            heard = (asterisk.root / "talk-heard.wav").read_bytes()[44:]
            assert seconds_of(heard, 700.0) >= 1.0, f"call {n}: no echo over chan_websocket"
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    assert [(r["worker_id"], r["hangup_cause"]) for r in rows] == [(0, "caller")] * 2
    assert "WebSocket/callbridge" in asterisk.log_tail(20000), "not over chan_websocket"
