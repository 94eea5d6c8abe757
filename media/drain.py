"""Marks a self-paced leg sends for itself, to learn when everything before them has played.

Twilio and Asterisk buffer the agent's audio (up to ~20 s in Asterisk's queue), so the last
words are still queued there when the agent ends the call; closing then would cut them. A leg's
``drain()`` sends one of these marks and waits for its echo, which its ``receive()`` (running in
the call's reader task) recognises and swallows: the agent never sees a mark it did not send.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import trio

PREFIX = "callbridge-drain-"


class DrainMarks:
    def __init__(self) -> None:
        self._waiting: dict[str, trio.Event] = {}
        self._numbers = itertools.count(1)

    def new(self) -> tuple[str, trio.Event]:
        name = f"{PREFIX}{next(self._numbers)}"
        self._waiting[name] = event = trio.Event()
        return name, event

    def played(self, name: str) -> bool:
        """True where ``name`` is one of ours: its waiter is woken and the echo must go no
        further. A name that only looks like ours is the agent's and passes on."""
        event = self._waiting.pop(name, None)
        if event is None:
            return False
        event.set()
        return True

    def release_all(self) -> None:
        """Barge-in flushed the peer's buffer or the socket is gone: nothing is left to play."""
        for event in self._waiting.values():
            event.set()
        self._waiting.clear()

    async def drain(self, send_mark: Callable[[str], Awaitable[None]], timeout_s: float) -> bool:
        """Send a mark of ours and wait, at most ``timeout_s``, for the leg's reader to see it
        played; False when the time ran out first."""
        name, played = self.new()
        await send_mark(name)
        with trio.move_on_after(timeout_s):
            await played.wait()
            return True
        return False
