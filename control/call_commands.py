"""Call commands (hangup, DTMF, say, transfer) reach the process that holds the call.

A live call lives in one process: a node, or one worker of a node (the call row's ``node_id`` and
``worker_id``). Each such holder has an inbox, a channel named after it. A process asked to act on
a call another holder holds publishes a ``command`` message to that holder's inbox, naming its own
inbox for the answer; the holder runs the command on its live call through the same executor a
local request uses, and publishes a ``reply`` back. So the client gets the answer it would have got
from the holder itself (``200``, ``409 call_not_live``, ``422 leg_cannot_transfer``...).

The requester waits a bounded time. No subscriber on the holder's inbox, or no answer within
``timeout_s``, raises :class:`HolderUnavailable` (the API's 503): the call may well be alive, so
the answer is never a guess that it ended. A command carries its deadline, and a holder that
reads it late (woken from a pause, behind a backlog) drops it: a 503 means "not done, try again".
A holder that is really gone is reaped by the heartbeat
(:mod:`control.nodes`), after which the row says ``hangup`` and the API answers 409.

The transport is two methods (:class:`Transport`): Redis pub/sub between nodes; any channel with
the same two methods (a local socket between the workers of one box) carries the same messages.
Message encoding is pure (:func:`encode_command`, :func:`decode`); the Trio part is the waiting.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from prometheus_client import Counter

log = logging.getLogger(__name__)
_INBOX_QUEUE = 256  # commands waiting for this holder's executor; beyond it they are dropped


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a live call: a node, and which of its workers (0 when it has one)."""

    node_id: str
    worker_id: int = 0

    def __str__(self) -> str:
        return f"{self.node_id}/{self.worker_id}"


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer as the API sends it: status, and the JSON body (an error's code and message)."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Command:
    request_id: str
    call_id: str
    op: str
    args: dict[str, Any]
    reply_to: str
    deadline_unix_s: float  # the requester answers 503 after it; the holder drops it after it


@dataclass(frozen=True, slots=True)
class ReplyMessage:
    request_id: str
    reply: Reply


# (call id, op, args) on a local call; the answer at once, or awaited (conference commands,
# :mod:`control.conference_commands`, write rows before they answer)
Executor = Callable[[str, str, dict[str, Any]], Reply | Awaitable[Reply]]


async def _answered(reply: Reply | Awaitable[Reply]) -> Reply:
    return reply if isinstance(reply, Reply) else await reply


class Transport(Protocol):
    async def publish(self, channel: str, message: str) -> int: ...

    async def listen(
        self,
        channel: str,
        on_message: Callable[[str], None],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None: ...


class HolderUnavailable(Exception):
    """The holder did not take or did not answer the command in time: the call's state is
    unknown here, so the API answers 503 (try again), not "ended"."""


class MalformedMessage(ValueError):
    """An inbox message that is not a command or reply of this module."""


def encode_command(cmd: Command) -> str:
    return json.dumps(
        {
            "kind": "command",
            "id": cmd.request_id,
            "call_id": cmd.call_id,
            "op": cmd.op,
            "args": cmd.args,
            "reply_to": cmd.reply_to,
            "deadline": cmd.deadline_unix_s,
        }
    )


def encode_reply(request_id: str, reply: Reply) -> str:
    return json.dumps(
        {"kind": "reply", "id": request_id, "status": reply.status, "body": reply.body}
    )


def _field(msg: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = msg.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage(f"{name}: expected {kind}")
    return value


def decode(text: str) -> Command | ReplyMessage:
    try:
        msg = json.loads(text)
    except ValueError as exc:
        raise MalformedMessage("not JSON") from exc
    if not isinstance(msg, dict):
        raise MalformedMessage("not an object")
    request_id = _field(msg, "id", str)
    if msg.get("kind") == "reply":
        return ReplyMessage(
            request_id, Reply(_field(msg, "status", int), _field(msg, "body", dict))
        )
    if msg.get("kind") == "command":
        return Command(
            request_id,
            _field(msg, "call_id", str),
            _field(msg, "op", str),
            _field(msg, "args", dict),
            _field(msg, "reply_to", str),
            float(_field(msg, "deadline", (int, float))),
        )
    raise MalformedMessage("kind: expected command or reply")


@dataclass(eq=False, slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    reply: Reply | None = None


class CallCommands:
    """Runs a command where its call lives: here through ``execute``, elsewhere by message."""

    def __init__(
        self,
        me: Holder,
        execute: Executor,
        transport: Transport | None = None,
        channel_prefix: str = "callbridge:",
        timeout_s: float = 2.0,
        max_pending: int = 1024,
        drops: Counter | None = None,
        concurrent: int = 1,
    ) -> None:
        self.me = me
        self._execute = execute
        self._transport = transport
        self._prefix = channel_prefix
        self.timeout_s = timeout_s
        self._max_pending = max_pending
        self._pending: dict[str, _Pending] = {}
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[Command](_INBOX_QUEUE)
        self._drops = drops  # commands dropped at a full inbox queue (the requester gets 503)
        # Commands answered at once: 1 keeps a call's commands in order (DTMF, then say); an
        # executor that waits on another holder itself needs more, or two of them asking each
        # other at the same moment would each wait for the other's queue until both time out.
        self._concurrent = concurrent

    def inbox(self, holder: Holder) -> str:
        return f"{self._prefix}inbox:{holder}"

    def alongside(self, channel_prefix: str, execute: Executor, concurrent: int) -> CallCommands:
        """Commands of another kind between the same holders over the same transport, on
        inboxes of their own (``channel_prefix``) with their own executor."""
        return CallCommands(
            self.me,
            execute,
            self._transport,
            channel_prefix,
            self.timeout_s,
            self._max_pending,
            self._drops,
            concurrent,
        )

    async def run(
        self,
        holder: Holder,
        call_id: str,
        op: str,
        args: dict[str, Any],
        timeout_s: float | None = None,
    ) -> Reply:
        """Run ``op`` on ``call_id`` held by ``holder``; raises :class:`HolderUnavailable`.
        ``timeout_s``: this command's wait, where it is longer than the usual one (an outbound
        call that answers only once the callee picks up)."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if holder == self.me or self._transport is None:
            return await _answered(self._execute(call_id, op, args))
        if len(self._pending) >= self._max_pending:
            raise HolderUnavailable("too many call commands in flight; try again")
        request_id = uuid.uuid4().hex
        pending = self._pending[request_id] = _Pending()
        try:
            deadline = time.time() + timeout_s
            cmd = Command(request_id, call_id, op, args, self.inbox(self.me), deadline)
            with trio.move_on_after(timeout_s):
                try:
                    taken = await self._transport.publish(self.inbox(holder), encode_command(cmd))
                except Exception as exc:  # the transport's own failure (Redis down): not "ended"
                    raise HolderUnavailable(f"call commands cannot be sent: {exc}") from exc
                if not taken:
                    raise HolderUnavailable(f"node {holder} holding the call is not reachable")
                await pending.done.wait()
        finally:
            del self._pending[request_id]
        if pending.reply is None:
            raise HolderUnavailable(
                f"node {holder} holding the call did not answer within {timeout_s:g} s"
            )
        return pending.reply

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on this holder's inbox: answer commands, hand replies to their requesters."""
        if self._transport is None:
            task_status.started()
            return
        async with trio.open_nursery() as nursery:
            await nursery.start(self._transport.listen, self.inbox(self.me), self.on_message)
            task_status.started()
            slots = trio.Semaphore(self._concurrent)
            async for cmd in self._inbox_receive:
                await slots.acquire()
                nursery.start_soon(self._answer_in_slot, cmd, slots)

    async def _answer_in_slot(self, cmd: Command, slots: trio.Semaphore) -> None:
        try:
            await self._answer(cmd)
        finally:
            slots.release()

    def on_message(self, text: str) -> None:
        try:
            msg = decode(text)
        except MalformedMessage as exc:
            log.warning("malformed call command message", extra={"error": str(exc)})
            return
        if isinstance(msg, ReplyMessage):
            pending = self._pending.get(msg.request_id)
            if pending is not None:  # else: its requester gave up already
                pending.reply = msg.reply
                pending.done.set()
            return
        try:
            self._inbox_send.send_nowait(msg)
        except trio.WouldBlock:
            if self._drops is not None:
                self._drops.inc()
            log.warning("call command dropped: inbox full", extra={"call_id": msg.call_id})

    async def _answer(self, cmd: Command) -> None:
        if time.time() > cmd.deadline_unix_s:
            # Its requester has answered 503 already: carrying it out now (a holder woken from
            # a pause, a backlog) would act behind the client's back. Nodes' clocks run on NTP.
            log.warning("call command expired unanswered", extra={"call_id": cmd.call_id})
            return
        reply = await _answered(self._execute(cmd.call_id, cmd.op, cmd.args))
        assert self._transport is not None  # serve() runs only with a transport
        try:
            await self._transport.publish(cmd.reply_to, encode_reply(cmd.request_id, reply))
        except Exception as exc:  # any transport failure loses this reply only, not the inbox
            # The requester times out and answers 503; the command itself was carried out.
            log.error("call command reply lost", extra={"call_id": cmd.call_id, "error": str(exc)})
