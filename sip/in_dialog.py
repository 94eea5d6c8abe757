"""Requests inside a dialog we hold (RFC 3261 12.2.2), sans-I/O: BYE (15.1.2), re-INVITE
(14.2), INFO with DTMF (RFC 6086), NOTIFY with a REFER's progress (RFC 3515 2.4.5), OPTIONS.

A request for a dialog we do not have is 481; a CSeq that does not go up is 500 (12.2.2).
"""

from __future__ import annotations

from sip.dialog import ALLOW, NOT_ALLOWED, Address, Dialog
from sip.events import CallEnded, DtmfInfo, ReferStatus, Rejected, ReOffer, SipEvent
from sip.info import parse_dtmf_info, parse_sipfrag_status
from sip.message import SipRequest, cseq_of, is_sdp
from sip.sender import Sender
from sip.transactions import Retransmitter


class InDialog:
    def __init__(self, dialogs: dict[str, Dialog], timers: Retransmitter, send: Sender) -> None:
        self._dialogs = dialogs
        self._timers = timers
        self._send = send

    def handle(
        self, request: SipRequest, key: tuple[str, str], source: Address, now_s: float
    ) -> list[SipEvent]:
        call_id = request.get("Call-ID") or ""
        dialog = self._dialogs.get(call_id)
        if dialog is None or not dialog.matches(request):
            self._send.respond(request, 481, key, source, now_s)
            return [Rejected("no_dialog", 481)]
        cseq = cseq_of(request)[0]
        if cseq <= dialog.remote_cseq:
            self._send.respond(request, 500, key, source, now_s, [("Retry-After", "1")])
            return [Rejected("cseq_out_of_order", 500)]
        dialog.remote_cseq = cseq
        handler = {
            "BYE": self._on_bye,
            "INVITE": self._on_reinvite,
            "INFO": self._on_info,
            "NOTIFY": self._on_notify,
        }.get(request.method)
        if handler is not None:
            return handler(dialog, request, key, source, now_s)
        if request.method == "OPTIONS":
            self._send.respond(request, 200, key, source, now_s, [("Allow", ALLOW)])
            return []
        status = 405 if request.method in NOT_ALLOWED else 501
        self._send.respond(request, status, key, source, now_s, [("Allow", ALLOW)])
        return [Rejected("method_not_allowed", status)]

    def _on_bye(
        self, dialog: Dialog, request: SipRequest, key: tuple[str, str], source: Address,
        now_s: float,
    ) -> list[SipEvent]:  # fmt: skip
        self._send.respond(request, 200, key, source, now_s)
        del self._dialogs[dialog.call_id]
        self._timers.drop_call(dialog.call_id, "answer")
        return [CallEnded(dialog.call_id, "bye")]

    def _on_reinvite(
        self, dialog: Dialog, request: SipRequest, key: tuple[str, str], source: Address,
        now_s: float,
    ) -> list[SipEvent]:  # fmt: skip
        if dialog.invite is not None or dialog.state != "confirmed":
            self._send.respond(request, 491, key, source, now_s)  # 14.2: one offer at a time
            return [Rejected("request_pending", 491)]
        dialog.invite, dialog.invite_key, dialog.invite_source = request, key, source
        # Without a body (a session refresh, or a late offer) the adapter offers our current
        # SDP in the 200; the answer then comes in the ACK, and is not read (see README).
        return [ReOffer(dialog.call_id, request.body if is_sdp(request) else b"")]

    def _on_info(
        self, dialog: Dialog, request: SipRequest, key: tuple[str, str], source: Address,
        now_s: float,
    ) -> list[SipEvent]:  # fmt: skip
        content_type = (request.get("Content-Type") or "").split(";")[0].strip().lower()
        if not request.body.strip():
            self._send.respond(request, 200, key, source, now_s)  # an empty INFO: a keep-alive
            return []
        dtmf = parse_dtmf_info(content_type, request.body)
        if dtmf is None:
            self._send.respond(request, 415, key, source, now_s)
            return [Rejected("unsupported_info", 415)]
        self._send.respond(request, 200, key, source, now_s)
        return [DtmfInfo(dialog.call_id, dtmf[0], dtmf[1])]

    def _on_notify(
        self, dialog: Dialog, request: SipRequest, key: tuple[str, str], source: Address,
        now_s: float,
    ) -> list[SipEvent]:  # fmt: skip
        self._send.respond(request, 200, key, source, now_s)
        event = (request.get("Event") or "").split(";")[0].strip().lower()
        status = parse_sipfrag_status(request.body)
        if event != "refer" or status is None:
            return []
        terminated = (request.get("Subscription-State") or "").startswith("terminated")
        return [ReferStatus(dialog.call_id, status, status >= 200 or terminated)]
