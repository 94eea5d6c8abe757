"""Disabling a customer: its keys revoked, its new calls refused, its live calls ended.

The order is the house's (database first, then caches, then events) and it matters: the status
row is written first, so a call that starts while the rest runs is already refused
(:func:`control.auth.inactive_customer` in ``call_created``), and a JWT of the customer stops
working at once; then every access key is revoked in one statement and dropped from the cache;
then each live call is ended where it lives (this node, or its holder through
:class:`control.call_commands.CallCommands`), each with its ``call_hungup`` event, and last
``customer_disabled`` is published. A call whose holder does not answer is left to that node's
reaper (``node_lost``); a row whose call is gone everywhere is ended here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from control.auth import access_key_cache_key
from control.call_commands import Holder, HolderUnavailable
from control.call_end import LIVE_STATUSES, end_call_once
from control.db.base import now_ts
from control.services import Services

log = logging.getLogger(__name__)
DISABLED_REASON = "customer_disabled"
_HANGUPS_AT_ONCE = 16  # bounded fan-out: a customer with thousands of calls queues, not floods


@dataclass(slots=True)
class DisableOutcome:
    revoked_keys: int = 0
    calls_ended: int = 0
    calls_unreachable: int = 0  # held by a node that did not answer: its reaper ends them

    def as_dict(self) -> dict[str, int]:
        return {
            "revoked_keys": self.revoked_keys,
            "calls_ended": self.calls_ended,
            "calls_unreachable": self.calls_unreachable,
        }


def customer_public(row: dict[str, Any]) -> dict[str, Any]:
    """A customer row as the API shows it (its ``customer_id`` is itself)."""
    return {k: v for k, v in row.items() if k not in ("customer_id", "tm_delete")}


async def revoke_keys(services: Services, customer_id: str) -> int:
    store = services.store
    keys = await store.find("accesskeys", customer_id=customer_id)
    if not keys:
        return 0
    ts = now_ts()
    await store.db.execute(
        "UPDATE {p}accesskeys SET tm_delete = ?, tm_update = ? "
        "WHERE customer_id = ? AND tm_delete IS NULL",
        [ts, ts, customer_id],
    )
    if store.cache is not None:  # database first, then the cache: revocation is immediate
        for key in keys:
            await store.cache.delete(access_key_cache_key(store, key["token_hash"]))
    return len(keys)


async def live_calls(services: Services, customer_id: str) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in LIVE_STATUSES)
    rows = await services.db.fetch_all(
        f"SELECT id, node_id, worker_id FROM {{p}}calls WHERE customer_id = ? "
        f"AND status IN ({marks}) AND tm_delete IS NULL",
        [customer_id, *LIVE_STATUSES],
    )
    return [dict(r) for r in rows]


async def _end_one(
    services: Services, row: dict[str, Any], outcome: DisableOutcome, limiter: trio.CapacityLimiter
) -> None:
    async with limiter:
        commands = services.commands
        here = services.calls.get(row["id"]) is not None or not row.get("node_id")
        holder = commands.me if here else Holder(row["node_id"], int(row.get("worker_id") or 0))
        try:
            reply = await commands.run(holder, row["id"], "end_disabled", {})
        except HolderUnavailable as exc:
            outcome.calls_unreachable += 1
            extra = {"call_id": row["id"], "error": str(exc)}
            log.warning("disabled customer's call not ended", extra=extra)
            return
        if reply.status == 200:
            outcome.calls_ended += 1  # its holder's hooks write the row and call_hungup
            return
        # The holder no longer has it (a row left live by a crash): end the row here, once.
        ended = await end_call_once(services.store, row["id"], "api", DISABLED_REASON)
        if ended is not None:
            outcome.calls_ended += 1
            public = {k: v for k, v in ended.items() if k != "tm_delete"}
            await services.bus.publish(ended["customer_id"], "call_hungup", row["id"], public)


async def disable_customer(services: Services, customer_id: str) -> DisableOutcome:
    """Disable ``customer_id`` (it must exist); safe to repeat (a retry finishes the job)."""
    store = services.store
    ts = now_ts()
    row = await store.update(
        "customers", customer_id, None, {"status": "disabled", "tm_disable": ts}
    )
    if row is None:
        raise LookupError(customer_id)
    outcome = DisableOutcome(revoked_keys=await revoke_keys(services, customer_id))
    limiter = trio.CapacityLimiter(_HANGUPS_AT_ONCE)
    async with trio.open_nursery() as nursery:
        for call in await live_calls(services, customer_id):
            nursery.start_soon(_end_one, services, call, outcome, limiter)
    await services.bus.publish(
        customer_id,
        "customer_disabled",
        customer_id,
        {**customer_public(row), **outcome.as_dict()},
    )
    log.warning("customer disabled", extra={"customer_id": customer_id, **outcome.as_dict()})
    return outcome
