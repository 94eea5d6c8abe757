"""``/v1.0/calls``: stored call rows, and actions on live calls through the media registry."""

from __future__ import annotations

from typing import Any

from control.api import Api, ApiError, Ctx, not_found
from control.schemas import CallCreateBody, DtmfBody, SayBody, TransferBody
from media.hooks import CallHandle, LegCannotDo
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


def register(api: Api, sip: SipOutbound | None = None) -> None:
    store, calls = api.services.store, api.services.calls

    async def live(ctx: Ctx, call_id: str) -> CallHandle:
        if await store.get("calls", call_id, ctx.principal.customer_id) is None:
            raise not_found("call")
        handle = calls.get(call_id)
        if handle is None:
            raise ApiError(409, "call_not_live", "the call has ended")
        return handle

    @api.route(
        "GET",
        "/v1.0/calls",
        summary="List calls, newest first",
        query=("page_size", "page_token", "status"),
    )
    async def list_calls(ctx: Ctx) -> dict[str, Any]:
        size, token = page_args(ctx)
        status = ctx.args.get("status", "")
        if status and status not in CALL_STATUSES:
            raise ApiError(
                400,
                "invalid_request",
                "unknown status",
                [{"field": "status", "message": f"one of {CALL_STATUSES}"}],
            )
        filters = {"status": status} if status else {}
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
        if body.leg != "sip" or sip is None:
            raise ApiError(422, "cannot_originate", f"leg {body.leg!r} cannot place outbound calls")
        customer_id = ctx.principal.customer_id
        params = {"customer_id": customer_id, "agent_id": body.agent_id.lower()}
        try:
            call_id = await sip.originate(body.source, body.destination, params)
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

    @api.route("POST", "/v1.0/calls/<call_id>/hangup", summary="Hang up a live call")
    async def hangup(ctx: Ctx, call_id: str) -> dict[str, Any]:
        (await live(ctx, call_id)).hangup("api")
        return {"id": call_id, "status": "terminating"}

    @api.route(
        "POST", "/v1.0/calls/<call_id>/dtmf", summary="Send DTMF to the caller", body=DtmfBody
    )
    async def dtmf(ctx: Ctx, call_id: str) -> dict[str, Any]:
        (await live(ctx, call_id)).send_dtmf(ctx.body.digits)
        return {"id": call_id, "status": "sent"}

    @api.route(
        "POST", "/v1.0/calls/<call_id>/say", summary="Have the agent speak text", body=SayBody
    )
    async def say(ctx: Ctx, call_id: str) -> dict[str, Any]:
        (await live(ctx, call_id)).say(ctx.body.text)
        return {"id": call_id, "status": "queued"}

    @api.route(
        "POST", "/v1.0/calls/<call_id>/transfer", summary="Transfer the caller", body=TransferBody
    )
    async def transfer(ctx: Ctx, call_id: str) -> dict[str, Any]:
        handle = await live(ctx, call_id)
        try:
            handle.transfer(ctx.body.target)
        except LegCannotDo as exc:
            raise ApiError(
                422, "leg_cannot_transfer", str(exc) or f"{handle.leg} cannot transfer"
            ) from exc
        return {"id": call_id, "status": "transferring"}
