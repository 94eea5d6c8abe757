"""Call summaries: written once a call ends, stored, served, and sent as ``call_summary``.

Every ``call_hungup`` this node publishes (its own calls, a customer's disabled calls, a lost
node's reaped calls) reaches :meth:`SummaryWriter.observe` through the event bus, so each ended
call is summarised once, by the node that ended its row. The writer waits ``settle_s`` first: an
agent's last transcripts arrive just after the hang-up. The work runs in a few worker tasks fed by
a bounded queue: a burst of hang-ups waits, a flood beyond the queue is dropped and counted
(``callbridge_summary_drops``), and a slow LLM never holds a call or the event bus.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio
from prometheus_client import Counter
from quart import Response

from control.api import Api, ApiError, Ctx, not_found
from control.bridge import BridgeClosed
from control.db.base import DatabaseError
from control.events import EventBus
from control.store import Store
from control.summary_doc import RECORD_METHOD, RECORD_NOTE, CallRecord, build_document, record_text
from control.summary_llm import SummaryLlmError, endpoint_for, summarise

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000
WORKERS = 4
MAX_EVENT_CHARS = 60_000  # an event row is a TEXT column (64 KiB on MariaDB)
_RECORDING_NAMES = ("{}.wav", "{}.asterisk.wav")  # media/recording_leg.py, sip/ari recordings


def recording_path(record_dir: str | None, call_id: str) -> Path | None:
    if not record_dir:
        return None
    for name in _RECORDING_NAMES:
        path = Path(record_dir) / name.format(call_id)
        if path.is_file():
            return path
    return None


def summary_public(row: dict[str, Any]) -> dict[str, Any]:
    out = {**row["detail"], "id": row["id"], "call_id": row["call_id"]}
    out.update(
        method=row["method"],
        disposition=row["disposition"],
        text=row["text"],
        tm_create=row["tm_create"],
    )
    if row["method"] == RECORD_METHOD:
        out["note"] = RECORD_NOTE
    return out


class SummaryWriter:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        drops: Counter,
        record_dir: str | None = None,
        settle_s: float = 1.0,
        llm_timeout_s: float = 20.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.store, self.bus, self.drops = store, bus, drops
        self.record_dir = record_dir
        self.settle_s = settle_s
        self.llm_timeout_s = llm_timeout_s
        self.env = os.environ if env is None else env
        self._send, self._receive = trio.open_memory_channel[str](QUEUE_SIZE)

    def observe(self, event: dict[str, Any]) -> None:
        """The event bus's observer: queue each ended call (never blocks the publisher)."""
        if event["type"] != "call_hungup":
            return
        try:
            self._send.send_nowait(event["resource_id"])
        except trio.WouldBlock:
            self.drops.inc()
            log.warning("call summary dropped: queue full", extra={"call_id": event["resource_id"]})

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(WORKERS):
                nursery.start_soon(self._work)
            task_status.started()

    async def _work(self) -> None:
        async for call_id in self._receive:
            await trio.sleep(self.settle_s)
            try:
                await self.write(call_id)
            except (DatabaseError, BridgeClosed) as exc:
                log.error("call summary not written", extra={"call_id": call_id, "error": str(exc)})

    async def gather(self, call: dict[str, Any]) -> CallRecord:
        store, call_id = self.store, call["id"]
        events = await store.find("events", customer_id=call["customer_id"], resource_id=call_id)
        has_recording = recording_path(self.record_dir, call_id) is not None
        return CallRecord(
            call=call,
            agent=await store.get("agents", call["agent_id"], None)
            or await _deleted_agent(store, call["agent_id"]),
            transcripts=await store.find("transcripts", call_id=call_id),
            events=events,
            participants=await store.find("participants", call_id=call_id),
            recording_url=f"/v1.0/calls/{call_id}/recording" if has_recording else "",
            latency=next(  # the holder measured them (control/hooks.py call_hungup)
                (e["data"].get("turn_latency") for e in events if e["type"] == "call_hungup"),
                None,
            ),
        )

    async def write(self, call_id: str) -> dict[str, Any] | None:
        """Summarise ``call_id`` once; None when it is not an ended call or is done already."""
        call = await self.store.get("calls", call_id, None)
        if call is None or call["status"] != "hangup":
            return None
        if await self.store.find("summaries", call_id=call_id):
            return None
        record = await self.gather(call)
        detail = build_document(record)
        method, text, disposition = RECORD_METHOD, record_text(detail), detail["disposition"]
        endpoint = endpoint_for(record.agent["detail"] if record.agent else {}, self.env)
        if endpoint is not None:
            try:
                text, disposition = await summarise(endpoint, detail, self.llm_timeout_s)
                method = "llm"
                detail["llm_model"] = endpoint.model
            except SummaryLlmError as exc:  # the record's own summary stands in
                detail["llm_error"] = str(exc)[:500]
                log.warning(
                    "call summary LLM failed", extra={"call_id": call_id, "error": str(exc)}
                )
        row = await self.store.insert(
            "summaries",
            {
                "customer_id": call["customer_id"],
                "call_id": call_id,
                "method": method,
                "disposition": disposition,
                "text": text,
                "detail": detail,
            },
        )
        public = summary_public(row)
        await self.bus.publish(call["customer_id"], "call_summary", call_id, _event_data(public))
        return public


