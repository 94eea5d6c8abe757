"""What a new user reads first: ``callbridge --help`` and ``callbridge serve --help``. Every
option says what it does and what it is when not given (issue 11 item 10)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from callbridge.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser([name])
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    chosen: argparse.ArgumentParser = sub.choices[name]
    return chosen


def test_every_serve_option_says_what_it_does_and_its_default() -> None:
    serve = subcommand("serve")
    options = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert len(options) > 30  # media core, control plane, SIP, ARI
    silent = [a.option_strings[0] for a in options if not a.help]
    assert not silent, f"no help text: {silent}"
    no_default = [
        a.option_strings[0]
        for a in options
        if "default" not in str(a.help) and "required" not in str(a.help)
    ]
    assert not no_default, f"help does not say the default: {no_default}"
    text = serve.format_help()
    assert "%(default)" not in text and "None" not in text


def test_help_reads_as_plain_text() -> None:
    for args in (["--help"], ["serve", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "callbridge", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "``" not in done.stdout, done.stdout[:500]  # reST markup from a docstring
    assert done.stdout.startswith("usage: callbridge serve")
