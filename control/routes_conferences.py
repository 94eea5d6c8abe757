"""``/v1.0/conferences`` (+ participants): the rows, and their audio through
:class:`control.conferences.Conferences` (the same code the agent's ``join_conference`` runs)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import trio
from quart import Response, send_file

from control.api import Api, ApiError, Ctx, not_found
from control.conferences import ConferenceError, Conferences, public_participant
from control.routes_calls import page_args, public
from control.routes_resources import register_reads
from control.schemas import ConferenceBody, ParticipantBody, ParticipantUpdateBody
from media.mixer import MIX_RATE_HZ


def _conference_public(row: dict[str, Any]) -> dict[str, Any]:
    out = public(row)
    out["tones"] = bool(row.get("tones", 1))
    return out


def register(api: Api, conferences: Conferences | None) -> None:
    store, bus = api.services.store, api.services.bus
    register_reads(
        api, "conferences", "/v1.0/conferences", "conference", _conference_public, "agent_user"
    )

    def service() -> Conferences:
        if conferences is None:
            raise ApiError(503, "unavailable", "conference bridges are not running")
        return conferences

    async def owned(ctx: Ctx, table: str, row_id: str) -> dict[str, Any]:
        row = await store.get(table, row_id, ctx.principal.customer_id)
        if row is None:
            raise not_found(table[:-1])
        return row

    async def participant_of(ctx: Ctx, conference_id: str, participant_id: str) -> dict[str, Any]:
        row = await owned(ctx, "participants", participant_id)
        if row["conference_id"] != conference_id:
            raise not_found("participant")
        return row

    def shown(row: dict[str, Any]) -> dict[str, Any]:
        talking = conferences is not None and conferences.talking(
            row["conference_id"], row["call_id"]
        )
        return public_participant(row, talking and row["status"] == "joined")

    @api.route(
        "POST",
        "/v1.0/conferences",
        summary="Create a conference",
        body=ConferenceBody,
        role="customer_manager",
        status=201,
    )
    async def create_conference(ctx: Ctx) -> dict[str, Any]:
        cid, body = ctx.principal.customer_id, ctx.body
        row = await store.insert(
            "conferences",
            {
                "customer_id": cid,
                "name": body.name,
                "status": "progressing",
                "tones": int(body.tones),
                "max_participants": body.max_participants,
                "on_leave": body.on_leave,
                "mixer": body.mixer,
            },
        )
        await bus.publish(cid, "conference_created", row["id"], _conference_public(row))
        return _conference_public(row)

    @api.route(
        "DELETE",
        "/v1.0/conferences/<conference_id>",
        summary="End a conference (its calls go back to their agents, or hang up: on_leave)",
        role="customer_manager",
    )
    async def end_conference(ctx: Ctx, conference_id: str) -> dict[str, Any]:
        cid = ctx.principal.customer_id
        await owned(ctx, "conferences", conference_id)
        row = await store.update("conferences", conference_id, cid, {"status": "ended"})
        if row is None:
            raise not_found("conference")
        if conferences is not None:
            await conferences.end(conference_id)
        await bus.publish(cid, "conference_ended", conference_id, _conference_public(row))
        return _conference_public(row)

    @api.route(
        "GET",
        "/v1.0/conferences/<conference_id>/recording",
        summary="The conference's recorded mix (mono 16 kHz WAV; valid while it grows), served by "
        "the node holding its bridge (another node answers 404 recording_on_other_node)",
    )
    async def get_recording(ctx: Ctx, conference_id: str) -> Response:
        row = await owned(ctx, "conferences", conference_id)
        path = conferences.recording(conference_id) if conferences is not None else None
        if path is None:
            raise _no_recording_here(row, conferences)
        return await send_file(path, mimetype="audio/wav")

    @api.route(
        "GET",
        "/v1.0/conferences/<conference_id>/recordings",
        summary="List a conference's recordings: its mix, with size, duration and download url "
        "(none unless serve records: --record-dir)",
    )
    async def list_recordings(ctx: Ctx, conference_id: str) -> dict[str, Any]:
        row = await owned(ctx, "conferences", conference_id)
        path = conferences.recording(conference_id) if conferences is not None else None
        if path is None:
            if _held_elsewhere(row, conferences):
                raise _no_recording_here(row, conferences)
            return {"result": []}
        return {"result": [await trio.to_thread.run_sync(recording_listed, row, path)]}

    @api.route(
        "GET",
        "/v1.0/conferences/<conference_id>/participants",
        summary="List a conference's participants (joined and left)",
        query=("page_size", "page_token"),
    )
    async def list_participants(ctx: Ctx, conference_id: str) -> dict[str, Any]:
        await owned(ctx, "conferences", conference_id)
        size, token = page_args(ctx)
        page = await store.list(
            "participants", ctx.principal.customer_id, size, token, conference_id=conference_id
        )
        return {"result": [shown(r) for r in page.rows], "next_page_token": page.next_page_token}

    @api.route(
        "GET",
        "/v1.0/conferences/<conference_id>/participants/<participant_id>",
        summary="Get a participant",
    )
    async def get_participant(ctx: Ctx, conference_id: str, participant_id: str) -> dict[str, Any]:
        return shown(await participant_of(ctx, conference_id, participant_id))

    @api.route(
        "POST",
        "/v1.0/conferences/<conference_id>/participants",
        summary="Move a live call's audio into a conference (a call on another node than the "
        "conference's bridge is linked to it)",
        body=ParticipantBody,
        role="customer_manager",
        status=201,
    )
    async def add_participant(ctx: Ctx, conference_id: str) -> dict[str, Any]:
        conf = await owned(ctx, "conferences", conference_id)
        body: ParticipantBody = ctx.body
        try:
            row = await service().add_call(
                conf,
                body.call_id.lower(),
                mute_send=body.mute_send,
                mute_hear=body.mute_hear,
                talk_volume_pct=body.talk_volume_pct,
                listen_volume_pct=body.listen_volume_pct,
                moderator=body.moderator,
            )
        except ConferenceError as exc:
            raise _api_error(exc) from None
        return shown(row)

    @api.route(
        "PATCH",
        "/v1.0/conferences/<conference_id>/participants/<participant_id>",
        summary="Mute, unmute (send and/or hear) or set the volumes of a participant",
        body=ParticipantUpdateBody,
        role="customer_manager",
    )
    async def update_participant(
        ctx: Ctx, conference_id: str, participant_id: str
    ) -> dict[str, Any]:
        row = await participant_of(ctx, conference_id, participant_id)
        try:
            return shown(await service().update(row, **ctx.body.model_dump()))
        except ConferenceError as exc:
            raise _api_error(exc) from None

    @api.route(
        "DELETE",
        "/v1.0/conferences/<conference_id>/participants/<participant_id>",
        summary="Take a call out of a conference (kick): back to its agent, or hung up",
        query=("then",),
        role="customer_manager",
    )
    async def remove_participant(
        ctx: Ctx, conference_id: str, participant_id: str
    ) -> dict[str, Any]:
        row = await participant_of(ctx, conference_id, participant_id)
        then = ctx.args.get("then") or None
        if then not in (None, "agent", "hangup"):
            raise ApiError(
                400,
                "invalid_request",
                "then must be agent or hangup",
                [{"field": "then", "message": "one of agent, hangup"}],
            )
        return shown(await service().remove(row, then))


def recording_listed(conference: dict[str, Any], path: Path) -> dict[str, Any]:
    """One entry of a conference's recordings (blocking: reads the WAV's header). The file is
    valid while it grows: its header holds the audio written so far."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate_hz, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
    except (EOFError, wave.Error):  # created a moment ago: no header yet
        rate_hz, channels, frames = MIX_RATE_HZ, 1, 0
    conference_id = conference["id"]
    return {
        "id": conference_id,  # one mix per conference
        "conference_id": conference_id,
        "format": "wav",
        "sample_rate_hz": rate_hz,
        "channels": channels,
        "duration_ms": frames * 1000 // rate_hz,
        "size_bytes": path.stat().st_size,
        "status": "done" if conference["status"] == "ended" else "recording",
        "url": f"/v1.0/conferences/{conference_id}/recording",
    }


def _held_elsewhere(conference: dict[str, Any], conferences: Conferences | None) -> bool:
    holder = str(conference.get("node_id") or "")
    return bool(holder) and conferences is not None and holder != conferences.me.node_id


def _no_recording_here(conference: dict[str, Any], conferences: Conferences | None) -> ApiError:
    """The mix is recorded in the ``--record-dir`` of the node holding the bridge: another
    node names that node, as for a call's recording."""
    if _held_elsewhere(conference, conferences):
        return ApiError(
            404,
            "recording_on_other_node",
            f"this conference's recording is kept by node {conference['node_id']} (in its "
            "--record-dir): ask that node",
        )
    return not_found("recording")


def _api_error(exc: ConferenceError) -> ApiError:
    return ApiError(exc.status, exc.code, str(exc))
