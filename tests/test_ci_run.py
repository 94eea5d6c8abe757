"""``.ci/run`` on a fresh machine: it brings up every server the tests need, builds the real
Asterisk and runs the tests under ``CI=true`` whatever the runner exported. It runs here with
stand-ins for the system commands first on PATH (they record their calls and play a machine where
nothing runs yet), so the script's own logic is tested and nothing on this machine is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND_REACHED = 3  # the stand-in python3's exit status: the README test command started

# Each stand-in appends its name, its arguments and $CI to calls.log. A server answers once its
# start command has run (a flag file), as on a machine without MariaDB and Redis running.
STAND_INS = {
    "apt-get": "",
    "sudo": '"$@"',
    "install": "",
    "mariadb-install-db": "",
    "start-stop-daemon": 'touch "$STATE/mariadb-up"',
    "mariadb-admin": '[ -e "$STATE/mariadb-up" ]',
    "mariadb": "",
    "redis-server": 'touch "$STATE/redis-up"',
    "redis-cli": '[ -e "$STATE/redis-up" ] && echo PONG',
    # Stop at the README test command, before it creates or installs anything.
    "python3": f"exit {TEST_COMMAND_REACHED}",
}


def run_ci(
    tmp_path: Path, *, shared: Path, servers_up: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """.ci/run with the stand-ins; its exit and the calls they saw, in order."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, body in STAND_INS.items():
        script = bin_dir / name
        record = f'echo "{name} $* CI=${{CI:-}}" >> "$STATE/calls.log"'
        script.write_text(f"#!/bin/sh\n{record}\n{body}\n")
        script.chmod(0o755)
    if servers_up:
        (state / "mariadb-up").touch()
        (state / "redis-up").touch()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STATE": str(state),
        "HOME": str(tmp_path),
        "CALLBRIDGE_SHARED": str(shared),
    }
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60
    )
    log = state / "calls.log"
    return done, log.read_text().splitlines() if log.exists() else []


def fake_shared(tmp_path: Path) -> Path:
    build = tmp_path / "shared" / "asterisk" / "build.sh"
    build.parent.mkdir(parents=True)
    build.write_text('echo "asterisk-build CI=${CI:-}" >> "$STATE/calls.log"\n')
    return build.parent.parent


def names(calls: list[str]) -> list[str]:
    return [call.split()[0] for call in calls]


def test_ci_installs_and_starts_the_servers_then_builds_asterisk_then_tests(
    tmp_path: Path,
) -> None:
    done, calls = run_ci(tmp_path, shared=fake_shared(tmp_path))
    assert done.returncode == TEST_COMMAND_REACHED, done.stderr[-2000:]
    order = names(calls)
    install = next(call for call in calls if call.startswith("apt-get install"))
    assert "mariadb-server" in install and "redis-server" in install
    start = calls[order.index("start-stop-daemon")]
    assert "/usr/sbin/mariadbd" in start and "--skip-name-resolve" in start
    assert any("'root'@'127.0.0.1'" in call for call in calls if call.startswith("mariadb "))
    assert any("CREATE DATABASE IF NOT EXISTS test" in call for call in calls)
    assert "--port 6379" in calls[order.index("redis-server")]
    # Each start is followed by a wait that got an answer (the last probe of each server).
    last_mariadb_probe = len(order) - 1 - order[::-1].index("mariadb-admin")
    last_redis_probe = len(order) - 1 - order[::-1].index("redis-cli")
    assert order.index("start-stop-daemon") < last_mariadb_probe
    assert order.index("redis-server") < last_redis_probe
    # Asterisk, then the tests, with CI=true though the runner exported no CI.
    assert order[-2:] == ["asterisk-build", "python3"]
    assert calls[-2].endswith("CI=true") and calls[-1].endswith("CI=true")


def test_ci_leaves_servers_that_answer_alone(tmp_path: Path) -> None:
    done, calls = run_ci(tmp_path, shared=fake_shared(tmp_path), servers_up=True)
    assert done.returncode == TEST_COMMAND_REACHED, done.stderr[-2000:]
    started = {"start-stop-daemon", "mariadb-install-db", "redis-server"} & set(names(calls))
    assert not started
    assert names(calls)[-2:] == ["asterisk-build", "python3"]


def test_ci_fails_clearly_without_the_asterisk_source(tmp_path: Path) -> None:
    done, calls = run_ci(tmp_path, shared=tmp_path / "nowhere")
    assert done.returncode == 1
    assert f"no {tmp_path / 'nowhere'}/asterisk/build.sh" in done.stderr
    assert "python3" not in names(calls)  # no test ran without it


# A stand-in Python 3.13: it passes the version check, makes a venv of stand-ins that record
# what they are asked, and so lets .ci/py313 run through without installing or testing anything.
FAKE_PYTHON313 = """#!/bin/sh
echo "python3.13 $*" >> "$STATE/calls.log"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    for tool in pip python; do
        printf '#!/bin/sh\\necho "venv-%s $*" >> "$STATE/calls.log"\\n' "$tool" > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
fi
"""


def run_py313(tmp_path: Path, *, pyenv_versions: list[str]) -> tuple[int, str, list[str]]:
    """.ci/py313 on a PATH whose python3.13 is pyenv's refusing shim, with the given pyenv
    versions installed (each a stand-in Python 3.13 under $HOME/.pyenv/versions)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    shim = bin_dir / "python3.13"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.13: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    for version in pyenv_versions:
        python = tmp_path / "home" / ".pyenv" / "versions" / version / "bin" / "python3.13"
        python.parent.mkdir(parents=True)
        python.write_text(FAKE_PYTHON313)
        python.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STATE": str(state),
        "HOME": str(tmp_path / "home"),
        "VENV313": str(tmp_path / "venv313"),
    }
    done = subprocess.run(
        ["bash", str(ROOT / ".ci" / "py313")], env=env, capture_output=True, text=True, timeout=60
    )
    log = state / "calls.log"
    return done.returncode, done.stderr, log.read_text().splitlines() if log.exists() else []


def test_py313_finds_pyenvs_python_when_the_shim_refuses(tmp_path: Path) -> None:
    # CI's machine: pyenv's global version is 3.11, so its python3.13 shim exits 127.
    returncode, stderr, calls = run_py313(tmp_path, pyenv_versions=["3.13.0"])
    assert returncode == 0, stderr[-2000:]
    assert any(call.startswith("python3.13 -m venv") for call in calls)
    assert any(call.startswith("venv-python -m pytest") for call in calls)
    assert "versions/3.13.0/bin/python3.13" in stderr


def test_py313_fails_clearly_without_any_python313(tmp_path: Path) -> None:
    returncode, stderr, calls = run_py313(tmp_path, pyenv_versions=[])
    assert returncode == 1
    assert "no Python 3.13" in stderr
    assert not calls
