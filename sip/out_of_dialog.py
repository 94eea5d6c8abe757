"""Requests outside any dialog (RFC 3261 8.2, 11, 13.3), sans-I/O: a new INVITE (rate limited
per source, bounded by the dialog table), OPTIONS probes, and the methods we refuse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sip.dialog import ALLOW, NOT_ALLOWED, Address, Dialog, build_response
from sip.events import IncomingCall, Rejected, SipEvent
from sip.message import SipRequest, is_sdp
from sip.ratelimit import RateLimiter
from sip.sender import Sender

if TYPE_CHECKING:
    from sip.ua import UaConfig


class OutOfDialog:
    def __init__(
        self,
        config: UaConfig,
        token: Callable[[], str],
        dialogs: dict[str, Dialog],
        send: Sender,
    ) -> None:
        self.config = config
        self._token = token
        self._dialogs = dialogs
        self._send = send
        self._limiter = RateLimiter(config.invite_rate_per_s, config.invite_burst)

    def handle(
        self, request: SipRequest, key: tuple[str, str], source: Address, now_s: float
    ) -> list[SipEvent]:
        method = request.method
        if method == "INVITE":
            return self._new_invite(request, key, source, now_s)
        if method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", "application/sdp")]
            self._send.respond(request, 200, key, source, now_s, headers)
            return []
        if method in NOT_ALLOWED:
            self._send.respond(request, 405, key, source, now_s, [("Allow", ALLOW)])
            return [Rejected("method_not_allowed", 405)]
        if method in ("BYE", "INFO", "NOTIFY"):
            self._send.respond(request, 481, key, source, now_s)
            return [Rejected("out_of_dialog", 481)]
        self._send.respond(request, 501, key, source, now_s, [("Allow", ALLOW)])
        return [Rejected("not_implemented", 501)]

    def _new_invite(
        self, request: SipRequest, key: tuple[str, str], source: Address, now_s: float
    ) -> list[SipEvent]:
        call_id = request.get("Call-ID") or ""
        cfg = self.config
        if not self._limiter.allow(source[0], now_s):
            retry = [("Retry-After", str(self._limiter.retry_after_s(source[0])))]
            self._send.respond(request, 503, key, source, now_s, retry)
            return [Rejected("invite_rate_limited", 503)]
        if len(self._dialogs) >= cfg.max_dialogs:
            retry = [("Retry-After", str(cfg.retry_after_s))]
            self._send.respond(request, 503, key, source, now_s, retry)
            return [Rejected("over_capacity", 503)]
        if call_id in self._dialogs:
            self._send.respond(request, 482, key, source, now_s)
            return [Rejected("loop", 482)]
        if request.get("Contact") is None:
            self._send.respond(request, 400, key, source, now_s)
            return [Rejected("missing_contact", 400)]
        if not is_sdp(request):
            self._send.respond(request, 488, key, source, now_s)  # no late offer (SDP in the ACK)
            return [Rejected("no_sdp_offer", 488)]
        dialog = Dialog.from_invite(request, self._token(), source)
        dialog.invite_key = key
        self._dialogs[call_id] = dialog
        self._send.reply(key, build_response(request, 100), source, now_s)
        return [IncomingCall(call_id, source, dialog.remote_uri, request.uri, request.body)]
