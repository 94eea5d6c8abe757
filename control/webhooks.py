"""Signed webhook delivery with retries and delivery rows.

Signature: ``X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`` with the same
``X-Timestamp`` (Unix seconds) sent alongside, so a receiver can reject replays older than its
tolerance. Delivery is at-least-once: any non-2xx or transport failure is retried with exponential
backoff (``backoff_s * 2**n``) until ``attempts`` are spent; every attempt writes a delivery row.
A retry waits for its due time in :mod:`control.delivery_queue`, not in a worker, so one dead
endpoint delays only its own later events (kept in order behind it), never another webhook's.
The queue is bounded in all and per webhook; a job over either bound is dropped, counted and
logged, never queued without limit.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client import Counter

from control.db import DatabaseError
from control.delivery_queue import Attempt, DeliveryQueue
from control.httpclient import HttpClientError, post
from control.store import Store

log = logging.getLogger(__name__)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(
    secret: str, event_type: str, event_id: str, body: bytes, now_s: float | None = None
) -> dict[str, str]:
    ts = str(int(time.time() if now_s is None else now_s))
    return {
        "Content-Type": "application/json",
        "X-Timestamp": ts,
        "X-Event-Type": event_type,
        "X-Event-Id": event_id,
        "X-Signature": sign(secret, ts, body),
    }


@dataclass(frozen=True, slots=True)
class Job:
    webhook: dict[str, Any]
    event: dict[str, Any]


class WebhookDispatcher:
    """Workers make one attempt each and hand the job back; a retry waits in the
    :class:`DeliveryQueue` for its due time, holding no worker."""

    def __init__(
        self,
        store: Store,
        attempts: int,
        backoff_s: float,
        timeout_s: float,
        drops: Counter,
        queue_size: int = 1000,
        workers: int = 4,
        per_destination: int = 100,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.drops = drops
        self.workers = workers
        self.queue: DeliveryQueue[Job] = DeliveryQueue(queue_size, per_destination)
        self._changed = trio.Event()  # set when the queue may have something due sooner
        # Unbuffered: the scheduler hands an attempt over only when a worker is free for it.
        self._hand, self._take = trio.open_memory_channel[Attempt[Job]](0)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)
            nursery.start_soon(self._scheduler)
            task_status.started()

    async def offer(self, event: dict[str, Any]) -> None:
        """Queue the event for every webhook of its customer that wants its type."""
        hooks = await self.store.find("webhooks", customer_id=event["customer_id"])
        for hook in hooks:
            types = hook["event_types"] or []
            if types and event["type"] not in types:
                continue
            if self.queue.add(hook["id"], Job(hook, event)):
                self._changed.set()
            else:
                self.drops.inc()
                log.warning(
                    "webhook queue full, delivery dropped",
                    extra={"webhook_id": hook["id"], "event_id": event["id"]},
                )

    async def _scheduler(self) -> None:
        while True:
            attempt = self.queue.take(trio.current_time())
            if attempt is not None:
                await self._hand.send(attempt)  # waits for a free worker
                continue
            self._changed = trio.Event()
            with trio.move_on_at(self.queue.next_due_s()):
                await self._changed.wait()

    async def _worker(self) -> None:
        async for attempt in self._take:
            try:
                ok = await self.attempt(attempt.item, attempt.number)
            except DatabaseError:
                # The delivery row could not be written: log it, keep the worker for the rest.
                log.exception(
                    "webhook delivery bookkeeping failed",
                    extra={"webhook_id": attempt.destination},
                )
                ok = True  # the attempt's outcome is unknown to us: do not repeat it blindly
            if ok or attempt.number >= self.attempts:
                self.queue.done(attempt)
            else:
                delay_s = self.backoff_s * 2 ** (attempt.number - 1)
                self.queue.retry(attempt, trio.current_time() + delay_s)
            self._changed.set()

    async def attempt(self, job: Job, number: int) -> bool:
        """POST the event once and record the attempt; True when it was delivered."""
        hook, event = job.webhook, job.event
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = signed_headers(hook["secret"], event["type"], event["id"], body)
        status_code, error = 0, ""
        try:
            verify = bool(hook.get("tls_verify", True))
            resp = await post(hook["url"], body, headers, self.timeout_s, verify_tls=verify)
            status_code = resp.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except HttpClientError as exc:
            error = str(exc)[:255]
        ok = not error
        final = ok or number >= self.attempts
        await self.store.insert(
            "deliveries",
            {
                "customer_id": hook["customer_id"],
                "webhook_id": hook["id"],
                "event_id": event["id"],
                "attempt": number,
                "status": "delivered" if ok else ("failed" if final else "retrying"),
                "status_code": status_code,
                "error": error,
            },
        )
        if final and not ok:
            log.warning(
                "webhook delivery given up",
                extra={"webhook_id": hook["id"], "event_id": event["id"]},
            )
        return ok
