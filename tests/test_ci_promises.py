""" "Skips locally, fails in CI": every test that needs something from outside the repository
(a server, a binary, a privilege) must go through :func:`tests.conftest.require_service`, which
fails under ``CI=true``. A bare ``pytest.skip`` would quietly skip in CI too (tests/sip/peers.py
once skipped the DTMF-through-Kamailio test that way)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.sip import peers

TESTS = Path(__file__).resolve().parent
BARE_SKIP = re.compile(r"pytest\.(skip\(|importorskip\(|mark\.skip)")
# Skips that are not a missing service, each reviewed: an optional SDK is *present* (nothing to
# test); a platform that is not Linux or not x86-64 (CI runs on x86-64 Linux, so it never
# skips there).
ALLOWED = {
    ("ai_pipeline/test_factory.py", "deepgram SDK installed"),
    ("media/test_resample.py", 'Path("/proc/cpuinfo").exists()'),
    ("sip/test_ari_asterisk.py", "signals are wired for x86_64 here"),
}


@contextmanager
def _fails_not_skips(match: str) -> Iterator[None]:
    """A skip escaping here would make the test itself skip: turn it into the failure it is."""
    try:
        with pytest.raises(pytest.fail.Exception, match=match):
            yield
    except pytest.skip.Exception as exc:
        pytest.fail(f"skipped under CI=true: {exc}")


def test_no_test_skips_around_the_ci_helper() -> None:
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        if rel in ("conftest.py", "test_ci_promises.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if BARE_SKIP.search(line) and not any(rel == f and why in line for f, why in ALLOWED):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "use tests.conftest.require_service:\n" + "\n".join(offenders)


def test_a_missing_service_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with _fails_not_skips("required in CI"):
        require_service("kamailio", "not installed")


def test_the_sniffer_without_raw_sockets_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> socket.socket:
        raise PermissionError("not root")

    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(socket, "socket", refused)
    with _fails_not_skips("CAP_NET_RAW"):
        peers.require_raw_sockets("DTMF through Kamailio")
