"""A failing comparison of two long byte strings explains itself in a few lines, in CI too
(where pytest does not truncate its explanations)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["pytester"]

FAILING = """
def test_audio():
    got = bytes(range(256)) * 400
    want = bytearray(got)
    want[5000] ^= 1
    want[7001] ^= 1
    assert got == bytes(want)
"""


def test_a_long_byte_diff_is_a_few_lines(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the plugin's module, tests.bytes_diff
    pytester.makepyfile(FAILING)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    plain.assert_outcomes(failed=1)
    assert len(plain.outlines) > 1000  # pytest's own: every differing byte, untruncated in CI
    short = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "tests.bytes_diff")
    short.assert_outcomes(failed=1)
    assert len(short.outlines) < 60, "\n".join(short.outlines)
    short.stdout.fnmatch_lines(["*2 of the first 102400 bytes differ; the first at byte 5000*"])