async def _deleted_agent(store: Store, agent_id: str) -> dict[str, Any] | None:
    """A call's agent may have been deleted since: its soft-deleted row still names it."""
    rows = await store.db.fetch_all(
        "SELECT id, name, detail FROM {p}agents WHERE id = ?", [agent_id]
    )
    if not rows:
        return None
    row = dict(rows[0])
    row["detail"] = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
    return row


def _event_data(public: dict[str, Any]) -> dict[str, Any]:
    """The summary as an event: whole, unless its transcript would overflow the event row."""
    if len(json.dumps(public, default=str)) <= MAX_EVENT_CHARS:
        return public
    return {**public, "transcript": [], "transcript_in_event": False}


def register(api: Api, record_dir: str | None) -> None:
    store = api.services.store

    async def ended_call(ctx: Ctx, call_id: str) -> dict[str, Any]:
        call = await store.get("calls", call_id, ctx.principal.customer_id)
        if call is None:
            raise not_found("call")
        if call["status"] != "hangup":
            raise ApiError(409, "call_live", "the call has not ended yet")
        return call

    @api.route("GET", "/v1.0/calls/<call_id>/summary", summary="An ended call's summary")
    async def get_summary(ctx: Ctx, call_id: str) -> dict[str, Any]:
        await ended_call(ctx, call_id)
        rows = await store.find("summaries", call_id=call_id)
        if not rows:
            raise ApiError(
                404, "summary_pending", "no summary yet: it is written a moment after the call ends"
            )
        return summary_public(rows[0])

    @api.route("GET", "/v1.0/calls/<call_id>/recording", summary="An ended call's recording (WAV)")
    async def get_recording(ctx: Ctx, call_id: str) -> Response:
        call = await ended_call(ctx, call_id)
        path = recording_path(record_dir, call_id)
        if path is None:
            raise _no_recording_here(call, api.services.commands.me.node_id)
        return Response(
            _file_chunks(path),
            content_type="audio/wav",
            headers={"Content-Length": str(path.stat().st_size)},
        )


def _no_recording_here(call: dict[str, Any], node_id: str) -> ApiError:
    """A recording stays in the ``--record-dir`` of the node that held its call (a lost node's
    too, valid up to its last flush): another node names that node instead of a bare 404."""
    holder = call.get("node_id") or ""
    if holder and holder != node_id:
        return ApiError(
            404,
            "recording_on_other_node",
            f"a recording of this call is kept by node {holder} (in its --record-dir): "
            "ask that node",
        )
    return not_found("recording")


async def _file_chunks(path: Path, chunk_bytes: int = 64 * 1024) -> Any:
    """A recording streamed from disk, never read whole into memory (an hour is ~115 MB)."""
    async with await trio.open_file(path, "rb") as f:
        while chunk := await f.read(chunk_bytes):
            yield chunk
