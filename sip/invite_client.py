"""Outbound calls: the INVITE client transaction and the UAC side of its dialog (RFC 3261 13.2,
17.1.1, 9.1), sans-I/O, run inside :class:`sip.ua.UserAgent`.

An INVITE with our SDP offer is resent until a provisional response (timer A) and given up after
64*T1 without any (timer B: 408). Provisionals report progress; a 2xx creates the dialog and is
ACKed (a new transaction, to the remote target through the route set); a final error is ACKed
on the INVITE's own branch. A 401/407 is answered once per nonce with digest credentials
(:mod:`sip.digest`): the INVITE is sent again with the next CSeq and a new branch. A CANCEL
waits for a provisional response (9.1); a 2xx that crosses it is ACKed and ended with BYE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sip.dialog import ALLOW, Address, Dialog
from sip.digest import Credentials, DigestClient, DigestError
from sip.events import OutgoingAnswered, OutgoingFailed, OutgoingProgress, SipEvent
from sip.headers import SipHeaderError, parse_name_addr
from sip.message import SipRequest, SipResponse
from sip.transactions import TIMEOUT_S, ResponseCache, Retransmitter, new_pending

MAGIC_COOKIE = "z9hG4bK"
RING_LIMIT_S = 180.0  # timer C: a proceeding INVITE with no final response is given up
AUTH_STATUSES = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}


@dataclass(frozen=True, slots=True)
class Local:
    """Who we are on the wire: Via sent-by, Contact, User-Agent."""

    host: str
    port: int
    contact: str
    user_agent: str

    def via(self, branch: str) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.port};branch={branch};rport"


@dataclass(slots=True)
class Outgoing:
    call_id: str
    local_tag: str
    from_uri: str
    target: str  # Request-URI and To
    sdp: bytes
    destination: Address  # the next hop (an outbound proxy or the target itself)
    digest: DigestClient | None
    cseq: int = 1
    branch: str = ""
    request: SipRequest | None = None  # the INVITE now in flight
    provisional: bool = False
    cancel_wanted: bool = False
    cancel_sent: bool = False


def challenges(response: SipResponse, header: str) -> list[str]:
    """Every value of a challenge header; not comma-split, since a challenge holds commas."""
    return [value for name, value in response.headers if name.lower() == header.lower()]


class InviteClient:
    def __init__(
        self,
        local: Local,
        token: Callable[[], str],
        outbox: list[tuple[bytes, Address]],
        timers: Retransmitter,
        cache: ResponseCache,
        dialogs: dict[str, Dialog],
        credentials: Credentials | None = None,
    ) -> None:
        self.local = local
        self._token = token
        self._outbox = outbox
        self._timers = timers
        self._cache = cache
        self._dialogs = dialogs
        self._credentials = credentials
        self.calls: dict[str, Outgoing] = {}
        self._branches: dict[str, str] = {}  # branch of an INVITE in flight -> Call-ID

    def invite(self, target: str, from_uri: str, sdp: bytes, destination: Address,
               now_s: float, call_id: str = "") -> str:  # fmt: skip
        """Send an INVITE with ``sdp`` to ``target`` via ``destination``; returns its Call-ID."""
        call_id = call_id or f"{self._token()}@{self.local.host}"
        creds = self._credentials
        digest = DigestClient(creds, self._token) if creds is not None else None
        out = Outgoing(call_id, self._token(), from_uri, target, sdp, destination, digest)
        self.calls[call_id] = out
        self._send_invite(out, now_s)
        return call_id

    def owns(self, branch: str) -> bool:
        return branch in self._branches

    def cancel(self, call_id: str, now_s: float) -> bool:
        """CANCEL an unanswered INVITE (once a provisional came: 9.1); False if not ours."""
        out = self.calls.get(call_id)
        if out is None:
            return False
        out.cancel_wanted = True
        pending = self._timers.get(out.branch)
        if pending is not None:  # wait at most 64*T1 more for the final response
            pending.give_up_s = min(pending.give_up_s, now_s + TIMEOUT_S)
        if out.provisional:
            self._send_cancel(out, now_s)
        return True

    # Sending --------------------------------------------------------------------------------

    def _send_invite(self, out: Outgoing, now_s: float) -> None:
        self._branches.pop(out.branch, None)
        out.branch = MAGIC_COOKIE + self._token()
        headers = [
            ("Via", self.local.via(out.branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{out.from_uri}>;tag={out.local_tag}"),
            ("To", f"<{out.target}>"),
            ("Call-ID", out.call_id),
            ("CSeq", f"{out.cseq} INVITE"),
            ("Contact", self.local.contact),
            ("Allow", ALLOW),
            ("Content-Type", "application/sdp"),
            ("User-Agent", self.local.user_agent),
        ]
        answer = out.digest.answer("INVITE", out.target) if out.digest else None
        if answer is not None:
            headers.append(answer)
        out.request = SipRequest(headers=headers, body=out.sdp, method="INVITE", uri=out.target)
        data = out.request.serialize()
        self._branches[out.branch] = out.call_id
        self._outbox.append((data, out.destination))
        pending = new_pending("invite", out.call_id, "INVITE", data, out.destination, now_s)
        self._timers.start(out.branch, pending)

    def _copy(self, out: Outgoing, method: str, to: str) -> SipRequest:
        """CANCEL or the ACK of an error: the INVITE's Via, From, Call-ID, CSeq number."""
        assert out.request is not None
        request = out.request
        headers = [
            ("Via", request.get("Via") or ""),
            ("Max-Forwards", "70"),
            ("From", request.get("From") or ""),
            ("To", to),
            ("Call-ID", out.call_id),
            ("CSeq", f"{out.cseq} {method}"),
            ("User-Agent", self.local.user_agent),
        ]
        return SipRequest(headers=headers, method=method, uri=request.uri)

    def _send_cancel(self, out: Outgoing, now_s: float) -> None:
        if out.cancel_sent or out.request is None:
            return
        out.cancel_sent = True
        data = self._copy(out, "CANCEL", out.request.get("To") or "").serialize()
        self._outbox.append((data, out.destination))
        pending = new_pending("request", out.call_id, "CANCEL", data, out.destination, now_s)
        self._timers.start(f"{out.branch}|CANCEL", pending)

    def _ack(self, key: str, data: bytes, destination: Address, now_s: float) -> None:
        """Send an ACK and keep it for 64*T1, for retransmissions of the final response."""
        self._cache.put((key, "ACK"), data, destination, now_s)
        self._outbox.append((data, destination))

    # Receiving ------------------------------------------------------------------------------

    def on_response(self, response: SipResponse, branch: str, now_s: float) -> list[SipEvent]:
        out = self.calls.get(self._branches.get(branch, ""))
        if out is None:
            return []
        if response.status < 200:
            return self._on_provisional(out, response, now_s)
        self._timers.stop(branch)
        del self._branches[branch]
        if response.status < 300:
            return self._on_answer(out, response, now_s)
        to = response.get("To") or ""
        self._ack(branch, self._copy(out, "ACK", to).serialize(), out.destination, now_s)
        if response.status in AUTH_STATUSES and not out.cancel_wanted:
            retried = self._retry_with_credentials(out, response, now_s)
            if retried is None:
                return []
            return self._failed(out, response.status, f"{response.reason}: {retried}")
        status = 487 if out.cancel_wanted else response.status
        return self._failed(out, status, response.reason)

    def _on_provisional(self, out: Outgoing, response: SipResponse,
                        now_s: float) -> list[SipEvent]:  # fmt: skip
        pending = self._timers.get(out.branch)
        if pending is not None:  # 17.1.1.2: no more retransmissions; timer C instead
            pending.next_s = math.inf
            give_up_s = now_s + (TIMEOUT_S if out.cancel_wanted else RING_LIMIT_S)
            pending.give_up_s = max(pending.give_up_s, give_up_s)
        out.provisional = True
        if out.cancel_wanted:
            self._send_cancel(out, now_s)
            return []
        return [OutgoingProgress(out.call_id, response.status)] if response.status > 100 else []

    def _retry_with_credentials(self, out: Outgoing, response: SipResponse,
                                now_s: float) -> str | None:  # fmt: skip
        """Send the INVITE again with credentials; None if sent, else why not."""
        if out.digest is None:
            return "no credentials configured"
        try:
            header = AUTH_STATUSES[response.status]
            out.digest.on_challenge(response.status, challenges(response, header))
        except DigestError as exc:
            return f"digest {exc.reason}"
        out.cseq += 1
        out.provisional = False
        self._send_invite(out, now_s)
        return None

    def _on_answer(self, out: Outgoing, response: SipResponse, now_s: float) -> list[SipEvent]:
        del self.calls[out.call_id]
        try:
            dialog = self._dialog(out, response)
        except SipHeaderError:
            return [OutgoingFailed(out.call_id, 502, "malformed 2xx")]
        ack = dialog.ack(self.local.via(MAGIC_COOKIE + self._token()))
        try:
            destination = dialog.destination()
        except SipHeaderError:
            destination = out.destination
        self._ack(out.branch, ack.serialize(), destination, now_s)
        self._dialogs[out.call_id] = dialog
        if out.cancel_wanted:  # the 2xx crossed our CANCEL: the UA sends BYE
            return [OutgoingFailed(out.call_id, 487, "cancelled")]
        return [OutgoingAnswered(out.call_id, response.body)]

    def _dialog(self, out: Outgoing, response: SipResponse) -> Dialog:
        """The UAC's dialog (12.1.2): route set is the Record-Route in reverse."""
        contact = response.get("Contact")
        return Dialog(
            call_id=out.call_id,
            local_tag=out.local_tag,
            remote_tag=parse_name_addr(response.get("To") or "", "To").tag or "",
            local_uri=out.from_uri,
            remote_uri=out.target,
            remote_target=parse_name_addr(contact, "Contact").uri if contact else out.target,
            route_set=list(reversed(response.get_all("Record-Route"))),
            source=out.destination,
            remote_cseq=-1,
            local_cseq=out.cseq,
            state="confirmed",
        )

    def _failed(self, out: Outgoing, status: int, reason: str) -> list[SipEvent]:
        self.calls.pop(out.call_id, None)
        self._timers.stop(f"{out.branch}|CANCEL")
        return [OutgoingFailed(out.call_id, status, reason)]

    def on_timeout(self, call_id: str) -> list[SipEvent]:
        """Timer B or C fired: no final response to our INVITE."""
        out = self.calls.get(call_id)
        if out is None:
            return []
        self._branches.pop(out.branch, None)
        if out.cancel_wanted:
            return self._failed(out, 487, "cancelled, no final response")
        return self._failed(out, 408, "Request Timeout")
