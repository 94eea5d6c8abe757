"""Socket reads and writes for the per-frame hot path, without Trio's extra scheduling round.

``trio.SocketStream`` makes every call a full checkpoint: a read that finds data waiting still
yields to the scheduler once more, and a write does too. At 50 frames a second per direction per
call, that round (plus a cancel scope around each send for its deadline) cost more than the
audio work itself. Here a read yields only when it must wait (``wait_readable`` is the
checkpoint), and a write that the kernel takes whole returns at once; only a write that finds
the socket full falls back to the caller's deadline-bounded path.

Fairness: a reader that keeps finding data (a burst, or a peer far ahead) still yields every
:data:`READS_PER_CHECKPOINT` reads, so no call can monopolise the loop.
"""

from __future__ import annotations

import errno
import os

import trio

READS_PER_CHECKPOINT = 8


class FastSocket:
    """The raw side of one connected ``trio.SocketStream``; the stream still owns the socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._socket = stream.socket
        self._streak = 0  # reads in a row that did not yield

    def _fileno(self) -> int:
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket closed")
        return fd

    async def receive_some(self, max_bytes: int) -> bytes:
        """Like ``SocketStream.receive_some``: ``b""`` at EOF; raises
        ``trio.BrokenResourceError`` on a reset, ``trio.ClosedResourceError`` once closed."""
        while True:
            try:
                data = os.read(self._fileno(), max_bytes)
            except BlockingIOError:
                self._streak = 0
                await trio.lowlevel.wait_readable(self._socket)
                continue
            except OSError as exc:
                raise _translate(exc) from None
            self._streak += 1
            if self._streak >= READS_PER_CHECKPOINT:
                self._streak = 0
                await trio.lowlevel.checkpoint()
            return data

    def receive_nowait(self, max_bytes: int) -> bytes | None:
        """One read of what is there now: ``None`` if nothing, ``b""`` at EOF; raises like
        :meth:`receive_some`. Never a checkpoint (for a caller that polls many sockets)."""
        try:
            return os.read(self._fileno(), max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise _translate(exc) from None

    def send_nowait(self, data: bytes) -> int:
        """Write what the kernel takes now, without blocking; returns the bytes written (0 when
        the socket is full). Raises ``trio.BrokenResourceError`` if the peer is gone."""
        try:
            return os.write(self._fileno(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _translate(exc) from None


def _translate(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("socket closed")
    return trio.BrokenResourceError(f"socket error: {exc}")
