"""A pytest plugin: a failed ``==`` between large byte strings (audio, packets) explains itself in a
few lines: the lengths, how many bytes differ, where the first one is. pytest's own explanation
lists every differing byte, and in CI (where it does not truncate) that was thousands of lines.
Registered for the suite by ``tests/conftest.py``."""

from __future__ import annotations

from typing import Any

import numpy as np

SMALL_BYTES = 64  # shorter ones keep pytest's own, byte-by-byte explanation


def pytest_assertrepr_compare(
    config: Any, op: str, left: object, right: object
) -> list[str] | None:
    if op != "==" or not isinstance(left, bytes | bytearray):
        return None
    if not isinstance(right, bytes | bytearray) or max(len(left), len(right)) <= SMALL_BYTES:
        return None
    common = min(len(left), len(right))
    a = np.frombuffer(left, np.uint8, common)
    b = np.frombuffer(right, np.uint8, common)
    differ = np.flatnonzero(a != b)
    lines = [f"{len(left)} bytes == {len(right)} bytes"]
    if len(left) != len(right):
        lines.append(f"lengths differ by {len(left) - len(right):+d} bytes")
    if differ.size:
        i = int(differ[0])
        lines.append(
            f"{differ.size} of the first {common} bytes differ; the first at byte {i}"
            f" (PCM16 sample {i // 2}): {left[i]:#04x} != {right[i]:#04x}"
        )
    return lines
