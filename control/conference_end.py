"""Ending a conference seat, or a conference, exactly once; and what a lost holder held.

A conference's bridge, its recorded mix and its calls' audio live in one process: only a call
held by a process joins a bridge there (:mod:`control.conferences`). When a holder dies, its
bridges die with it. The survivor that ends a reaped call (:mod:`control.nodes`) therefore marks
that call's seats left, then ends each of those conferences that no joined seat remains in: the
loss took everyone in it, and no process carries its audio any more. A conference that was
empty already is nobody's, and is left as it is. A conference whose bridge the holder held (its
row's ``node_id``: calls of other nodes were linked to it) ends with it, whoever is left in it.

Both UPDATEs are conditional on the row's state, as the call's own (:mod:`control.call_end`):
however many survivors race, and whether or not the holder comes back from a pause and marks its
seats itself, each seat leaves once and each conference ends once, with one event each. The last
seat to leave is marked by someone who checks the conference after marking it, so the check
cannot be missed.
"""

from __future__ import annotations

from typing import Any

from control.db.base import Row, now_ts
from control.events import EventBus
from control.store import Store


def public_conference(row: Row) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "tm_delete"}
    out["tones"] = bool(row.get("tones", 1))
    return out


def public_participant(row: Row, talking: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "tm_delete"}
    for flag in ("mute_send", "mute_hear", "moderator"):
        out[flag] = bool(row.get(flag))
    out["talking"] = talking
    return out


async def update_if(
    store: Store, table: str, row_id: str, values: dict[str, Any], condition: str, value: str
) -> Row | None:
    """Set ``values`` if the row also meets ``condition`` (``"status = ?"``, with ``value``);
    the updated row, or None when someone else changed it first."""
    sql, params = store.update_statement(table, row_id, None, values)
    if not await store.db.execute(f"{sql} AND {condition}", [*params, value]):
        return None
    await store.invalidate(table, row_id)
    return await store.get(table, row_id, None)


async def end_conference_once(store: Store, conference_id: str) -> Row | None:
    """Mark the conference ended; the row when this call ended it, else None."""
    values = {"status": "ended"}
    return await update_if(store, "conferences", conference_id, values, "status <> ?", "ended")


async def _leave(store: Store, bus: EventBus, seats: list[Row]) -> None:
    for seat in seats:
        values = {"status": "left", "tm_leave": now_ts()}
        left = await update_if(store, "participants", seat["id"], values, "status = ?", "joined")
        if left is not None:  # else the conference's own process marked it first
            await bus.publish(
                left["customer_id"],
                "conference_participant_removed",
                left["conference_id"],
                public_participant(left),
            )


async def _end(store: Store, bus: EventBus, conference_id: str) -> None:
    ended = await end_conference_once(store, conference_id)
    if ended is not None:
        await bus.publish(
            ended["customer_id"], "conference_ended", conference_id, public_conference(ended)
        )


async def leave_conferences(store: Store, bus: EventBus, call_id: str) -> None:
    """The reaped call's joined seats: left; then each of their conferences, if now empty, ended."""
    seats = await store.find("participants", call_id=call_id, status="joined")
    await _leave(store, bus, seats)
    for conference_id in dict.fromkeys(seat["conference_id"] for seat in seats):
        if not await store.find("participants", conference_id=conference_id, status="joined"):
            await _end(store, bus, conference_id)


async def end_held_conferences(store: Store, bus: EventBus, node_id: str, worker_id: int) -> int:
    """The conferences whose bridge the lost holder held (:mod:`control.conference_links`):
    ended, every seat left (calls of other nodes in it lose their links and go back to their
    agents or hang up by themselves). Returns how many this call ended."""
    rows = await store.db.fetch_all(
        "SELECT id FROM {p}conferences WHERE node_id = ? AND worker_id = ? AND status <> ?"
        " AND tm_delete IS NULL",
        [node_id, worker_id, "ended"],
    )
    for row in rows:
        await _leave(
            store, bus, await store.find("participants", conference_id=row["id"], status="joined")
        )
        await _end(store, bus, row["id"])
    return len(rows)
