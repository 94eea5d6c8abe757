"""JSON from outside, bounded in size and nesting depth before it is parsed.

Why: ``json.loads`` recurses once per ``[`` or ``{``; 30 000 of them raise ``RecursionError``
(not ``ValueError``), which escaped the API's error handling as a 500 and closed WebSockets with
a traceback. Even a depth the decoder survives is handed on to code that recurses again
(validation, re-encoding). So every JSON that crosses a trust boundary (API bodies, the events
socket, media WebSockets, the agent link, webhook tool answers) goes through :func:`loads`:
length first, then one linear scan that counts nesting outside strings, then ``json.loads``.
Whatever is wrong comes out as one :class:`JsonInputError` whose ``reason`` is a short label
(``too_large``, ``too_deep``, ``malformed``) fit for a metric or an error code.

Pure: no I/O. RFC 8259 section 9 allows a parser to limit depth and size.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

# Generous for every document callbridge accepts (an agent is ~4 deep, engine options a few more)
# and far below the interpreter's recursion limit (1000), so no consumer can recurse out of stack.
DEFAULT_MAX_DEPTH = 32

Reason = Literal["too_large", "too_deep", "malformed"]

# A structural character outside a string, or the quote that opens a string.
_STRUCTURAL = re.compile(r'["\[\]{}]')
# The rest of a string after its opening quote: unrolled so a failed match is linear, never
# quadratic (escapes consume their next character, so an escaped quote does not end it).
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


class JsonInputError(ValueError):
    """JSON input refused before or while parsing; ``reason`` labels why."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason


def nested_deeper_than(text: str, max_depth: int) -> bool:
    """Whether arrays and objects in ``text`` nest more than ``max_depth`` deep, counting
    brackets outside strings only; stops at the first level past the limit.

    Raises :class:`JsonInputError` (``malformed``) for an unterminated string. Unbalanced
    brackets are left for the parser to report.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False  # fewer openers than the limit: no scan needed (the common case)
    depth, pos = 0, 0
    while (m := _STRUCTURAL.search(text, pos)) is not None:
        ch = m.group()
        if ch == '"':
            rest = _STRING_REST.match(text, m.end())
            if rest is None:
                raise JsonInputError("malformed", f"unterminated string at char {m.start()}")
            pos = rest.end()
            continue
        pos = m.end()
        if ch in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def loads(text: str | bytes, *, max_chars: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted input: at most ``max_chars`` characters (bytes are
    decoded as UTF-8 first, RFC 8259 section 8.1) and ``max_depth`` levels of nesting."""
    if len(text) > max_chars:
        raise JsonInputError("too_large", f"{len(text)} characters, limit {max_chars}")
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonInputError("malformed", f"not UTF-8: {exc.reason}") from None
    if nested_deeper_than(text, max_depth):
        raise JsonInputError("too_deep", f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise JsonInputError("malformed", str(exc)[:120]) from None
