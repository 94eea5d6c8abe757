"""``callbridge serve --ari`` as a user runs it, against a real Asterisk: a Stasis call gets the
echo agent, its call row says leg ``asterisk`` with the channel and bridge ids, the API hangs
another one up through ARI, and the ARI password shows in no log."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.asterisk_instance import (
    ARI_PASSWORD,
    ARI_USER,
    Asterisk,
    free_port,
    running_asterisk,
    write_wav,
)
from tests.sip.ari_harness import (
    caller_dialplan,
    conference_dialplan,
    require_asterisk,
    seconds_of,
    target_dialplan,
    tone_level,
    tone_pcm16,
)
from tests.test_serve import start_serve, stop_serve

pytestmark = [pytest.mark.slow]
TONES = (500.0, 800.0)


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(700.0, 1.5))

    # No agent argument: the bootstrap customer's default agent answers.
    conf = [write_wav(tmp_path / f"c{i}.wav", tone_pcm16(hz, 2.0)) for i, hz in enumerate(TONES)]

    def dialplan(root: Path) -> str:
        return (
            caller_dialplan(root, wav, agent="")
            + target_dialplan(root, wav)
            + conference_dialplan(root, conf, wait_s=5)
        )

    with running_asterisk(dialplan) as ast:
        yield ast


def _bootstrap_key(db: Path) -> str:
    cmd = [sys.executable, "-m", "callbridge", "db", "--db", f"sqlite:///{db}"]
    subprocess.run([*cmd, "migrate"], check=True, capture_output=True, timeout=60)
    out = subprocess.run([*cmd, "bootstrap"], check=True, capture_output=True, timeout=60)
    return str(json.loads(out.stdout)["access_key"])


def _ready(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    return status, str(json.loads(body)["checks"].get("asterisk"))


def _api(port: int, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body else (b"" if method == "POST" else None),
        headers={"Authorization": f"AccessKey {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


async def _calls(port: int, key: str, status: str, count: int) -> list[dict[str, Any]]:
    with trio.fail_after(20):
        while True:
            rows = await trio.to_thread.run_sync(_api, port, key, "GET", "/v1.0/calls")
            found = [r for r in rows["result"] if r["status"] == status]
            if len(found) >= count:
                return list(found)
            await trio.sleep(0.1)


@pytest.mark.service
async def test_serve_with_ari_runs_stasis_calls(
    asterisk: Asterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = _bootstrap_key(tmp_path / "serve.db")
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", ARI_PASSWORD)
    ari = ["--ari", asterisk.base_url, "--ari-user", ARI_USER]
    ari += ["--ari-outbound-dial", "Local/{destination}@callees/n"]
    proc, ports = start_serve(tmp_path, "--agent", "echo", *ari)
    port = ports["http"]
    try:
        with trio.fail_after(60):
            while (await trio.to_thread.run_sync(asterisk.ari, "GET", "/applications")) == []:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                await trio.sleep(0.2)
        assert await trio.to_thread.run_sync(_ready, port) == (200, "ok")
        originate = "channel originate Local/{}@caller/n extension 5551234@incoming"
        await trio.to_thread.run_sync(asterisk.rx, originate.format("talk"))
        [done] = await _calls(port, key, "hangup", 1)
        await trio.to_thread.run_sync(asterisk.rx, originate.format("hold"))
        [live] = await _calls(port, key, "progressing", 1)
        hangup = f"/v1.0/calls/{live['id']}/hangup"
        await trio.to_thread.run_sync(_api, port, key, "POST", hangup, {"cause": "busy"})
        with trio.fail_after(10):
            while await trio.to_thread.run_sync(asterisk.channels):
                await trio.sleep(0.1)
        cause = await trio.to_thread.run_sync(
            lambda: asterisk.ari("GET", "/asterisk/variable", variable="CAUSE")["value"]
        )
        ended = await trio.to_thread.run_sync(_api, port, key, "GET", f"/v1.0/calls/{live['id']}")
        agents = await trio.to_thread.run_sync(_api, port, key, "GET", "/v1.0/agents")
        place = {"leg": "asterisk", "source": "+15550001", "destination": "+15559999"}
        place["agent_id"] = agents["result"][0]["id"]
        placed = await trio.to_thread.run_sync(_api, port, key, "POST", "/v1.0/calls", place)
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    assert done["leg"] == "asterisk" and done["hangup_cause"] == "caller"
    assert (done["source"], done["destination"]) == ("+15550001", "5551234")
    channel_id, bridge_id = done["leg_ref"].split("/")
    assert channel_id and bridge_id.startswith("cbb-")
    # The API's cause reaches the caller as its Q.850 code, and the call's record says it.
    assert (ended["hangup_cause"], ended["hangup_reason"], cause) == ("api", "api: busy", "17")
    assert (placed["leg"], placed["direction"], placed["destination"]) == (
        "asterisk",
        "outgoing",
        "+15559999",
    )
    heard = (asterisk.root / "talk-heard.wav").read_bytes()[44:]
    assert seconds_of(heard, 700.0) >= 1.0, "the echo did not come back through serve"
    log = (tmp_path / "serve.log").read_text()
    assert "ari connected" in log and ARI_PASSWORD not in log


async def test_serve_starts_with_asterisk_down_and_ready_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", "x")
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: Asterisk is down
    proc, ports = start_serve(tmp_path, "--agent", "echo", "--ari", nowhere, "--ari-user", "u")
    try:
        with trio.fail_after(60):
            while True:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                try:
                    status, asterisk = await trio.to_thread.run_sync(_ready, ports["http"])
                except OSError:
                    await trio.sleep(0.2)
                    continue
                if asterisk != "None":
                    break
                await trio.sleep(0.2)
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    assert (status, asterisk) == (503, "error: AriUnavailable")


async def _members(port: int, key: str, path: str) -> list[dict[str, Any]]:
    found = await trio.to_thread.run_sync(_api, port, key, "GET", path)
    return list(found["result"])


@pytest.mark.service
@pytest.mark.parametrize("mixer", ["callbridge", "asterisk"])
async def test_asterisk_calls_join_an_api_conference(
    asterisk: Asterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mixer: str
) -> None:
    """The API's conference (callbridge's own bridge) takes Asterisk calls like any leg's:
    their ExternalMedia audio is mixed, each caller hears the other and not itself. With
    ``mixer: asterisk`` Asterisk mixes it: the callers' channels move into its bridge
    ``cbc-<conference id>`` and their agents leave (the calls end for callbridge)."""
    key = _bootstrap_key(tmp_path / "serve.db")
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", ARI_PASSWORD)
    ari = ["--ari", asterisk.base_url, "--ari-user", ARI_USER]
    proc, ports = start_serve(tmp_path, "--agent", "echo", *ari)
    port = ports["http"]
    try:
        with trio.fail_after(60):
            while (await trio.to_thread.run_sync(asterisk.ari, "GET", "/applications")) == []:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                await trio.sleep(0.2)
        for n in (1, 2):
            originate = f"channel originate Local/conf{n}@caller/n extension 555000{n}@incoming"
            await trio.to_thread.run_sync(asterisk.rx, originate)
        calls = await _calls(port, key, "progressing", 2)
        create = {"name": "ari", "tones": False, "mixer": mixer}
        conf = await trio.to_thread.run_sync(_api, port, key, "POST", "/v1.0/conferences", create)
        path = f"/v1.0/conferences/{conf['id']}/participants"
        for call in calls:
            await trio.to_thread.run_sync(_api, port, key, "POST", path, {"call_id": call["id"]})
        ended = await _calls(port, key, "hangup", 2)
        bridges = await trio.to_thread.run_sync(asterisk.ari, "GET", "/bridges")
        with trio.fail_after(20):  # the callers play their tones, then hang up
            while await trio.to_thread.run_sync(asterisk.channels):
                await trio.sleep(0.2)
        with trio.fail_after(10):  # each caller who hung up has left (the conference goes on)
            while {m["status"] for m in (await _members(port, key, path))} != {"left"}:
                await trio.sleep(0.2)
        members = await _members(port, key, path)
        await trio.to_thread.run_sync(_api, port, key, "DELETE", f"/v1.0/conferences/{conf['id']}")
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    for n, own_hz in enumerate(TONES, 1):
        heard = (asterisk.root / f"conf{n}-heard.wav").read_bytes()[44:]
        [other_hz] = [hz for hz in TONES if hz != own_hz]
        assert tone_level(heard, other_hz) > 0.5, n
        assert tone_level(heard, own_hz) < 0.05, n
    assert [m["status"] for m in members] == ["left", "left"]
    in_asterisk = [b for b in bridges if b["id"] == f"cbc-{conf['id']}"]
    if mixer == "asterisk":  # both callers were in Asterisk's bridge, their agents gone
        assert [len(b["channels"]) for b in in_asterisk] == [2]
        assert {c["hangup_reason"] for c in ended} == {f"joined conference {conf['id']}"}
    else:
        assert not in_asterisk


@pytest.mark.service
async def test_serve_with_ari_media_over_chan_websocket(
    asterisk: Asterisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--ari-media websocket: the call's ExternalMedia channel is a chan_websocket one, which
    Asterisk dials to serve's /v1.0/chan-websocket route through websocket_client.conf (the
    access key in its URI); the call is the ARI app's (leg asterisk) and the caller hears the
    agent's echo."""
    key = _bootstrap_key(tmp_path / "serve.db")
    monkeypatch.setenv("CALLBRIDGE_ARI_PASSWORD", ARI_PASSWORD)
    ari = ["--ari", asterisk.base_url, "--ari-user", ARI_USER, "--ari-media", "websocket"]
    proc, ports = start_serve(tmp_path, "--agent", "echo", *ari)
    port = ports["http"]
    (asterisk.root / "etc" / "websocket_client.conf").write_text(
        "[callbridge]\ntype = websocket_client\nconnection_type = per_call_config\n"
        f"uri = ws://127.0.0.1:{port}/v1.0/chan-websocket?access_key={key}\n"
        "protocols = media\n"
    )
    await trio.to_thread.run_sync(asterisk.rx, "module reload res_websocket_client.so")
    try:
        with trio.fail_after(60):
            while (await trio.to_thread.run_sync(asterisk.ari, "GET", "/applications")) == []:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                await trio.sleep(0.2)
        originate = "channel originate Local/talk@caller/n extension 5551234@incoming"
        await trio.to_thread.run_sync(asterisk.rx, originate)
        [done] = await _calls(port, key, "hangup", 1)
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
    assert done["leg"] == "asterisk" and done["hangup_cause"] == "caller"
    assert done["leg_ref"].split("/")[1].startswith("cbb-")
    assert "WebSocket/callbridge" in asterisk.log_tail(20000), "not over chan_websocket"
    heard = (asterisk.root / "talk-heard.wav").read_bytes()[44:]
    assert seconds_of(heard, 700.0) >= 1.0, "the echo did not come back over chan_websocket"
