"""Hangup causes between Asterisk and callbridge, sans-I/O: one vocabulary both ways.

Asterisk speaks Q.850 cause codes (``causes.h``); ARI's ``DELETE /channels/{id}?reason=`` takes
a few words for them (``res/ari/resource_channels.c``). callbridge uses those same words:

- a caller's hangup that ARI reports (``ChannelHangupRequest``/``ChannelDestroyed``) is told in
  the call's ``hangup_reason`` (so in ``call_hungup`` events) as ``caller hung up: busy (Q.850
  17)``: the word, and the code for what the words do not cover;
- a call that callbridge ends is hung up in Asterisk with the word for why (:func:`ending_reason`):
  ``rejected`` (21) for a call the control plane refused or a disabled customer's call, ``normal``
  (16) for the agent's ``end_call``, an API hangup, the end of a call's time; an API hangup
  that names a cause (:func:`api_hangup_reason`) is hung up with that one.
"""

from __future__ import annotations

# ARI's hangup reasons and the Q.850 codes Asterisk sends for them.
REASON_CODES: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}
# Codes without a reason of their own, told by the nearest one.
_NEAREST: dict[int, str] = {
    3: "unallocated",  # no route to destination
    20: "unallocated",  # subscriber absent
    22: "unallocated",  # number changed
    27: "failure",  # destination out of order
    41: "failure",  # temporary failure
    42: "congestion",  # switching equipment congestion
    44: "congestion",  # requested channel not available
    65: "codec_mismatch",  # bearer capability not implemented
    88: "codec_mismatch",  # incompatible destination
    102: "timeout",  # recovery on timer expiry
}
_WORDS: dict[int, str] = {code: word for word, code in REASON_CODES.items()} | _NEAREST

# The media core's reasons for ending a call that are refusals, not a conversation's end.
_REFUSALS = frozenset({"customer_disabled"})
# An API hangup that names its cause (``POST /v1.0/calls/<id>/hangup {"cause": "busy"}``).
_API_PREFIX = "api: "


def cause_word(code: int) -> str:
    """``busy`` for 17; ``unknown`` for 0 (no cause given); ``cause N`` for a code without one."""
    if code == 0:
        return "unknown"
    return _WORDS.get(code, f"cause {code}")


def caller_hangup_reason(code: int, text: str = "") -> str:
    """The call's hangup reason when the caller's channel ends with Q.850 ``code``
    (``text``: Asterisk's own words for it, kept when the code has no word of ours)."""
    word = cause_word(code)
    if code == 0:
        return "caller hung up"
    if word.startswith("cause ") and text:
        word = text.lower()
    return f"caller hung up: {word} (Q.850 {code})"


def api_hangup_reason(cause: str) -> str:
    """The call's hangup reason for an API hangup with ``cause`` (an ARI reason word):
    ``api`` for a normal one, as before causes could be named; ``api: busy`` otherwise."""
    return "api" if cause == "normal" else f"{_API_PREFIX}{cause}"


def api_cause_code(reason: str) -> int:
    """The Q.850 code an API hangup's ``reason`` names (``api: busy``: 17); 0 for none."""
    named = reason.removeprefix(_API_PREFIX)
    return REASON_CODES.get(named, 0) if reason.startswith(_API_PREFIX) else 0


def ending_reason(reason: str, refused: bool) -> str:
    """The ARI hangup reason for a call callbridge ends with ``reason`` (the media core's);
    ``refused``: the control plane never took the call; an API hangup's own cause otherwise."""
    if refused or reason in _REFUSALS:
        return "rejected"
    named = reason.removeprefix(_API_PREFIX)
    if reason.startswith(_API_PREFIX) and named in REASON_CODES:
        return named
    return "normal"
