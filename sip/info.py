"""Bodies a UA reads inside a dialog: DTMF in SIP INFO, and the sipfrag of a REFER's NOTIFY.

INFO DTMF has no RFC of its own; ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``,
Cisco's, what sipp and most PBXs send) and ``application/dtmf`` (the bare digit) are the two
forms in use. A NOTIFY for a REFER carries a ``message/sipfrag`` status line (RFC 3515 2.4.5).
"""

from __future__ import annotations

import re

DIGITS = "0123456789*#ABCD"
_SIGNAL_CODES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
_SIPFRAG = re.compile(rb"^\s*SIP/2\.0 ([1-6][0-9][0-9])\b")
DEFAULT_DURATION_MS = 100
MAX_DURATION_MS = 10_000


def _digit(text: str) -> str | None:
    text = text.strip().upper()
    text = _SIGNAL_CODES.get(text, text)
    return text if len(text) == 1 and text in DIGITS else None


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int] | None:
    """(digit, duration_ms) from an INFO body, or None if it is not DTMF we understand."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    if content_type == "application/dtmf":
        digit = _digit(text)
        return (digit, DEFAULT_DURATION_MS) if digit else None
    if content_type != "application/dtmf-relay":
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    digit = _digit(fields.get("signal", ""))
    if digit is None:
        return None
    duration = fields.get("duration", "")
    duration_ms = int(duration) if duration.isdigit() else DEFAULT_DURATION_MS
    return digit, min(duration_ms, MAX_DURATION_MS)


def parse_sipfrag_status(body: bytes) -> int | None:
    match = _SIPFRAG.match(body)
    return int(match.group(1)) if match else None
