"""A listener that cannot bind its address stops ``serve`` with one line that names the address,
the flag that set it, and what to do, instead of the nursery's nested ExceptionGroup.

The libraries that bind (Trio, Hypercorn) raise a bare ``OSError`` ("[Errno 98] Address already
in use") that names neither the address nor the listener, from inside nurseries that wrap it in
ExceptionGroups; only the code that starts each listener knows which one it was.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from media.config import HostPort

# What bind() fails with when the address is not ours to take: in use, not this machine's, or
# a privileged port.
BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


class CannotListen(Exception):
    """A listener could not bind its address; the message is the whole story for the user."""

    def __init__(self, flag: str, address: HostPort, error: OSError) -> None:
        reason = os.strerror(error.errno).lower() if error.errno else str(error)
        super().__init__(
            f"cannot listen on {address} ({flag}): {reason}; stop what holds it"
            f" or choose another {flag}"
        )


def bind_error(exc: BaseException) -> OSError | None:
    """The first bind failure in ``exc`` or its groups, if there is one."""
    if isinstance(exc, OSError) and exc.errno in BIND_ERRNOS:
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = bind_error(inner)
            if found is not None:
                return found
    return None


@contextmanager
def listening(flag: str, address: HostPort) -> Iterator[None]:
    """Around the start of the listener that ``flag`` configures: its bind failure becomes
    :class:`CannotListen`; any other error passes through as it was."""
    try:
        yield
    except BaseException as exc:
        error = bind_error(exc)
        if error is None:
            raise
        raise CannotListen(flag, address, error) from None
