"""SIP dialogs (RFC 3261 12), as UAS or (outbound calls) UAC, and messages built from them.

A dialog remembers what every later request needs: the tags, the remote target (Contact), the
route set (Record-Route: in order on the UAS side, 12.1.1; reversed on the UAC side, 12.1.2)
and both CSeq counters.
Responses copy Via, From, To, Call-ID and CSeq from their request (8.2.6.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sip.headers import parse_name_addr, parse_uri
from sip.message import SipRequest, SipResponse

Address = tuple[str, int]
DialogState = Literal["early", "confirmed", "terminated"]
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, NOTIFY"
NOT_ALLOWED = {"REGISTER", "SUBSCRIBE", "MESSAGE", "PUBLISH", "REFER", "UPDATE", "PRACK"}
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # the INVITE's To (our From when we sent the INVITE)
    remote_uri: str  # the INVITE's From (its To when we sent it)
    remote_target: str  # the INVITE's Contact URI
    route_set: list[str]
    source: Address  # where the INVITE came from (the edge proxy, usually)
    remote_cseq: int
    local_cseq: int = 0
    state: DialogState = "early"
    invite: SipRequest | None = None  # the INVITE (first or re-) awaiting our final response
    invite_key: tuple[str, str] = ("", "")  # its server transaction
    invite_source: Address = ("", 0)

    @classmethod
    def from_invite(cls, invite: SipRequest, local_tag: str, source: Address) -> Dialog:
        contact = parse_name_addr(invite.get("Contact") or "", "Contact")
        sender = parse_name_addr(invite.get("From") or "", "From")
        return cls(
            call_id=invite.get("Call-ID") or "",
            local_tag=local_tag,
            remote_tag=sender.tag or "",
            local_uri=parse_name_addr(invite.get("To") or "", "To").uri,
            remote_uri=sender.uri,
            remote_target=contact.uri,
            route_set=invite.get_all("Record-Route"),
            source=source,
            remote_cseq=int((invite.get("CSeq") or "0").split()[0]),
            invite=invite,
            invite_source=source,
        )

    def matches(self, request: SipRequest) -> bool:
        to_tag = parse_name_addr(request.get("To") or "", "To").tag
        from_tag = parse_name_addr(request.get("From") or "", "From").tag
        return to_tag == self.local_tag and (from_tag or "") == self.remote_tag

    def destination(self) -> Address:
        """Next hop of a request we send: the first route (loose routing), else the target."""
        if self.route_set:
            return parse_uri(parse_name_addr(self.route_set[0], "Route").uri).address
        return parse_uri(self.remote_target).address

    def request(self, method: str, via: str, contact: str) -> SipRequest:
        """A new in-dialog request (12.2.1.1); the caller adds its body and extra headers."""
        self.local_cseq += 1
        request = self._request(method, via, self.local_cseq)
        request.headers.append(("Contact", contact))
        return request

    def ack(self, via: str) -> SipRequest:
        """The ACK of a 2xx to our INVITE (13.2.2.4): the INVITE's CSeq number, a new branch."""
        return self._request("ACK", via, self.local_cseq)

    def _request(self, method: str, via: str, cseq: int) -> SipRequest:
        headers = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            *(("Route", route) for route in self.route_set),
        ]
        return SipRequest(headers=headers, method=method, uri=self.remote_target)


def build_response(
    request: SipRequest,
    status: int,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    reason: str | None = None,
) -> SipResponse:
    """A response to ``request``; ``to_tag`` is added to To unless it already has one."""
    copied: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            copied.append((name, value))
        elif name == "To":
            has_tag = parse_name_addr(value, "To").tag is not None
            copied.append((name, value if has_tag or not to_tag else f"{value};tag={to_tag}"))
        elif name == "Record-Route" and request.method == "INVITE" and 100 < status < 300:
            copied.append((name, value))  # 12.1.1: the dialog's route set, back to the caller
    return SipResponse(
        headers=copied + (headers or []),
        body=body,
        status=status,
        reason=reason or REASONS.get(status, "Unknown"),
    )
