"""SIP transaction timers over UDP (RFC 3261 17), sans-I/O: the caller passes the time in.

Three things need timers on a UAS that sometimes sends requests:

- :class:`ResponseCache`: a server transaction's last response, resent when the request is
  retransmitted, kept for 64*T1 (timers J and H; 17.2).
- :class:`Retransmitter` entries of kind ``answer``: a final response to an INVITE, resent at
  T1, 2*T1 ... capped at T2 until the ACK comes (2xx: 13.3.1.4; others: timer G), given up after
  64*T1 (timer H).
- entries of kind ``request``: a non-INVITE request we sent (BYE, REFER, CANCEL, REGISTER),
  resent the same way until any response (timer E), given up after 64*T1 (timer F).
- entries of kind ``invite``: an INVITE we sent, resent until a provisional response (timer A;
  capped at T2 like the others), given up after 64*T1 without one (timer B).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Address = tuple[str, int]
T1_S = 0.5
T2_S = 4.0
TIMEOUT_S = 64 * T1_S
MAX_CACHED = 20_000  # responses kept for retransmitted requests; oldest dropped beyond


@dataclass(slots=True)
class _Cached:
    data: bytes
    destination: Address
    expires_s: float


class ResponseCache:
    """Last response per server transaction key, for retransmitted requests."""

    def __init__(self, max_entries: int = MAX_CACHED) -> None:
        self._entries: dict[tuple[str, str], _Cached] = {}
        self._max = max_entries

    def put(self, key: tuple[str, str], data: bytes, destination: Address, now_s: float) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Cached(data, destination, now_s + TIMEOUT_S)

    def get(self, key: tuple[str, str]) -> tuple[bytes, Address] | None:
        entry = self._entries.get(key)
        return (entry.data, entry.destination) if entry else None

    def expire(self, now_s: float) -> None:
        for key in [k for k, e in self._entries.items() if e.expires_s <= now_s]:
            del self._entries[key]

    def next_expiry(self) -> float | None:
        # Entries are inserted in time order, so the first one expires first.
        return next(iter(self._entries.values())).expires_s if self._entries else None

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class Pending:
    """One message resent until acknowledged (an ACK, or any response)."""

    kind: Literal["answer", "request", "invite"]
    call_id: str
    method: str  # of the transaction: INVITE for answers, BYE/REFER for requests
    data: bytes
    destination: Address
    next_s: float
    interval_s: float
    give_up_s: float
    status: int = 0  # of an answer


class Retransmitter:
    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}

    def start(self, key: str, pending: Pending) -> None:
        self._pending[key] = pending

    def stop(self, key: str) -> Pending | None:
        return self._pending.pop(key, None)

    def get(self, key: str) -> Pending | None:
        return self._pending.get(key)

    def drop_call(self, call_id: str, kind: str) -> None:
        for key in [k for k, p in self._pending.items() if p.call_id == call_id and p.kind == kind]:
            del self._pending[key]

    def due(self, now_s: float) -> tuple[list[Pending], list[tuple[str, Pending]]]:
        """(to resend now, given up): resend times are advanced, given-up entries removed."""
        resend: list[Pending] = []
        expired: list[tuple[str, Pending]] = []
        for key, p in list(self._pending.items()):
            if now_s >= p.give_up_s:
                expired.append((key, self._pending.pop(key)))
            elif now_s >= p.next_s:
                p.interval_s = min(p.interval_s * 2, T2_S)
                p.next_s = now_s + p.interval_s
                resend.append(p)
        return resend, expired

    def next_deadline(self) -> float | None:
        return min((min(p.next_s, p.give_up_s) for p in self._pending.values()), default=None)

    def __len__(self) -> int:
        return len(self._pending)


def new_pending(
    kind: Literal["answer", "request", "invite"],
    call_id: str,
    method: str,
    data: bytes,
    destination: Address,
    now_s: float,
    status: int = 0,
) -> Pending:
    return Pending(
        kind, call_id, method, data, destination, now_s + T1_S, T1_S, now_s + TIMEOUT_S, status
    )
