"""``POST /v1.0/rtp-offers``: attach an RTP leg to a new call by SDP offer/answer, the way an
operator's SBC drives rtpengine: our SDP answer and the call's id come back; the caller's RTP then
flows to the port in the answer, and the call is a call like any other (``/v1.0/calls/{id}``,
events, hangup)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from control.api import Api, ApiError, Ctx
from control.schemas import Body, UUIDText
from sip.rtp_calls import OfferRefused, RtpCalls

# what a refused offer answers: the SIP status it would get, as HTTP
_REFUSALS = {
    400: (400, "bad_sdp"),
    488: (422, "sdp_not_acceptable"),
    403: (422, "call_refused"),
    503: (503, "unavailable"),
}


class RtpOfferBody(Body):
    sdp: str = Field(min_length=10, max_length=16_384)
    agent_id: UUIDText | None = None


def register(api: Api, rtp: RtpCalls) -> None:
    @api.route(
        "POST",
        "/v1.0/rtp-offers",
        summary="Attach an RTP leg by SDP offer: returns our SDP answer and the new call's id",
        role="customer_manager",
        body=RtpOfferBody,
        status=201,
    )
    async def create_rtp_offer(ctx: Ctx) -> dict[str, Any]:
        body: RtpOfferBody = ctx.body
        params = {"customer_id": ctx.principal.customer_id}
        if body.agent_id:
            params["agent_id"] = body.agent_id
        try:
            call_id, answer = await rtp.offer(body.sdp.encode(), params)
        except OfferRefused as exc:
            status, code = _REFUSALS.get(exc.status, (503, "unavailable"))
            raise ApiError(status, code, str(exc)) from None
        return {"call_id": call_id, "sdp": answer.decode()}
