"""Where a benchmark's figures go: a results folder, a JSON file, a printed table.

Every result file carries the seed and a description of the machine (CPU model, cores, RAM,
Python, package versions, git commit), because a figure without its machine is not a figure.
Results land under ``bench/results/<name>-<timestamp>/`` (gitignored); ``bench/RESULTS.md`` quotes
the ones worth keeping.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

RESULTS_ROOT = Path(__file__).resolve().parent / "results"

_PACKAGES = (
    "callbridge",
    "trio",
    "numpy",
    "soxr",
    "websockets",
    "pipecat-ai",
    "fastapi",
    "uvicorn",
    "psutil",
    "matplotlib",
)


def machine_description() -> dict[str, Any]:
    """What the figures were measured on; cheap enough to call once per run."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_1m": os.getloadavg()[0],
        "ram_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in _PACKAGES},
        "git_commit": _git("rev-parse", "HEAD"),
        # Tracked files changed since that commit: figures from a tree no one can check out.
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_results_dir(name: str, root: Path | None = None) -> Path:
    """A fresh ``<root>/<name>-<UTC timestamp>`` folder (suffixed when two runs share a second)."""
    base = root if root is not None else RESULTS_ROOT
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = base / f"{name}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = base / f"{name}-{stamp}-{suffix}"
    path.mkdir(parents=True)
    return path


def results_folder(name: str, explicit: Path | None) -> Path:
    """``explicit`` (``--results-dir``, created if missing), else a fresh timestamped folder."""
    if explicit is None:
        return new_results_dir(name)
    explicit.mkdir(parents=True, exist_ok=True)
    return explicit


def write_json(folder: Path, name: str, seed: int, params: dict[str, Any], results: Any) -> Path:
    """``<folder>/<name>.json`` with seed, parameters, machine and results; returns the path."""
    doc = {
        "benchmark": name,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "params": params,
        "machine": machine_description(),
        "results": results,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table: numbers right-aligned, ``None`` shown as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for raw, row in zip(rows, cells, strict=True):
        parts = []
        for value, text, width in zip(raw, row, widths, strict=True):
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            parts.append(text.rjust(width) if numeric else text.ljust(width))
        lines.append("  ".join(parts))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
