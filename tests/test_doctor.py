"""``callbridge doctor`` against set-ups broken on purpose, run as a user would run it (the real
command in a child process): a taken port, an unreachable database and Redis, a missing model
package, a wrong ARI password on a real Asterisk; and a healthy set-up whose agent (echo) is
started and answers a real agent-link handshake."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asterisk_instance import ARI_PASSWORD, ARI_USER, running_asterisk
from tests.sip.ari_harness import require_asterisk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def doctor(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, Any]:
    """Run ``callbridge doctor --json`` on free ports and a fresh SQLite unless ``args`` say
    otherwise; (exit status, findings by check name)."""
    defaults = {
        "--http": f"127.0.0.1:{_free_port()}",
        "--audiosocket": f"127.0.0.1:{_free_port()}",
        "--agent-listen": f"127.0.0.1:{_free_port()}",
        "--db": f"sqlite:///{tmp_path}/doctor.db",
        "--agent": "echo",
    }
    argv = [a for k, v in defaults.items() if k not in args for a in (k, v)]
    proc = subprocess.run(
        [sys.executable, "-m", "callbridge", "doctor", "--json", *argv, *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
        check=False,
    )
    body = json.loads(proc.stdout)
    assert body["ok"] == (proc.returncode == 0), proc.stderr
    return proc.returncode, {f["check"]: f for f in body["findings"]}


def test_a_healthy_set_up_passes_and_its_agent_answers_the_handshake(tmp_path: Path) -> None:
    code, found = doctor(tmp_path)
    assert code == 0, found
    assert found["agent"]["status"] == "ok" and "answered" in found["agent"]["detail"]
    assert found["database"]["status"] == "ok"
    assert found["python"]["status"] == "ok" and found["package trio"]["status"] == "ok"
    assert found["timer resolution"]["status"] in ("ok", "warn")  # a loaded box may jitter
    assert found["redis"]["status"] == found["asterisk ari"]["status"] == "skip"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_taken_port_is_a_problem_naming_its_holder(tmp_path: Path, taken_port: int) -> None:
    code, found = doctor(tmp_path, "--http", f"127.0.0.1:{taken_port}", "--skip-agent")
    assert code == 1
    port = found[f"port 127.0.0.1:{taken_port} (--http)"]
    assert port["status"] == "fail" and f"pid {os.getpid()}" in port["detail"]
    assert "choose another --http" in port["fix"]


def test_an_unreachable_database_and_redis(tmp_path: Path) -> None:
    closed = _free_port()
    code, found = doctor(
        tmp_path,
        "--db",
        f"mysql://root@127.0.0.1:{closed}/test",
        "--redis",
        f"redis://127.0.0.1:{closed}/0",
        "--skip-agent",
    )
    assert code == 1
    assert (
        found["database"]["status"] == "fail" and "start the database" in found["database"]["fix"]
    )
    assert found["redis"]["status"] == "fail" and "start Redis" in found["redis"]["fix"]


def test_a_database_behind_on_migrations(tmp_path: Path) -> None:
    """An existing SQLite file serve would migrate is fine; MariaDB is never migrated by serve."""
    (tmp_path / "doctor.db").write_bytes(b"")
    code, found = doctor(tmp_path, "--skip-agent")
    assert code == 0 and "serve applies at start" in found["database"]["detail"]


def test_a_missing_model_package(tmp_path: Path) -> None:
    code, found = doctor(
        tmp_path,
        "--agent",
        "local",
        "--skip-agent",
        env={"CALLBRIDGE_DOCTOR_MODELS": "whisper=no_such_model_package"},
    )
    assert code == 1
    whisper = found["model Whisper tiny.en, speech to text"]
    assert (
        whisper["status"] == "fail"
        and "no_such_model_package is not installed" in whisper["detail"]
    )
    assert "models.txt" in whisper["fix"]
    assert found["model Silero VAD, inside pipecat"]["status"] == "ok"  # the others load


@pytest.mark.service
def test_a_wrong_ari_password_on_a_real_asterisk(tmp_path: Path) -> None:
    require_asterisk()
    with running_asterisk("[default]\n") as ast:
        ari = ["--ari", ast.base_url, "--ari-user", ARI_USER, "--skip-agent"]
        code, found = doctor(tmp_path, *ari, env={"CALLBRIDGE_ARI_PASSWORD": "not-the-password"})
        assert code == 1
        assert found["asterisk ari"]["status"] == "fail"
        assert "password refused" in found["asterisk ari"]["detail"]
        code, found = doctor(tmp_path, *ari, env={"CALLBRIDGE_ARI_PASSWORD": ARI_PASSWORD})
        assert code == 0 and found["asterisk ari"]["status"] == "ok"
        assert found["asterisk ari"]["detail"].startswith("Asterisk ")


def test_mcp_stdio_servers_are_started_and_asked_for_their_tools(tmp_path: Path) -> None:
    server = Path(__file__).parent / "control" / "mcp_server.py"
    code, found = doctor(
        tmp_path,
        "--skip-agent",
        "--mcp-stdio",
        f"orders={sys.executable} {server} stdio",
        "--mcp-stdio",
        f"junk={sys.executable} {server} garbage",
    )
    assert code == 1
    assert found["mcp orders"]["status"] == "ok", found["mcp orders"]
    assert "for every customer" in found["mcp orders"]["detail"]
    assert "lookup_order" in found["mcp orders"]["detail"]
    junk = found["mcp junk"]
    assert junk["status"] == "fail" and "McpBadAnswer" in junk["detail"], junk
    assert "must speak MCP on stdin/stdout" in junk["fix"]
