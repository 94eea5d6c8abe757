"""A progress bar on stderr for runs longer than a few seconds.

Written here rather than taken from tqdm: the bench needs one line that redraws, and a bar that
stays quiet when stderr is not a terminal (CI logs, tests) apart from one line per step.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("capacity N=100", total_s=10) as bar: bar.update(done_s)``."""

    WIDTH = 30

    def __init__(self, label: str, total: float, stream: TextIO | None = None) -> None:
        if total <= 0:
            raise ValueError("total must be positive")
        self._label = label
        self._total = total
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.monotonic()
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        self.update(0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.update(self._total, force=True)
        if self._tty:
            self._stream.write("\n")
        self._stream.flush()

    def update(self, done: float, *, force: bool = False) -> None:
        """Redraw at most ten times a second; off a terminal, print only the final state."""
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = min(max(done / self._total, 0.0), 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        line = f"{self._label} [{bar}] {fraction * 100:5.1f}% {now - self._started:6.1f}s"
        if self._tty:
            self._stream.write("\r" + line)
        elif force:
            self._stream.write(line + "\n")
        self._stream.flush()
