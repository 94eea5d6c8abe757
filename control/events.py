"""Events: stored first, then fanned out to WebSocket subscribers and webhooks.

Topics are ``customer_id:<id>:<resource>:<resource id>`` (``customer_id:<id>:call:*`` subscribes to
all of a customer's call events). A subscriber may only name topics under its own customer id, and
delivery checks the event's customer again, so one customer can never see another's events.
Without ``--redis`` the bus is in-process; with it every event goes through one Redis channel and
each node delivers to its own subscribers (webhooks are sent by the publishing node only, once).
Subscriber queues are bounded: a slow WebSocket client loses events (counted), it never stalls a
call.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from prometheus_client import Counter

from control.store import Store

log = logging.getLogger(__name__)
_RESOURCE_OF = {"transcript": "call", "tool": "call", "dtmf": "call"}
# An event after which its customer's subscriptions end (on every node: it comes through Redis
# like the others), and the reason their sockets are closed with.
ENDING_EVENTS = {"customer_disabled": "customer disabled"}


class TopicError(ValueError):
    """A subscription pattern outside the subscriber's own customer."""


def topic_of(customer_id: str, event_type: str, resource_id: str) -> str:
    head = event_type.split("_", 1)[0]
    return f"customer_id:{customer_id}:{_RESOURCE_OF.get(head, head)}:{resource_id}"


def check_patterns(customer_id: str, patterns: list[str]) -> list[str]:
    own = f"customer_id:{customer_id}:"
    for p in patterns:
        if not isinstance(p, str) or not p.startswith(own) or len(p) > 200:
            raise TopicError(f"topic {p!r} is not under {own}*")
    return patterns


class Publisher(Protocol):
    async def publish(self, channel: str, message: str) -> object: ...


class Offer(Protocol):
    async def offer(self, event: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class Subscription:
    customer_id: str
    send: trio.MemorySendChannel[dict[str, Any]]
    receive: trio.MemoryReceiveChannel[dict[str, Any]]
    patterns: list[str] = field(default_factory=list)
    ended: str = ""  # why the bus ended it (its customer was disabled); its channel is closed

    def end(self, reason: str) -> None:
        """What is queued is still received, then the channel ends; ``ended`` says why."""
        if not self.ended:
            self.ended = reason
            self.send.close()

    def wants(self, event: dict[str, Any]) -> bool:
        return event["customer_id"] == self.customer_id and any(
            fnmatch.fnmatchcase(event["topic"], p) for p in self.patterns
        )


class EventBus:
    def __init__(
        self,
        store: Store,
        drops: Counter,
        webhooks: Offer | None = None,
        redis: Publisher | None = None,
        channel: str = "callbridge:events",
    ) -> None:
        self.store = store
        self.drops = drops
        self.webhooks = webhooks
        self.redis = redis
        self.channel = channel
        self._subs: set[Subscription] = set()
        # Told of each event this node publishes (not of other nodes' events), at once and
        # without blocking: the call summary writer (control/summaries.py) queues ended calls.
        self.observers: list[Callable[[dict[str, Any]], None]] = []

    async def publish(
        self, customer_id: str, event_type: str, resource_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        row = await self.store.insert(
            "events",
            {
                "customer_id": customer_id,
                "type": event_type,
                "resource_id": resource_id,
                "data": data,
            },
        )
        event = {
            k: row[k] for k in ("id", "customer_id", "type", "resource_id", "data", "tm_create")
        }
        event["topic"] = topic_of(customer_id, event_type, resource_id)
        if self.redis is not None:
            await self.redis.publish(self.channel, json.dumps(event))
        else:
            self.deliver_local(event)
        if self.webhooks is not None:
            await self.webhooks.offer(event)
        for observe in self.observers:
            observe(event)
        return event

    def on_redis_message(self, message: str) -> None:
        try:
            event = json.loads(message)
            if not isinstance(event["customer_id"], str) or not isinstance(event["topic"], str):
                raise TypeError("event fields")
        except (ValueError, KeyError, TypeError):
            log.warning("malformed event on redis channel")
            return
        self.deliver_local(event)

    def deliver_local(self, event: dict[str, Any]) -> None:
        for sub in list(self._subs):
            if not sub.ended and sub.wants(event):  # an ended one waits for its socket to go
                try:
                    sub.send.send_nowait(event)
                except trio.WouldBlock:
                    self.drops.inc()
        if event.get("type") in ENDING_EVENTS:  # after the event itself, so it is the last seen
            self.end_subscriptions(event["customer_id"], ENDING_EVENTS[event["type"]])

    def end_subscriptions(self, customer_id: str, reason: str) -> None:
        """End every subscription of ``customer_id`` on this node (:meth:`Subscription.end`)."""
        for sub in list(self._subs):
            if sub.customer_id == customer_id:
                sub.end(reason)

    @contextmanager
    def subscribe(self, customer_id: str, queue_size: int = 256) -> Iterator[Subscription]:
        send, receive = trio.open_memory_channel[dict[str, Any]](queue_size)
        sub = Subscription(customer_id, send, receive)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            send.close()
