"""``/v1.0/calls``: stored call rows, and actions on live calls wherever they live.

An action on a call this process holds runs on its media registry entry; one another node (or
worker) holds is carried there by :class:`control.call_commands.CallCommands` and runs through the
same :func:`execute`, so the answer is the one the holder would give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from control.api import Api, ApiError, Ctx, not_found
from control.call_commands import Holder, HolderUnavailable, Reply
from control.schemas import CallCreateBody, DtmfBody, HangupBody, SayBody, TransferBody
from media.hooks import CallHandle, LegCannotDo
from media.registry import CallRegistry
from media.transfer_plan import TransferOptions
from sip.ari.causes import api_hangup_reason
from sip.outbound import OriginateRefused, SipOutbound

CALL_STATUSES = ("ringing", "progressing", "hangup")


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "tm_delete"}


def page_args(ctx: Ctx) -> tuple[int, str]:
    raw = ctx.args.get("page_size") or "50"
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ApiError(
            400,
            "invalid_request",
            "page_size must be 1..100",
            [{"field": "page_size", "message": "must be an integer 1..100"}],
        )
    token = ctx.args.get("page_token", "")
    if len(token) > 26:
        raise ApiError(
            400,
            "invalid_request",
            "bad page_token",
            [{"field": "page_token", "message": "not a page token"}],
        )
    return int(raw), token


def status_filter(ctx: Ctx, allowed: tuple[str, ...]) -> dict[str, str]:
    """``?status=`` as a list filter: nothing, or one of ``allowed`` (400 otherwise)."""
    status = ctx.args.get("status", "")
    if status and status not in allowed:
        raise ApiError(
            400,
            "invalid_request",
            "unknown status",
            [{"field": "status", "message": f"one of {allowed}"}],
        )
    return {"status": status} if status else {}


def register(api: Api, sip: SipOutbound | None = None) -> None:
    store, calls, commands = api.services.store, api.services.calls, api.services.commands

    @api.route(
        "GET",
        "/v1.0/calls",
        summary="List calls, newest first",
        query=("page_size", "page_token", "status"),
    )
    async def list_calls(ctx: Ctx) -> dict[str, Any]:
        size, token = page_args(ctx)
        filters = status_filter(ctx, CALL_STATUSES)
        page = await store.list("calls", ctx.principal.customer_id, size, token, **filters)
        return {"result": [public(r) for r in page.rows], "next_page_token": page.next_page_token}

    @api.route(
        "POST",
        "/v1.0/calls",
        summary="Place an outbound call",
        body=CallCreateBody,
        role="customer_manager",
        status=201,
    )
    async def create_call(ctx: Ctx) -> dict[str, Any]:
        body: CallCreateBody = ctx.body
        if await store.get("agents", body.agent_id.lower(), ctx.principal.customer_id) is None:
            raise ApiError(
                400,
                "invalid_request",
                "unknown agent",
                [{"field": "agent_id", "message": "no such agent"}],
            )
        if sip is None or not sip.places(body.leg):
            raise ApiError(422, "cannot_originate", f"leg {body.leg!r} cannot place outbound calls")
        customer_id = ctx.principal.customer_id
        params = {"customer_id": customer_id, "agent_id": body.agent_id.lower()}
        try:
            call_id = await sip.originate(body.source, body.destination, params, body.leg)
        except OriginateRefused as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        row = await store.get("calls", call_id, customer_id)
        if row is None:  # already ended and purged? the call existed: say so
            raise ApiError(409, "call_not_live", "the call has ended")
        return public(row)

    @api.route("GET", "/v1.0/calls/<call_id>", summary="Get a call")
    async def get_call(ctx: Ctx, call_id: str) -> dict[str, Any]:
        row = await store.get("calls", call_id, ctx.principal.customer_id)
        if row is None:
            raise not_found("call")
        return public(row)

    @api.route(
        "GET",
        "/v1.0/calls/<call_id>/transcripts",
        summary="A call's final transcripts",
        query=("page_size", "page_token"),
    )
    async def transcripts(ctx: Ctx, call_id: str) -> dict[str, Any]:
        if await store.get("calls", call_id, ctx.principal.customer_id) is None:
            raise not_found("call")
        size, token = page_args(ctx)
        page = await store.list(
            "transcripts", ctx.principal.customer_id, size, token, call_id=call_id
        )
        return {"result": [public(r) for r in page.rows], "next_page_token": page.next_page_token}

    async def act(ctx: Ctx, call_id: str, op: str) -> dict[str, Any]:
        """Run ``op`` where the call lives: here, or on its holder (control/call_commands.py)."""
        row = await store.get("calls", call_id, ctx.principal.customer_id)
        if row is None:
            raise not_found("call")
        if calls.get(call_id) is not None or not row.get("node_id"):
            holder = commands.me
        elif row["status"] == "hangup":
            raise ApiError(409, "call_not_live", "the call has ended")
        else:
            holder = Holder(row["node_id"], int(row.get("worker_id") or 0))
        args = ctx.body.model_dump() if ctx.body is not None else {}
        try:
            reply = await commands.run(holder, call_id, op, args)
        except HolderUnavailable as exc:
            raise ApiError(
                503, "holder_unavailable", str(exc), headers={"Retry-After": "1"}
            ) from None
        if reply.status != 200:
            raise ApiError(reply.status, reply.body["code"], reply.body["message"])
        return reply.body

    @api.route(
        "POST",
        "/v1.0/calls/<call_id>/hangup",
        summary="Hang up a live call (optional body: the cause)",
        body=HangupBody,
        body_optional=True,
    )
    async def hangup(ctx: Ctx, call_id: str) -> dict[str, Any]:
        return await act(ctx, call_id, "hangup")

    @api.route(
        "POST", "/v1.0/calls/<call_id>/dtmf", summary="Send DTMF to the caller", body=DtmfBody
    )
    async def dtmf(ctx: Ctx, call_id: str) -> dict[str, Any]:
        return await act(ctx, call_id, "dtmf")

    @api.route(
        "POST", "/v1.0/calls/<call_id>/say", summary="Have the agent speak text", body=SayBody
    )
    async def say(ctx: Ctx, call_id: str) -> dict[str, Any]:
        return await act(ctx, call_id, "say")

    @api.route(
        "POST", "/v1.0/calls/<call_id>/transfer", summary="Transfer the caller", body=TransferBody
    )
    async def transfer(ctx: Ctx, call_id: str) -> dict[str, Any]:
        return await act(ctx, call_id, "transfer")


# -- what a command does to a live call in this process (for local and routed requests alike) --
def _hangup(handle: CallHandle, body: BaseModel | None) -> dict[str, Any]:
    cause = body.cause if isinstance(body, HangupBody) else "normal"
    handle.hangup(api_hangup_reason(cause))
    return {"id": handle.call_id, "status": "terminating"}


def _end_disabled(handle: CallHandle, _body: BaseModel | None) -> dict[str, Any]:
    handle.hangup("customer_disabled")  # control/customers.py; no route sends this op
    return {"id": handle.call_id, "status": "terminating"}


def _dtmf(handle: CallHandle, body: BaseModel | None) -> dict[str, Any]:
    assert isinstance(body, DtmfBody)
    handle.send_dtmf(body.digits)
    return {"id": handle.call_id, "status": "sent"}


def _say(handle: CallHandle, body: BaseModel | None) -> dict[str, Any]:
    assert isinstance(body, SayBody)
    handle.say(body.text, interrupt=body.interrupt)
    return {"id": handle.call_id, "status": "queued"}


def _transfer(handle: CallHandle, body: BaseModel | None) -> dict[str, Any]:
    """Started here (or refused: 422); the rest runs as the transfer_call tool's does, and its
    outcome comes as a call_transferred or call_transfer_failed event."""
    assert isinstance(body, TransferBody)
    handle.request_transfer(
        body.target, TransferOptions(body.mode, body.announcement, body.introduction)
    )
    return {"id": handle.call_id, "status": "transferring"}


_Action = Callable[[CallHandle, BaseModel | None], dict[str, Any]]
ACTIONS: dict[str, tuple[type[BaseModel] | None, _Action]] = {
    "hangup": (HangupBody, _hangup),
    "end_disabled": (None, _end_disabled),
    "dtmf": (DtmfBody, _dtmf),
    "say": (SayBody, _say),
    "transfer": (TransferBody, _transfer),
}


def execute(calls: CallRegistry, call_id: str, op: str, args: dict[str, Any]) -> Reply:
    """Run ``op`` on a call of this process. Routed commands are validated again here: the
    arguments crossed a process boundary, and a bad one must end as a 400, not a crash."""
    handle = calls.get(call_id)
    if handle is None:
        return _error(409, "call_not_live", "the call has ended")
    if op not in ACTIONS:
        return _error(400, "invalid_request", f"unknown call command {op!r}")
    schema, action = ACTIONS[op]
    try:
        body = schema.model_validate(args) if schema is not None else None
        return Reply(200, action(handle, body))
    except ValidationError:
        return _error(400, "invalid_request", f"bad arguments for {op}")
    except LegCannotDo as exc:  # e.g. an AudioSocket leg cannot transfer, an agentless call say
        return _error(422, f"leg_cannot_{op}", str(exc) or f"a {handle.leg} leg cannot {op}")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message})
