"""Node heartbeats in Redis, and the calls of a node that died ended by a survivor.

Every holder (a node, or one worker of it: :class:`control.call_commands.Holder`) refreshes the key
``callbridge:{prefix}node:{holder}`` with a lifetime of ``ttl_s`` every ``ttl_s / 3``. At the same
pace every holder looks for live call rows whose holder's key has lapsed, and ends them with cause
``node_lost``, marks their conference seats left, and ends the conferences that loss emptied and
those whose bridge it held (:mod:`control.conference_end`: the bridges died with it). The UPDATEs
are conditional on the row still being live and still that holder's (:mod:`control.call_end`),
so however many survivors look, each row ends once and one ``call_hungup`` event is sent. A call
of a dead node is thus ended within ``ttl_s + ttl_s / 3`` plus a database round trip of its death.

At start, before it takes calls, a holder ends the rows still marked as its own: this process holds
no call yet, so they are leftovers of its previous life (SIGKILL, crash, power loss). This needs
no Redis, so a lone SQLite node reconciles too. A node identity must therefore be unique among
live nodes (``--node-id``; HOSTNAME:HTTP_PORT by default).

A holder paused longer than its TTL (SIGSTOP, a stalled VM) finds on its next beat that its key had
lapsed: survivors may have ended its calls meanwhile, so it hangs up each local call whose row
says ended, rather than carry media for a call the platform reports as over. A holder judges
others only after its own key has lived a whole TTL: after a start, a pause, or Redis losing its
keys (restart, flush: every key gone at once), the other live nodes have all beaten again by then.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import trio
from redis.exceptions import RedisError

from control.bridge import BridgeClosed
from control.call_commands import Holder
from control.call_end import LIVE_STATUSES, end_call_once
from control.conference_end import end_held_conferences, leave_conferences
from control.db.base import DatabaseError, now_ts
from control.events import EventBus
from control.redis_link import RedisLink
from control.routes_calls import public
from control.store import Store
from media.registry import CallRegistry

log = logging.getLogger(__name__)
REAP_BATCH = 500  # rows ended per query; a node that held more is finished on the next rounds
_LIVE = f"status IN ({', '.join('?' for _ in LIVE_STATUSES)}) AND tm_delete IS NULL"


class NodeHeartbeat:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        redis: RedisLink | None,
        me: Holder,
        calls: CallRegistry,
        ttl_s: float,
    ) -> None:
        self.store = store
        self.bus = bus
        self.redis = redis
        self.me = me
        self.calls = calls
        self.ttl_s = ttl_s
        self._beats = 0
        self._steady_since = math.inf  # since when this node's own beats have found its key
        self._info = json.dumps({"pid": os.getpid(), "tm_start": now_ts()})

    def key(self, holder: Holder) -> str:
        return f"callbridge:{self.store.db.prefix}node:{holder}"

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reconcile, then beat and reap until cancelled. Started before calls are taken."""
        stale = await self.reap(self.me, "node restarted; the call was lost with its process")
        if stale:
            log.warning("ended calls left by this node's previous run", extra={"calls": stale})
        if self.redis is None:
            task_status.started()
            return
        await self.beat()
        task_status.started()
        while True:
            await trio.sleep(self.ttl_s / 3)
            try:
                await self.beat()
                await self.reap_lapsed()
            except (RedisError, DatabaseError, BridgeClosed, OSError) as exc:
                # An outage of Redis or the database delays reaping; it never stops this node.
                log.error("heartbeat round failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    async def beat(self) -> None:
        assert self.redis is not None
        ttl_ms = int(self.ttl_s * 1000)
        was_alive = await self.redis.refresh(self.key(self.me), self._info, ttl_ms)
        if not was_alive:
            # Our own key was gone: we start, we were paused past the TTL, or Redis lost its keys
            # (restart, flush). In the last case every node's key is gone at once, and reaping
            # now would end the live calls of nodes that simply have not beaten again yet.
            self._steady_since = trio.current_time()
            if self._beats:
                log.error("this node's heartbeat had lapsed; its calls may have been reaped")
                await self.hang_up_reaped_calls()
        self._beats += 1

    async def hang_up_reaped_calls(self) -> None:
        for handle in self.calls:
            row = await self.store.get("calls", handle.call_id, None)
            if row is not None and row["status"] not in LIVE_STATUSES:
                handle.hangup("node_lost")

    async def reap_lapsed(self) -> int:
        """End the live calls of every other holder whose heartbeat has lapsed. Only a node
        whose own key has stayed alive for a whole TTL judges: every live node has beaten since."""
        if trio.current_time() - self._steady_since < self.ttl_s:
            return 0
        rows = await self.store.db.fetch_all(
            f"SELECT DISTINCT node_id, worker_id FROM {{p}}calls WHERE {_LIVE} AND node_id <> ''"
            " UNION SELECT DISTINCT node_id, worker_id FROM {p}conferences"
            " WHERE status <> 'ended' AND tm_delete IS NULL AND node_id <> ''",
            list(LIVE_STATUSES),
        )
        ended = 0
        for row in rows:
            holder = Holder(str(row["node_id"]), int(row["worker_id"]))
            if holder == self.me or await self._alive(holder):
                continue
            ended += await self.reap(holder, f"node {holder} stopped answering its heartbeat")
        return ended

    async def _alive(self, holder: Holder) -> bool:
        assert self.redis is not None
        return await self.redis.exists(self.key(holder))

    async def reap(self, holder: Holder, reason: str) -> int:
        """End ``holder``'s live calls (cause ``node_lost``); returns how many this call ended."""
        ended = 0
        while True:
            before = ended
            rows = await self.store.db.fetch_all(
                f"SELECT id FROM {{p}}calls WHERE {_LIVE} AND node_id = ? AND worker_id = ?"
                " ORDER BY tm_create LIMIT ?",
                [*LIVE_STATUSES, holder.node_id, holder.worker_id, REAP_BATCH],
            )
            for row in rows:
                ended += await self._end(row["id"], holder, reason)
            if len(rows) < REAP_BATCH or ended == before:  # done, or the rest are not ours to end
                await end_held_conferences(self.store, self.bus, holder.node_id, holder.worker_id)
                return ended

    async def _end(self, call_id: str, holder: Holder, reason: str) -> int:
        target = (holder.node_id, holder.worker_id)
        row: dict[str, Any] | None = await end_call_once(
            self.store, call_id, "node_lost", reason, target
        )
        if row is None:  # another survivor (or the holder itself) ended it first
            return 0
        log.warning("call reaped", extra={"call_id": call_id, "holder": str(holder)})
        await self.bus.publish(row["customer_id"], "call_hungup", call_id, public(row))
        await leave_conferences(self.store, self.bus, call_id)
        return 1
