"""The SIP checks of ``callbridge doctor``: is the trunk or Kamailio there, and does the registrar
take our credentials.

- A peer (``--sip-outbound``, ``--kamailio``) gets an OPTIONS: any final response means it is
  there; a closed port (ICMP port unreachable) or silence is told as such, with what to check.
- The registrar (``--sip-register``) gets a REGISTER without a Contact, which asks for the
  address-of-record's bindings and changes none (RFC 3261 10.2.3): a running ``serve``'s own
  registration is left as it is. Its challenge is answered with the configured credentials; a
  second challenge after that answer (or a 403) means the password is wrong.

The requests and the verdicts are pure (:class:`Sender`, :class:`RegisterQuery`); the Trio part
is :func:`transact`: one request on a connected UDP socket, retransmitted from 500 ms doubling
(RFC 3261 17.1.2), until its final response (matched by branch) or a deadline.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from callbridge.doctor_checks import Finding, Status
from media.config import HostPort
from sip.config import PASSWORD_ENV, SipConfig
from sip.digest import Credentials, DigestClient, DigestError, choose_challenge
from sip.headers import SipHeaderError, parse_via
from sip.invite_client import AUTH_STATUSES, MAGIC_COOKIE, challenges
from sip.message import SipParseError, SipRequest, SipResponse, parse_message
from sip.register_client import RegisterConfig

ANSWER_S = 4.0  # for a final response, retransmissions included
T1_S = 0.5
USER_AGENT = "callbridge-doctor"
REACHABLE = frozenset({405, 501})  # a peer that does not do OPTIONS still answered


def _token() -> str:
    return secrets.token_hex(8)


class SipUnreachable(Exception):
    """No SIP answer from a peer, and why, in words."""


@dataclass(frozen=True, slots=True)
class Sender:
    """Our side of one probe: the address a connected socket got."""

    host: str
    port: int

    def request(self, method: str, uri: str, to: str, cseq: int = 1, **ids: str) -> SipRequest:
        """``method`` to ``uri``; ``ids`` may keep ``call_id`` and ``tag`` across requests."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        branch = MAGIC_COOKIE + _token()
        headers = [
            ("Via", f"SIP/2.0/UDP {host}:{self.port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<{to}>;tag={ids.get('tag') or _token()}"),
            ("To", f"<{to}>"),
            ("Call-ID", f"{ids.get('call_id') or _token()}@{host}"),
            ("CSeq", f"{cseq} {method}"),
            ("User-Agent", USER_AGENT),
        ]
        return SipRequest(headers=headers, method=method, uri=uri)


def _branch(message: SipRequest | SipResponse) -> str:
    try:
        return parse_via(message.get("Via") or "").branch or ""
    except SipHeaderError:
        return ""


async def transact(
    sock: trio.socket.SocketType, request: SipRequest, timeout_s: float
) -> SipResponse:
    """``request``'s final response; :class:`SipUnreachable` for a closed port or silence."""
    data, branch, interval = request.serialize(), _branch(request), T1_S
    with trio.move_on_after(timeout_s):
        while True:
            await _send(sock, data)
            with trio.move_on_after(interval):
                while True:
                    response = _answer(await _receive(sock), branch)
                    if response is not None and response.status >= 200:
                        return response
            interval = min(interval * 2, 4.0)
    raise SipUnreachable(f"no answer within {timeout_s:g} s")


async def _send(sock: trio.socket.SocketType, data: bytes) -> None:
    try:
        await sock.send(data)
    except ConnectionRefusedError:  # a previous datagram's ICMP port unreachable
        raise SipUnreachable("nothing listens there (the port is closed)") from None


async def _receive(sock: trio.socket.SocketType) -> bytes:
    try:
        return await sock.recv(65535)
    except ConnectionRefusedError:
        raise SipUnreachable("nothing listens there (the port is closed)") from None


def _answer(data: bytes, branch: str) -> SipResponse | None:
    try:
        message = parse_message(data)
    except SipParseError:
        return None
    if isinstance(message, SipResponse) and _branch(message) == branch:
        return message
    return None


