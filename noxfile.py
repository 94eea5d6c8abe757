"""nox sessions: tests on Python 3.11 and 3.13, lint (ruff), types (mypy --strict), bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "types"]
nox.options.default_venv_backend = "venv"

PACKAGES = ["callbridge", "media", "sip", "ai_pipeline", "control", "proto", "bench"]


@nox.session(python=["3.11", "3.13"])
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    session.install("-e", ".[test,dev]")
    session.run("mypy", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[bench]")
    session.run("callbridge", "bench", *(session.posargs or ["capacity"]))
