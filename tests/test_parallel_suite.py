"""The suite runs on pytest-xdist workers (pyproject's addopts, tests/conftest.py): how many, and
which tests stay together on one worker."""

from __future__ import annotations

import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests import conftest

ROOT = Path(__file__).resolve().parents[1]


def workers_for(*args: str) -> int:
    config: Any = SimpleNamespace(args=list(args))
    return conftest.pytest_xdist_auto_num_workers(config)


def test_the_readme_command_runs_the_suite_on_workers() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert addopts[addopts.index("-n") :][:2] == ["-n", "auto"]
    assert addopts[addopts.index("--dist") :][:2] == ["--dist", "loadgroup"]
    assert any(
        r.startswith("pytest-xdist") for r in pyproject["project"]["optional-dependencies"]["test"]
    )


def test_one_file_runs_in_process_and_more_on_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: 2)
    assert workers_for("tests/test_serve.py") == 0
    assert workers_for("tests/test_serve.py::test_x", "tests/test_serve.py::test_y") == 0
    assert workers_for("tests") == 2  # the README's command (testpaths)
    assert workers_for("tests/sip") == 2
    assert workers_for("tests/test_serve.py", "tests/test_doctor.py") == 2
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: 64)
    assert workers_for("tests") == conftest.MAX_WORKERS
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "3")
    assert workers_for("tests/test_serve.py") == 3


def test_benchmarks_share_one_group_and_the_rest_none() -> None:
    tests = ROOT / "tests"
    assert conftest.xdist_group(tests / "bench" / "test_bench_runs.py") == "bench"
    assert conftest.xdist_group(tests / "test_workers_bench.py") == "bench"
    assert conftest.xdist_group(tests / "test_workers.py") is None
    assert conftest.xdist_group(tests / "sip" / "test_ari_asterisk.py") is None
    assert conftest.xdist_group(ROOT / "bench" / "capacity.py") is None  # not a test