@asynccontextmanager
async def _udp_to(hop: HostPort) -> AsyncIterator[tuple[trio.socket.SocketType, Sender]]:
    """A UDP socket connected to ``hop`` (so that ICMP errors reach it) and who we are on it."""
    try:
        infos = await trio.socket.getaddrinfo(hop.host, hop.port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise SipUnreachable(f"cannot resolve {hop.host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            await sock.connect(address)
        except OSError as exc:
            raise SipUnreachable(f"cannot send there: {exc.strerror or exc}") from None
        host, port = sock.getsockname()[:2]
        yield sock, Sender(str(host), int(port))


async def sip_peer(
    check: str, hop: HostPort, flag: str, who: str, timeout_s: float = ANSWER_S
) -> Finding:
    """Does ``who`` at ``hop`` answer an OPTIONS?"""
    try:
        async with _udp_to(hop) as (sock, me):
            uri = f"sip:{hop}"
            response = await transact(sock, me.request("OPTIONS", uri, uri), timeout_s)
    except SipUnreachable as exc:
        fix = f"is {who} running at {hop}? start it, or fix {flag} (a firewall must pass UDP)"
        return Finding(check, "fail", f"no SIP answer from {hop}: {exc}", fix)
    server = response.get("Server") or response.get("User-Agent") or "a SIP peer"
    said = f"{response.status} {response.reason}"
    if response.status < 300 or response.status in REACHABLE:
        return Finding(check, "ok", f"{server} at {hop} answered OPTIONS with {said}")
    fix = f"{who} answers but refuses us: let this host's address in (its allow list, trust)"
    return Finding(check, "warn", f"{server} at {hop} answered OPTIONS with {said}", fix)


@dataclass(slots=True)
class RegisterQuery:
    """A REGISTER that asks for the bindings of ``aor``, its challenge answered at most once
    (twice for a ``stale`` nonce); :meth:`judge` says what each response means."""

    aor: str
    me: Sender
    credentials: Credentials | None
    call_id: str = field(default_factory=_token)
    tag: str = field(default_factory=_token)
    cseq: int = 0
    answered: bool = False
    digest: DigestClient | None = None

    def request(self) -> SipRequest:
        self.cseq += 1
        uri = RegisterConfig(self.aor).request_uri
        req = self.me.request(
            "REGISTER", uri, self.aor, self.cseq, call_id=self.call_id, tag=self.tag
        )
        answer = self.digest.answer("REGISTER", uri) if self.digest is not None else None
        if answer is not None:
            req.headers.append(answer)
        return req

    def judge(self, response: SipResponse, where: str) -> Finding | None:
        """The verdict, or None: ask again (a challenge was answered)."""
        user = self.credentials.username if self.credentials else ""
        fix = f"check the password in ${PASSWORD_ENV} and the user (--sip-auth-user)"
        said = f"{response.status} {response.reason}"
        if response.status in AUTH_STATUSES:
            if self.credentials is None:
                fix = f"set ${PASSWORD_ENV} (and --sip-auth-user if the user differs)"
                return _registration("fail", f"{where} asks for a password ({said}); none set", fix)
            offered = challenges(response, AUTH_STATUSES[response.status])
            try:
                if self.answered and not choose_challenge(offered).stale:
                    detail = f"{where} refused the password of {user!r} ({said} again)"
                    return _registration("fail", detail, fix)
                self.digest = self.digest or DigestClient(self.credentials, _token)
                self.digest.on_challenge(response.status, offered)
            except DigestError as exc:
                return _registration("fail", f"{where}: cannot answer its challenge: {exc}", fix)
            self.answered = True
            return None
        if response.status == 403:
            return _registration("fail", f"{where} refused {user or self.aor!r}: {said}", fix)
        if response.status >= 300:
            fix = f"check --sip-register {self.aor} (user and domain) with the registrar's admin"
            return _registration("fail", f"{where} answered {said}", fix)
        return _registration("ok", _accepted(response, where, user))


def _accepted(response: SipResponse, where: str, user: str) -> str:
    bindings = response.get_all("Contact")
    now = "no binding now (serve registers when it starts)"
    if bindings:
        now = f"{len(bindings)} binding(s) now: {', '.join(bindings)[:300]}"
    who = f"the credentials of {user!r}" if user else "us without a password"
    return f"{where} accepts {who}; {now}"


def _registration(status: Status, detail: str, fix: str = "") -> Finding:
    return Finding("sip registration", status, detail, fix)


async def sip_registration(sip: SipConfig | None, timeout_s: float = ANSWER_S) -> Finding:
    """What the registrar says to our credentials, and the bindings it holds for the AOR."""
    if sip is None or not sip.register:
        return _registration("skip", "not configured (--sip-register)")
    host, port = RegisterConfig(sip.register).registrar
    hop = HostPort(host, port)
    where = f"the registrar at {hop}"
    try:
        async with _udp_to(hop) as (sock, me):
            query = RegisterQuery(sip.register, me, sip.credentials)
            verdict = None
            while verdict is None:  # a challenge answered: ask again
                verdict = query.judge(await transact(sock, query.request(), timeout_s), where)
    except SipUnreachable as exc:
        fix = f"is the registrar (Kamailio, the trunk) running at {hop}? or fix --sip-register"
        return _registration("fail", f"no SIP answer from {hop}: {exc}", fix)
    return verdict


async def sip_checks(sip: SipConfig | None, kamailio: HostPort | None) -> list[Finding]:
    found = []
    if kamailio is not None:
        found.append(await sip_peer("kamailio", kamailio, "--kamailio", "Kamailio"))
    if sip is not None and sip.outbound is not None:
        who = "the SIP trunk or Kamailio"
        found.append(await sip_peer("sip outbound", sip.outbound, "--sip-outbound", who))
    found.append(await sip_registration(sip))
    return found
