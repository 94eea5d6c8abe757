"""``callbridge doctor`` against set-ups broken on purpose, run as a user would run it (the real
command in a child process): a taken port, an unreachable database and Redis, a missing model
package, a wrong ARI password on a real Asterisk; and a healthy set-up whose agent (echo) is
started and answers a real agent-link handshake; the SIP trunk, Kamailio and the registrar on a
real Kamailio (answering, a wrong or missing password, stopped) and a peer that never answers."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from callbridge import doctor_sip
from media.config import HostPort
from sip.config import PASSWORD_ENV, SipConfig
from tests.asterisk_instance import ARI_PASSWORD, ARI_USER, running_asterisk
from tests.sip.ari_harness import require_asterisk
from tests.sip.nodes import start_node
from tests.sip.peers import REGISTRAR_CFG, free_udp_port, kamailio_with, require_binary


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


def test_each_agent_workers_port_is_checked(tmp_path: Path, taken_port: int) -> None:
    """``--agent-workers 2``: agent 1 listens on ``--agent-listen``'s port + 1, and a program
    already there is named as well as one on the first port would be."""
    first = taken_port - 1
    listen = ("--agent-listen", f"127.0.0.1:{first}", "--agent-workers", "2", "--skip-agent")
    code, found = doctor(tmp_path, *listen)
    assert code == 1
    port = found[f"port 127.0.0.1:{taken_port} (--agent-listen)"]
    assert port["status"] == "fail" and f"pid {os.getpid()}" in port["detail"]


def test_each_workers_link_port_is_checked(tmp_path: Path, taken_port: int) -> None:
    """``--workers 2 --link-port BASE``: worker 1 takes its conference links on BASE + 1, and a
    program already there is named."""
    redis = ("--redis", "redis://127.0.0.1:6379/15", "--workers", "2", "--skip-agent")
    code, found = doctor(tmp_path, *redis, "--link-port", str(taken_port - 1))
    assert code == 1
    port = found[f"port 127.0.0.1:{taken_port} (--link-port)"]
    assert port["status"] == "fail" and f"pid {os.getpid()}" in port["detail"]


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


def _sip(registrar: int, password: str) -> SipConfig:
    return SipConfig(
        listen=HostPort("127.0.0.1", free_udp_port()),
        outbound=HostPort("127.0.0.1", registrar),
        register=f"sip:alice@127.0.0.1:{registrar}",
        auth_password=password,
    )


@pytest.mark.service
async def test_the_sip_trunk_and_the_registration_against_a_real_kamailio(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Kamailio as the trunk and the digest-checking registrar (sip/kamailio/registrar.cfg):
    answering, then showing our own SIP stack's binding once it registered, refusing a wrong
    password, asking for a missing one, then gone."""
    require_binary("kamailio")
    async with kamailio_with(tmp_path, REGISTRAR_CFG, ['PASSWORD="secret"']) as port:
        hop = f"127.0.0.1:{port}"
        args = ["--sip", f"127.0.0.1:{free_udp_port()}", "--sip-outbound", hop, "--kamailio", hop]
        args += ["--sip-register", f"sip:alice@{hop}", "--skip-agent"]
        run = functools.partial(doctor, tmp_path, *args, env={PASSWORD_ENV: "secret"})
        code, found = await trio.to_thread.run_sync(run)
        assert code == 0, found
        for check in ("kamailio", "sip outbound"):
            assert found[check]["status"] == "ok", found[check]
            assert f"at {hop} answered OPTIONS with 200 OK" in found[check]["detail"]
        registration = found["sip registration"]
        assert registration["status"] == "ok", registration
        assert (
            f"the registrar at {hop} accepts the credentials of 'alice'" in registration["detail"]
        )

        node = await start_node(
            nursery, "ws://127.0.0.1:9", register=f"sip:alice@{hop}", auth_password="secret"
        )  # callbridge's SIP side, registered as serve would be (no call: no agent needed)
        with trio.fail_after(20):
            while node.counter("callbridge_sip_registered") != 1:
                await trio.sleep(0.05)
        bound = await doctor_sip.sip_registration(_sip(port, "secret"))
        assert bound.status == "ok" and "1 binding(s) now: <sip:" in bound.detail, bound
        assert f":{node.port}" in bound.detail
        node.stop()
        wrong = await doctor_sip.sip_registration(_sip(port, "not-the-password"))
        assert wrong.status == "fail" and "refused the password of 'alice'" in wrong.detail
        assert PASSWORD_ENV in wrong.fix
        unset = await doctor_sip.sip_registration(_sip(port, ""))
        assert unset.status == "fail" and "asks for a password" in unset.detail
        assert f"set ${PASSWORD_ENV}" in unset.fix
    outbound, registration = await doctor_sip.sip_checks(_sip(port, "secret"), None)
    for finding in (outbound, registration):  # Kamailio stopped: nothing listens there
        assert finding.status == "fail", finding
        assert f"no SIP answer from {hop}: nothing listens there" in finding.detail
    assert f"is the SIP trunk or Kamailio running at {hop}?" in outbound.fix


async def test_a_sip_peer_that_never_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5)
        hop = HostPort("127.0.0.1", silent.getsockname()[1])
        found = await doctor_sip.sip_peer("kamailio", hop, "--kamailio", "Kamailio", 1.0)
        assert found.status == "fail" and "no answer within 1 s" in found.detail
        assert silent.recv(4096).startswith(b"OPTIONS sip:")  # it was asked
        assert f"is Kamailio running at {hop}?" in found.fix
