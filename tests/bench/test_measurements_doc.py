"""Docs cite measured facts that live in the repository, with commands that exist (issue 17,
item 13): no citation of a notes file outside it, no link to a section of
``docs/measurements.md`` that is not there, no reproduce command that names a missing module or
``bench`` subcommand."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
from pathlib import Path

from bench import cli

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "measurements.md"
OUTSIDE_NOTES = "FINDING" + "S"  # split, so this file does not cite it either
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".yml", ".yaml", ".sh", ".proto"}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / n for n in names if Path(n).suffix in TEXT_SUFFIXES and (ROOT / n).is_file()]


def test_nothing_cites_notes_outside_the_repository() -> None:
    citing = [
        str(p.relative_to(ROOT))
        for p in tracked_text_files()
        if OUTSIDE_NOTES in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert citing == [], f"these cite {OUTSIDE_NOTES}.md, which is not in the repository"


def test_every_cited_section_of_the_measurements_page_exists() -> None:
    anchors = set(re.findall(r"\{#([a-z0-9-]+)\}", DOC.read_text()))
    cited = {
        (str(p.relative_to(ROOT)), anchor)
        for p in tracked_text_files()
        for anchor in re.findall(
            r"docs/measurements\.md#([a-z0-9-]+)", p.read_text(encoding="utf-8", errors="replace")
        )
    }
    assert cited, "nothing cites a section: the pattern is wrong"
    assert {(path, a) for path, a in cited if a not in anchors} == set()


def test_the_commands_on_the_measurements_page_exist() -> None:
    text = DOC.read_text()
    modules = set(re.findall(r"python -m ([a-z_.]+)", text))
    assert "bench.probes.silero_sessions" in modules
    assert [m for m in modules if importlib.util.find_spec(m) is None] == []
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    subcommands = set(re.findall(r"callbridge bench ([a-z-]+)", text))
    assert subcommands
    for sub in subcommands:  # argparse exits on an unknown subcommand
        assert parser.parse_known_args([sub])[0].bench == sub
