"""Registration with a registrar (RFC 3261 10.2), sans-I/O, run inside :class:`sip.ua.UserAgent`.

One binding (our Contact for one address-of-record), kept alive: REGISTER with ``Expires``,
answered challenges with digest credentials (:mod:`sip.digest`), a refresh before the granted
expiry runs out, an exponential back-off after a failure (5 s doubling to 5 min), a 423's
``Min-Expires`` honoured, and ``Expires: 0`` on :meth:`RegisterClient.stop`. The same Call-ID
and an increasing CSeq are used for every REGISTER (10.2.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sip.dialog import Address
from sip.digest import Credentials, DigestClient, DigestError
from sip.events import RegistrationChanged, SipEvent
from sip.headers import SipHeaderError, parse_name_addr, parse_uri
from sip.invite_client import AUTH_STATUSES, MAGIC_COOKIE, Local, challenges
from sip.message import SipRequest, SipResponse
from sip.transactions import Retransmitter, new_pending

RETRY_MIN_S = 5.0
RETRY_MAX_S = 300.0
RegisterState = Literal["idle", "registering", "registered", "failed", "unregistering",
                        "unregistered"]  # fmt: skip


@dataclass(frozen=True, slots=True)
class RegisterConfig:
    aor: str  # sip:user@domain[:port], the address-of-record we register
    expires_s: int = 600

    @property
    def registrar(self) -> Address:
        """Where REGISTERs go: the AOR's host and port (no DNS SRV)."""
        return parse_uri(self.aor).address

    @property
    def request_uri(self) -> str:
        uri = parse_uri(self.aor)
        return f"sip:{uri.host}:{uri.port}" if uri.port else f"sip:{uri.host}"


def refresh_after_s(granted_s: int) -> float:
    """Refresh a binding before it lapses: a fifth of its life early, at most a minute."""
    return max(1.0, granted_s - min(60.0, granted_s * 0.2))


class RegisterClient:
    def __init__(
        self,
        cfg: RegisterConfig,
        local: Local,
        token: Callable[[], str],
        outbox: list[tuple[bytes, Address]],
        timers: Retransmitter,
        credentials: Credentials | None = None,
    ) -> None:
        parse_uri(cfg.aor)  # SipHeaderError now, not at the first refresh
        self.cfg = cfg
        self.local = local
        self._token = token
        self._outbox = outbox
        self._timers = timers
        self._digest = DigestClient(credentials, token) if credentials is not None else None
        self.call_id = f"{token()}@{local.host}"
        self._tag = token()
        self._cseq = 0
        self._branch = ""
        self._expires_s = cfg.expires_s
        self.state: RegisterState = "idle"
        self.next_s: float | None = None  # a refresh or a retry is due then
        self.failures = 0

    def start(self, now_s: float) -> None:
        self.state = "registering"
        self._send(self._expires_s, now_s)

    def stop(self, now_s: float) -> bool:
        """Remove our binding (Expires: 0); False when there is none to remove."""
        self.next_s = None
        if self.state not in ("registered", "registering"):
            self.state = "unregistered"
            return False
        self.state = "unregistering"
        self._send(0, now_s)
        return True

    def owns(self, branch: str) -> bool:
        return bool(branch) and branch == self._branch

    def _send(self, expires_s: int, now_s: float) -> None:
        self._timers.stop(self._branch)
        self._cseq += 1
        self._branch = MAGIC_COOKIE + self._token()
        headers = [
            ("Via", self.local.via(self._branch)),
            ("Max-Forwards", "70"),
            ("From", f"<{self.cfg.aor}>;tag={self._tag}"),
            ("To", f"<{self.cfg.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", self.local.contact),
            ("Expires", str(expires_s)),
            ("User-Agent", self.local.user_agent),
        ]
        uri = self.cfg.request_uri
        answer = self._digest.answer("REGISTER", uri) if self._digest else None
        if answer is not None:
            headers.append(answer)
        data = SipRequest(headers=headers, method="REGISTER", uri=uri).serialize()
        destination = self.cfg.registrar
        self._outbox.append((data, destination))
        pending = new_pending("request", self.call_id, "REGISTER", data, destination, now_s)
        self._timers.start(self._branch, pending)

    def next_deadline(self) -> float | None:
        return self.next_s

    def on_timer(self, now_s: float) -> list[SipEvent]:
        """The refresh or retry time came: register again."""
        if self.next_s is None or now_s < self.next_s:
            return []
        self.next_s = None
        self.state = "registering"
        self._send(self._expires_s, now_s)
        return []

    def on_response(self, response: SipResponse, now_s: float) -> list[SipEvent]:
        status = response.status
        if status < 200:
            return []
        unregistering = self.state == "unregistering"
        if status in AUTH_STATUSES and self._digest is not None:
            try:
                self._digest.on_challenge(status, challenges(response, AUTH_STATUSES[status]))
            except DigestError as exc:
                return self._failed(status, f"digest {exc.reason}", now_s)
            self._send(0 if unregistering else self._expires_s, now_s)
            return []
        if status == 423 and not unregistering:
            return self._interval_too_brief(response, now_s)
        if status >= 300:
            return self._failed(status, response.reason, now_s)
        if self._digest is not None:
            self._digest.reset_attempts()
        if unregistering:
            self.state = "unregistered"
            return [RegistrationChanged("unregistered", status)]
        granted = self._granted_s(response)
        self.state, self.failures = "registered", 0
        self.next_s = now_s + refresh_after_s(granted)
        return [RegistrationChanged("registered", status, expires_s=granted)]

    def on_transaction_timeout(self, now_s: float) -> list[SipEvent]:
        return self._failed(408, "no response from the registrar", now_s)

    def _failed(self, status: int, detail: str, now_s: float) -> list[SipEvent]:
        if self.state == "unregistering":
            self.state = "unregistered"
            return [RegistrationChanged("unregistered", status, detail=detail)]
        self.failures += 1
        retry_s = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (self.failures - 1))
        self.state, self.next_s = "failed", now_s + retry_s
        if self._digest is not None:
            self._digest = DigestClient(self._digest.creds, self._token)  # start afresh
        return [RegistrationChanged("failed", status, retry_s=retry_s, detail=detail)]

    def _interval_too_brief(self, response: SipResponse, now_s: float) -> list[SipEvent]:
        minimum = (response.get("Min-Expires") or "").strip()
        if not minimum.isdigit() or int(minimum) <= self._expires_s or int(minimum) > 86_400:
            return self._failed(423, "bad Min-Expires", now_s)
        self._expires_s = int(minimum)
        self._send(self._expires_s, now_s)
        return []

    def _granted_s(self, response: SipResponse) -> int:
        """Our Contact's ``expires`` in the 200, else its Expires header, else what we asked."""
        ours = parse_name_addr(self.local.contact, "Contact").uri
        for value in response.get_all("Contact"):
            try:
                contact = parse_name_addr(value, "Contact")
            except SipHeaderError:
                continue
            if contact.uri == ours and contact.params.get("expires", "").isdigit():
                return int(contact.params["expires"])
        header = (response.get("Expires") or "").strip()
        granted = int(header) if header.isdigit() else self._expires_s
        return granted if 0 < granted < math.inf else self._expires_s
