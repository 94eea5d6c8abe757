"""``POST /v1.0/rtp-offers`` on a real ``callbridge serve``: an RTP leg attached by SDP offer and
answer (no SIP), its audio echoed, the call in the API, hung up through the API; bad offers are
4xx with a reason."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

from media.sdp import parse_sdp
from tests.sip.uac import Uac, offer
from tests.test_serve import start_serve, stop_serve, wait_http


def admin_key(log_path: Path) -> str:
    for line in log_path.read_text().splitlines():
        if "first admin access key created" in line:
            return str(json.loads(line[line.index("{") :])["access_key"])
    raise AssertionError("serve logged no access key")


def api(port: int, key: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Authorization", f"AccessKey {key}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
async def test_an_rtp_leg_attached_by_sdp_is_a_call(tmp_path: Path) -> None:
    proc, ports = start_serve(tmp_path, "--agent", "echo", "--rtp-ports", "31000-31100")
    try:
        await wait_http(ports["http"])
        key = admin_key(tmp_path / "serve.log")

        async def call_api(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            return await trio.to_thread.run_sync(api, ports["http"], key, method, path, body)

        caller = await Uac.open(0)
        rtp_port = caller.rtp_port
        status, got = await call_api("POST", "/v1.0/rtp-offers", {"sdp": offer(rtp_port).decode()})
        assert status == 201, got
        answer = parse_sdp(got["sdp"].encode())
        media = answer.media[0]
        assert 31000 <= media.port <= 31100 and media.formats[0] == "0"  # PCMU, as offered
        caller.remote_rtp = (media.connection or answer.connection or "", media.port)

        async with trio.open_nursery() as inner:
            inner.start_soon(caller.play_fixture)
            with trio.fail_after(20):
                while caller.rtp_payload_types[0] < 50:  # the echo, as PCMU
                    await caller.count_rtp(0.5)
            status, row = await call_api("GET", f"/v1.0/calls/{got['call_id']}")
            assert status == 200 and row["leg"] == "rtp" and row["status"] == "progressing"
            status, _ = await call_api("POST", f"/v1.0/calls/{got['call_id']}/hangup")
            assert status == 200
            inner.cancel_scope.cancel()
        with trio.fail_after(10):
            while (await call_api("GET", f"/v1.0/calls/{got['call_id']}"))[1]["status"] != "hangup":
                await trio.sleep(0.1)
        caller.close()

        status, err = await call_api(
            "POST", "/v1.0/rtp-offers", {"sdp": "v=0\r\nnot sdp at all\r\n"}
        )
        assert status == 400 and err["error"] == "bad_sdp"
        g729_only = "\r\n".join(
            ["v=0", "o=uac 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP 18", "a=rtpmap:18 G729/8000", ""]
        )  # fmt: skip
        status, err = await call_api("POST", "/v1.0/rtp-offers", {"sdp": g729_only})
        assert status == 422 and err["error"] == "sdp_not_acceptable", err
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)
