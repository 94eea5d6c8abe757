"""What the README says of ``CALLBRIDGE_JWT_SECRET``, checked on ``serve``: without it, serve signs
its own tokens (the page's link) with a random key, so they work on that process only and no
other JWT does; with it, a token anyone signs with that key works, across restarts."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from control.auth import jwt_encode
from tests.test_serve import start_serve, stop_serve, wait_http


def status_with(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1.0/agents", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def page_token(log: Path) -> str:
    """The JWT in the last page link serve logged."""
    links = [
        json.loads(line)["url"]
        for line in log.read_text().splitlines()
        if '"open the page to talk to the agent"' in line
    ]
    assert links, log.read_text()[-2000:]
    return str(links[-1]).partition("#token=")[2]


def claims_of(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return decoded


async def test_without_a_secret_only_this_process_tokens_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CALLBRIDGE_JWT_SECRET"}
    proc, ports = start_serve(tmp_path, "--agent", "echo", env=env)
    try:
        await wait_http(ports["http"])
        token = page_token(tmp_path / "serve.log")
        assert status_with(ports["http"], token) == 200  # the page's JWT works without a secret
        forged = jwt_encode(claims_of(token), "a key serve never had")
        assert status_with(ports["http"], forged) == 401
    finally:
        stop_serve(proc)
    proc, ports = start_serve(tmp_path, "--agent", "echo", env=env)  # same database
    try:
        await wait_http(ports["http"])
        assert status_with(ports["http"], token) == 401  # the restarted process has a new key
    finally:
        stop_serve(proc)


async def test_with_a_secret_tokens_signed_with_it_work(tmp_path: Path) -> None:
    env = {**os.environ, "CALLBRIDGE_JWT_SECRET": "shared by every node"}
    proc, ports = start_serve(tmp_path, "--agent", "echo", env=env)
    try:
        await wait_http(ports["http"])
        claims = {**claims_of(page_token(tmp_path / "serve.log")), "exp": int(time.time()) + 60}
        assert status_with(ports["http"], jwt_encode(claims, "shared by every node")) == 200
        assert status_with(ports["http"], jwt_encode(claims, "another key")) == 401
    finally:
        stop_serve(proc)
