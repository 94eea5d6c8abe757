"""Ending a call row exactly once, whoever ends it.

Two parties may end the same row: the node holding the call (its leg hung up) and a survivor
reaping the calls of a node whose heartbeat lapsed (:mod:`control.nodes`). A node that was only
paused (SIGSTOP, a long GC, a network partition) may come back after it was reaped and end its
calls itself. The UPDATE is therefore conditional on the row still being live, and only the party
whose UPDATE changed the row publishes ``call_hungup``: one row, one ``call_hungup`` event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from control.db.base import Row, now_ts
from control.store import Store

LIVE_STATUSES = ("ringing", "progressing")
_TS = "%Y-%m-%d %H:%M:%S.%f"


def duration_ms(row: Row, ended: str) -> int:
    """Answered calls last from the answer; unanswered ones from the row's creation."""
    start = datetime.strptime(row["tm_answer"] or row["tm_create"], _TS)
    return max(0, int((datetime.strptime(ended, _TS) - start).total_seconds() * 1000))


def hangup_values(row: Row | None, cause: str, reason: str) -> dict[str, Any]:
    ended = now_ts()
    return {
        "status": "hangup",
        "hangup_cause": cause[:16],
        "hangup_reason": reason[:255],
        "tm_hangup": ended,
        "duration_ms": duration_ms(row, ended) if row is not None else 0,
    }


async def end_call_once(
    store: Store,
    call_id: str,
    cause: str,
    reason: str,
    holder: tuple[str, int] | None = None,
) -> Row | None:
    """Mark the call ended if it is still live (and, with ``holder``, still that holder's).

    Returns the ended row when this UPDATE ended it, ``None`` when the row is missing or someone
    else ended it first; the caller publishes ``call_hungup`` only for a returned row.
    """
    row = await store.get("calls", call_id, None)
    if row is None or row["status"] not in LIVE_STATUSES:
        return None
    sql, params = store.update_statement("calls", call_id, None, hangup_values(row, cause, reason))
    sql += " AND status IN (?, ?)"
    params += list(LIVE_STATUSES)
    if holder is not None:
        sql += " AND node_id = ? AND worker_id = ?"
        params += list(holder)
    if not await store.db.execute(sql, params):
        return None
    await store.invalidate("calls", call_id)
    return await store.get("calls", call_id, None)
