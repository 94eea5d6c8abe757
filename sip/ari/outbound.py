"""Calls we place through Asterisk (``POST /v1.0/calls`` with ``leg: asterisk``).

Asterisk dials ``--ari-outbound-dial`` (``{destination}`` replaced) with channel id
``cbo-<uuid>`` into our Stasis app, the agent and customer passed as Stasis arguments. The
callee's answer is its StasisStart, and from there it is an ordinary ARI call (bridge,
ExternalMedia, the agent) whose callbridge call id we chose up front. :meth:`originate` returns
that id once the call runs (the call row exists), or raises :class:`OriginateRefused` when the
callee does not answer or Asterisk refuses: the request waits for the answer, at most the ring
timeout.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from sip.ari import requests as rq
from sip.ari.client import AriUnavailable
from sip.outbound import OriginateRefused

if TYPE_CHECKING:
    from sip.ari.app import AriApp

OUTBOUND_PREFIX = "cbo-"
_ARG_VALUE = re.compile(r"^[A-Za-z0-9_.+@:-]{0,128}$")  # no comma: Stasis splits on it


@dataclass(eq=False)
class Placing:
    call_id: str
    source: str
    destination: str
    done: trio.Event = field(default_factory=trio.Event)
    failure: str = ""


class AriOutbound:
    def __init__(self, app: AriApp) -> None:
        self.app = app
        self.placing: dict[str, Placing] = {}  # our channel id -> the call being placed

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        """Implements :class:`sip.outbound.Originator` for the Asterisk leg."""
        app = self.app
        if not app.cfg.outbound_dial:
            detail = "the asterisk leg cannot place calls: set --ari-outbound-dial"
            raise OriginateRefused(422, "cannot_originate", detail)
        if not app.client.connected:
            raise OriginateRefused(503, "unavailable", "Asterisk is not connected")
        args = {**params, "direction": "outgoing"}
        if not all(_ARG_VALUE.match(str(v)) for v in args.values()):
            raise OriginateRefused(400, "invalid_request", "parameters unfit for Stasis arguments")
        channel_id = OUTBOUND_PREFIX + str(uuid.uuid4())
        placing = Placing(str(uuid.uuid4()), source, destination)
        self.placing[channel_id] = placing
        try:
            await app.client.call(
                rq.originate(
                    app.cfg.outbound_dial.replace("{destination}", destination),
                    app.cfg.app,
                    channel_id,
                    app_args=",".join(f"{k}={v}" for k, v in args.items()),
                    caller_id=source,
                    timeout_s=app.cfg.ring_timeout_s,
                )
            )
            with trio.move_on_after(app.cfg.ring_timeout_s + app.cfg.setup_timeout_s):
                await placing.done.wait()
        except rq.AriRequestError as exc:
            raise OriginateRefused(422, "call_refused", f"Asterisk: {exc.message}") from None
        except AriUnavailable as exc:
            raise OriginateRefused(503, "unavailable", str(exc)) from None
        finally:
            del self.placing[channel_id]
        if not placing.done.is_set():
            app.request("hangup unanswered", rq.hangup(channel_id))
            raise OriginateRefused(504, "no_answer", f"no answer in {app.cfg.ring_timeout_s} s")
        if placing.failure:
            raise OriginateRefused(422, "call_refused", placing.failure)
        return placing.call_id

    def placed(self, channel_id: str) -> Placing | None:
        """The call we are placing on this channel (its id and numbers are ours to name)."""
        return self.placing.get(channel_id)

    def running(self, channel_id: str) -> None:
        placing = self.placing.get(channel_id)
        if placing is not None:
            placing.done.set()

    def failed(self, channel_id: str, why: str) -> None:
        placing = self.placing.get(channel_id)
        if placing is not None and not placing.done.is_set():
            placing.failure = why
            placing.done.set()
