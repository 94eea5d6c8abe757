"""The JSON under Twilio Media Streams messages: reading fields strictly, writing compactly.

Every message either role receives passes through :func:`load_message` and the field readers
here; each raises :class:`TwilioProtocolError` naming the field, never anything else. They run
50 times a second per direction per call, so the checks are C-level where Python offers it
(``binascii.a2b_base64`` in strict mode instead of ``base64.b64decode``'s regex, ``str``
methods instead of a regex for Twilio's decimal strings). Pure: no I/O.
"""

from __future__ import annotations

import binascii
import json
from typing import Any

from media.leg import LegError
from proto import safe_json

MAX_MESSAGE_CHARS = 65_536
"""Bound on one text message: 200 ms of media is ~2.3 kB, a start with parameters a few kB."""
MAX_DECIMAL_DIGITS = 15  # Twilio's numbers are sequence numbers and milliseconds


class TwilioProtocolError(LegError):
    """The peer broke the Media Streams protocol; ``reason`` is a metric label (``bad_json``)."""


def load_message(text: str | bytes) -> tuple[str, dict[str, Any]]:
    """A message's ``event`` and its whole object."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise TwilioProtocolError("oversized", f"{len(text)} > {MAX_MESSAGE_CHARS}")
    if isinstance(text, bytes):
        # Media Streams is text only; a binary frame is a client bug, not mu-law.
        raise TwilioProtocolError("binary_message", f"{len(text)} bytes")
    try:
        msg = safe_json.loads(text, max_chars=MAX_MESSAGE_CHARS)
    except safe_json.JsonInputError as exc:
        raise TwilioProtocolError("bad_json", str(exc)[:80]) from None
    if not isinstance(msg, dict):
        raise TwilioProtocolError("bad_json", "not an object")
    event = msg.get("event")
    if not isinstance(event, str):
        raise TwilioProtocolError("missing_field", "event")
    return event, msg


def obj_field(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise TwilioProtocolError("missing_field", key)
    return value


def str_field(msg: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = msg.get(key, default)
    if not isinstance(value, str):
        raise TwilioProtocolError("missing_field" if value is None else "bad_field", key)
    return value


def int_field(msg: dict[str, Any], key: str, *, default: int | None = None) -> int:
    """A non-negative integer, as Twilio writes it (a decimal string) or as a JSON number."""
    value = msg.get(key, default)
    if isinstance(value, str):
        if value.isascii() and value.isdecimal() and len(value) <= MAX_DECIMAL_DIGITS:
            return int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**15:
        return value
    raise TwilioProtocolError("missing_field" if value is None else "bad_field", key)


def b64_payload(text: str, max_bytes: int) -> bytes:
    """Strict base64 (no whitespace, no stray characters, padding right) of 1..max_bytes."""
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise TwilioProtocolError("bad_payload_size", f"payload over {max_bytes} bytes")
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: a non-ASCII character
        raise TwilioProtocolError("bad_base64", text[:40]) from None
    if not 0 < len(data) <= max_bytes:
        raise TwilioProtocolError("bad_payload_size", f"{len(data)} bytes, 1..{max_bytes} allowed")
    return data


def str_map(value: Any, key: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TwilioProtocolError("bad_field", key)
    return dict(value)


def dump(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))
