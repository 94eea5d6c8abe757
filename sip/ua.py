"""A SIP user agent over UDP (RFC 3261), sans-I/O: datagrams in, events and datagrams out.

The subset a media server answering calls needs: INVITE with an SDP offer (100, 180, 200 with
the answer, the 2xx retransmitted until the ACK), ACK, BYE both ways, CANCEL (200, then 487),
re-INVITE (hold and resume), OPTIONS (keep-alive probes from Kamailio's dispatcher), INFO with
DTMF, and REFER (RFC 3515) with its NOTIFY progress for transfers. Outbound calls (INVITE with
our offer, :mod:`sip.invite_client`) and one registration (:mod:`sip.register_client`) answer
digest challenges with the configured credentials; incoming requests are never challenged:
callbridge sits behind an edge proxy that authenticates callers.

Usage, in the adapter: ``receive_datagram()`` per datagram, ``handle_timeout()`` when
``next_deadline()`` passes, and after either, send ``take_outgoing()``. The time is always passed
in (seconds on any monotonic clock); tags and branches come from ``token`` so tests can fix them.
Requests in a dialog are handled by :mod:`sip.in_dialog`, new ones by :mod:`sip.out_of_dialog`;
what goes out (cached responses, retransmitted answers and requests) by :mod:`sip.sender`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sip.dialog import Address, Dialog, build_response
from sip.digest import Credentials
from sip.events import CallConfirmed, CallEnded, OutgoingFailed, ReferStatus, Rejected, SipEvent
from sip.headers import SipHeaderError, Via, parse_name_addr, parse_via
from sip.in_dialog import InDialog
from sip.invite_client import MAGIC_COOKIE, InviteClient, Local
from sip.message import SipParseError, SipRequest, SipResponse, cseq_of, parse_message
from sip.out_of_dialog import OutOfDialog
from sip.register_client import RegisterClient, RegisterConfig
from sip.sender import Sender
from sip.transactions import T2_S, Pending, ResponseCache, Retransmitter

# The final status that tells an unanswered caller a Q.850 cause (RFC 3398's mapping, reversed):
# busy (17), no answer (19), rejected (21), congestion (34); anything else 480.
_EARLY_STATUS = {17: 486, 19: 480, 21: 603, 34: 503}


@dataclass(frozen=True, slots=True)
class UaConfig:
    host: str  # advertised in Via and Contact: where peers reach us
    port: int
    user_agent: str = "callbridge"
    invite_rate_per_s: float = 10.0  # new INVITEs per source address, sustained
    invite_burst: int = 50
    max_dialogs: int = 2_000
    retry_after_s: int = 5  # when over max_dialogs
    credentials: Credentials | None = None  # for challenges to our INVITEs and REGISTERs


class UserAgent:
    def __init__(self, config: UaConfig, token: Callable[[], str] | None = None) -> None:
        self.config = config
        self._token = token or (lambda: secrets.token_hex(8))
        self.dialogs: dict[str, Dialog] = {}
        self._cache = ResponseCache()
        self._timers = Retransmitter()
        self._outbox: list[tuple[bytes, Address]] = []
        self.contact = f"<sip:callbridge@{config.host}:{config.port}>"
        self.local = Local(config.host, config.port, self.contact, config.user_agent)
        self.client = InviteClient(self.local, self._token, self._outbox, self._timers,
                                   self._cache, self.dialogs, config.credentials)  # fmt: skip
        self.registration: RegisterClient | None = None
        self._send = Sender(self.local, self._token, self._outbox, self._cache, self._timers,
                            self.dialogs)  # fmt: skip
        self._in_dialog = InDialog(self.dialogs, self._timers, self._send)
        self._out_of_dialog = OutOfDialog(config, self._token, self.dialogs, self._send)

    # The adapter's side ---------------------------------------------------------------------

    def take_outgoing(self) -> list[tuple[bytes, Address]]:
        out = list(self._outbox)
        self._outbox.clear()  # the same list: the invite and register clients append to it
        return out

    def next_deadline(self) -> float | None:
        registration = self.registration.next_deadline() if self.registration else None
        pending = (self._timers.next_deadline(), self._cache.next_expiry(), registration)
        deadlines = [d for d in pending if d is not None]
        return min(deadlines, default=None)

    def receive_datagram(self, data: bytes, source: Address, now_s: float) -> list[SipEvent]:
        if not data.strip(b"\r\n"):
            return []  # RFC 5626 keep-alive (CRLF): nothing to answer
        try:
            message = parse_message(data)
        except SipParseError as exc:
            return [Rejected(f"malformed_{exc.reason}", 0)]
        try:
            via = parse_via(message.get_all("Via")[0])
            if isinstance(message, SipResponse):
                return self._on_response(message, via, now_s)
            return self._on_request(message, via, source, now_s)
        except SipHeaderError:
            return [Rejected("malformed_header", 0)]

    def handle_timeout(self, now_s: float) -> list[SipEvent]:
        self._cache.expire(now_s)
        resend, expired = self._timers.due(now_s)
        self._outbox.extend((p.data, p.destination) for p in resend)
        events: list[SipEvent] = []
        for _, p in expired:
            events.extend(self._given_up(p, now_s))
        if self.registration is not None:
            events.extend(self.registration.on_timer(now_s))
        return events

    def _given_up(self, p: Pending, now_s: float) -> list[SipEvent]:
        if p.kind == "answer" and 200 <= p.status < 300 and p.call_id in self.dialogs:
            self.bye(p.call_id, now_s)  # 13.3.1.4: no ACK for our 2xx ends the dialog
            return [CallEnded(p.call_id, "no_ack")]
        if p.kind == "invite":
            return self.client.on_timeout(p.call_id)
        if p.method == "REFER":
            return [ReferStatus(p.call_id, 408, True)]
        if p.method == "REGISTER" and self.registration is not None:
            return self.registration.on_transaction_timeout(now_s)
        return []

    # Commands -------------------------------------------------------------------------------

    def invite(self, target: str, from_uri: str, sdp: bytes, destination: Address,
               now_s: float, call_id: str = "") -> str:  # fmt: skip
        """Call ``target`` with our SDP offer, through ``destination``; returns the Call-ID.
        Progress comes as OutgoingProgress, then OutgoingAnswered or OutgoingFailed."""
        return self.client.invite(target, from_uri, sdp, destination, now_s, call_id)

    def register(self, cfg: RegisterConfig, now_s: float) -> None:
        """Register ``cfg.aor`` and keep it registered; changes come as RegistrationChanged."""
        self.registration = RegisterClient(
            cfg, self.local, self._token, self._outbox, self._timers, self.config.credentials
        )
        self.registration.start(now_s)

    def unregister(self, now_s: float) -> bool:
        """Remove our binding (Expires: 0); False when there is none."""
        return self.registration is not None and self.registration.stop(now_s)

    def ringing(self, call_id: str, now_s: float) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is None or dialog.invite is None:
            return
        response = build_response(
            dialog.invite, 180, to_tag=dialog.local_tag, headers=[("Contact", self.contact)]
        )
        self._send.reply(dialog.invite_key, response, dialog.invite_source, now_s)

    def answer(self, call_id: str, sdp: bytes, now_s: float) -> None:
        """200 OK with our SDP to the pending INVITE (first or re-INVITE)."""
        self._send.final(call_id, 200, now_s, sdp)

    def reject(self, call_id: str, status: int, now_s: float, retry_after_s: int = 0) -> None:
        """A failure response to the pending INVITE; a first INVITE's dialog ends with it."""
        self._send.final(call_id, status, now_s, retry_after_s=retry_after_s)

    def bye(self, call_id: str, now_s: float, cause: int = 0) -> None:
        """End the call from our side (an unanswered INVITE gets 480 instead, or the status
        for Q.850 ``cause``; one we sent, a CANCEL). ``cause``: told in the BYE's ``Reason``
        header (RFC 3326); 0: no header."""
        if self.client.cancel(call_id, now_s):
            return
        dialog = self.dialogs.get(call_id)
        if dialog is None:
            return
        if dialog.invite is not None and dialog.state == "early":
            self._send.final(call_id, _EARLY_STATUS.get(cause, 480), now_s)
            return
        if dialog.invite is not None:  # a re-INVITE still waiting for our answer
            self._send.final(call_id, 487, now_s)
        del self.dialogs[call_id]
        self._timers.drop_call(call_id, "answer")
        reason = [("Reason", f"Q.850;cause={cause}")] if cause else None
        self._send.send_request(dialog, "BYE", now_s, reason)

    def refer(self, call_id: str, target: str, now_s: float) -> bool:
        """Ask the peer to call ``target`` (RFC 3515); progress comes as :class:`ReferStatus`."""
        dialog = self.dialogs.get(call_id)
        if dialog is None or (dialog.invite is not None and dialog.state == "early"):
            return False
        extra = [("Refer-To", f"<{target}>"), ("Referred-By", f"<{dialog.local_uri}>")]
        self._send.send_request(dialog, "REFER", now_s, extra)
        return True

    # Receiving ------------------------------------------------------------------------------

    def _on_response(self, response: SipResponse, via: Via, now_s: float) -> list[SipEvent]:
        branch = via.branch or ""
        method = cseq_of(response)[1]
        if method == "INVITE" and self.client.owns(branch):
            events = self.client.on_response(response, branch, now_s)
            for event in events:  # a 2xx that crossed our CANCEL: end that dialog
                if isinstance(event, OutgoingFailed) and event.call_id in self.dialogs:
                    self.bye(event.call_id, now_s)
            return events
        key = f"{branch}|CANCEL" if method == "CANCEL" else branch
        pending = self._timers.get(key)
        if pending is None or pending.kind != "request":
            ack = self._cache.get((branch, "ACK")) if method == "INVITE" else None
            if ack is not None and response.status >= 200:
                self._outbox.append(ack)  # a retransmitted final response: ACK it again
                return []
            return [Rejected("stray_response", 0)]
        if response.status < 200:
            pending.interval_s = T2_S  # 17.1.2.2: provisional: keep resending, but at T2
            return []
        self._timers.stop(key)
        if pending.method == "REFER":
            return [ReferStatus(pending.call_id, response.status, response.status >= 300)]
        registration = self.registration
        if pending.method == "REGISTER" and registration is not None and registration.owns(branch):
            return registration.on_response(response, now_s)
        return []

    def _on_request(
        self, request: SipRequest, via: Via, source: Address, now_s: float
    ) -> list[SipEvent]:
        branch = via.branch or ""
        if not branch.startswith(MAGIC_COOKIE):  # RFC 2543 peer: key on what identifies it
            branch = "|".join((request.get("Call-ID") or "", request.get("CSeq") or "", branch))
        key = (branch, request.method)
        if request.method == "ACK":
            return self._on_ack(request)
        cached = self._cache.get(key)
        if cached is not None:
            self._outbox.append(cached)  # a retransmission: repeat our last answer
            return []
        if (request.get("Max-Forwards") or "70").strip() == "0":
            self._send.respond(request, 483, key, source, now_s)
            return [Rejected("too_many_hops", 483)]
        required = request.get_all("Require")  # 8.2.2.3: we support no extension (no 100rel)
        if required and request.method != "CANCEL":
            self._send.respond(
                request, 420, key, source, now_s, [("Unsupported", ", ".join(required))]
            )
            return [Rejected("bad_extension", 420)]
        if request.method == "CANCEL":
            return self._on_cancel(request, branch, key, source, now_s)
        if parse_name_addr(request.get("To") or "", "To").tag is not None:
            return self._in_dialog.handle(request, key, source, now_s)
        return self._out_of_dialog.handle(request, key, source, now_s)

    def _on_ack(self, request: SipRequest) -> list[SipEvent]:
        call_id = request.get("Call-ID") or ""
        pending = self._timers.stop(f"{call_id}|{cseq_of(request)[0]}|answer")
        dialog = self.dialogs.get(call_id)
        if pending is None or pending.status >= 300 or dialog is None:
            return []
        if dialog.state == "early":
            dialog.state = "confirmed"
            return [CallConfirmed(call_id)]
        return []

    def _on_cancel(
        self,
        request: SipRequest,
        branch: str,
        key: tuple[str, str],
        source: Address,
        now_s: float,
    ) -> list[SipEvent]:
        call_id = request.get("Call-ID") or ""
        dialog = self.dialogs.get(call_id)
        if dialog is None or dialog.invite is None or dialog.invite_key != (branch, "INVITE"):
            self._send.respond(request, 481, key, source, now_s)
            return [Rejected("cancel_no_transaction", 481)]
        self._send.respond(request, 200, key, source, now_s)
        if dialog.state != "early":  # a re-INVITE: 487 it, the call goes on
            self._send.final(call_id, 487, now_s)
            return []
        self._send.final(call_id, 487, now_s)
        return [CallEnded(call_id, "cancel")]
