"""What the SIP user agent sends (RFC 3261 17.2, 13.3.1.4, 12.2.1), sans-I/O.

Responses are cached under their transaction so that a retransmitted request gets the same
answer again (timer J/H); a final answer to an INVITE is retransmitted until its ACK; a request
we send in a dialog (BYE, REFER) is retransmitted until its response (timers E/F). Everything
goes onto the outbox the user agent shares with its invite and register clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sip.dialog import ALLOW, Address, Dialog, build_response
from sip.headers import SipHeaderError
from sip.invite_client import MAGIC_COOKIE, Local
from sip.message import SipRequest, SipResponse, cseq_of
from sip.transactions import ResponseCache, Retransmitter, new_pending


@dataclass(frozen=True, slots=True)
class Sender:
    """The user agent's sending half; it shares the outbox, the response cache, the timers
    and the dialog table with the user agent and its clients."""

    local: Local
    token: Callable[[], str]
    outbox: list[tuple[bytes, Address]]
    cache: ResponseCache
    timers: Retransmitter
    dialogs: dict[str, Dialog]

    def reply(
        self, key: tuple[str, str], response: SipResponse, destination: Address, now_s: float
    ) -> None:
        response.headers.append(("Server", self.local.user_agent))
        data = response.serialize()
        self.cache.put(key, data, destination, now_s)
        self.outbox.append((data, destination))

    def respond(
        self,
        request: SipRequest,
        status: int,
        key: tuple[str, str],
        source: Address,
        now_s: float,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        to_tag = self.token() if status > 100 else None
        response = build_response(request, status, to_tag=to_tag, headers=headers)
        self.reply(key, response, source, now_s)

    def final(
        self, call_id: str, status: int, now_s: float, sdp: bytes = b"", retry_after_s: int = 0
    ) -> None:
        dialog = self.dialogs.get(call_id)
        if dialog is None or dialog.invite is None:
            return
        invite, dialog.invite = dialog.invite, None
        headers = [("Contact", self.local.contact), ("Allow", ALLOW)]
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
        if retry_after_s:
            headers.append(("Retry-After", str(retry_after_s)))
        response = build_response(
            invite, status, to_tag=dialog.local_tag, headers=headers, body=sdp
        )
        self.reply(dialog.invite_key, response, dialog.invite_source, now_s)
        data = self.outbox[-1][0]
        cseq = cseq_of(invite)[0]
        pending = new_pending(
            "answer", call_id, "INVITE", data, dialog.invite_source, now_s, status
        )
        self.timers.start(f"{call_id}|{cseq}|answer", pending)
        if status >= 300 and dialog.state == "early":
            del self.dialogs[call_id]

    def send_request(
        self,
        dialog: Dialog,
        method: str,
        now_s: float,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        branch = MAGIC_COOKIE + self.token()
        via = f"SIP/2.0/UDP {self.local.host}:{self.local.port};branch={branch};rport"
        request = dialog.request(method, via, self.local.contact)
        request.headers.extend(extra or [])
        request.headers.append(("User-Agent", self.local.user_agent))
        data = request.serialize()
        try:
            destination = dialog.destination()
        except SipHeaderError:
            destination = dialog.source
        self.outbox.append((data, destination))
        pending = new_pending("request", dialog.call_id, method, data, destination, now_s)
        self.timers.start(branch, pending)
