"""``serve --workers N --ari``: the ARI app runs in worker 0 only, and what needs it reaches it.

Asterisk sends a Stasis app's events to one subscriber, so one process holds the app: worker
:data:`ARI_WORKER`. Three things must reach that process, and each is routed to it:

- each call's ExternalMedia connection: with ``--ari-media audiosocket`` the parent binds one
  more AudioSocket listener, handed to worker 0 only (:func:`ari_media_address`), and the app
  tells Asterisk that address; with ``--ari-media websocket`` Asterisk's ``websocket_client.conf``
  names worker 0's own HTTP listener (``--link-port``'s port), not the shared ``--http`` one;
- ``POST /v1.0/calls`` with leg ``asterisk``, taken by another worker: that worker's
  :class:`AriAtWorkerZero` is its originator for the leg and carries the request to worker 0;
- joins to and the end of an Asterisk-mixed conference: the same object is the other workers'
  :attr:`control.conferences.Conferences.asterisk`; and its ``check_ready`` is their
  ``/ready``'s ``asterisk`` check.

The requests travel as the call commands between workers do (:mod:`control.call_commands`,
Redis pub/sub), on inboxes of their own (:func:`ari_commands`), each answered by worker 0's
:func:`ari_executor` with the answer the app gives there (201's call id, 422, 503...). A worker
0 that is down or restarting answers nothing: the request gets 503 (try again). Its calls end
with it (``node_lost``), and once restarted its app reconnects and adopts the callers still in
the Stasis app (:mod:`sip.ari.reconcile`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from control.call_commands import CallCommands, Executor, Holder, HolderUnavailable, Reply
from control.conferences import ConferenceError
from media.config import HostPort
from sip.ari.app import AriApp
from sip.ari.client import AriUnavailable
from sip.ari.config import AriConfig
from sip.outbound import OriginateRefused

log = logging.getLogger(__name__)

ARI_WORKER = 0  # the worker that runs the ARI app
ARI_COMMANDS_AT_ONCE = 64  # an originate waits for the callee's answer: many run at once
ANSWER_MARGIN_S = 5.0  # beyond the app's own deadlines, for the trip between workers
READY_WAIT_S = 1.5  # within /ready's own 2 s per check
NO_APP = Reply(503, {"code": "holder_unavailable", "message": "this worker runs no ARI app"})


def ari_media_address(audiosocket: HostPort, media_host: HostPort) -> HostPort:
    """Where the parent binds worker 0's listener for ExternalMedia: on ``--audiosocket``'s
    host, at ``--ari-media-host``'s port, or a port the kernel picks where that one is
    ``--audiosocket``'s own (the shared listener, which a sibling may accept on)."""
    port = 0 if media_host.port == audiosocket.port else media_host.port
    return HostPort(audiosocket.host, port)


def ari_commands(base: CallCommands, db_prefix: str, execute: Executor) -> CallCommands:
    """The ARI requests' own inboxes, beside the call commands of ``base`` (its transport)."""
    return base.alongside(f"callbridge:{db_prefix}ari-", execute, ARI_COMMANDS_AT_ONCE)


def ari_executor(app: AriApp) -> Executor:
    """What worker 0 does with a request another worker carried to it."""

    async def execute(target_id: str, op: str, args: dict[str, Any]) -> Reply:
        try:
            if op == "originate":
                params = {str(k): str(v) for k, v in dict(args["params"]).items()}
                source, destination = str(args["source"]), str(args["destination"])
                call_id = await app.outbound.originate(source, destination, params)
                return Reply(200, {"call_id": call_id})
            if op == "conference_join":
                bridge_id = await app.conferences.join(target_id, str(args["conference_id"]))
                return Reply(200, {"bridge_id": bridge_id})
            if op == "conference_end":
                await app.conferences.end(target_id)
                return Reply(200, {})
            if op == "ready":
                await app.client.check_ready()
                return Reply(200, {})
        except AriUnavailable as exc:  # (ready: the events socket is down)
            return Reply(503, {"code": "unavailable", "message": str(exc)})
        except OriginateRefused as exc:
            return Reply(exc.status, {"code": exc.code, "message": str(exc)})
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"code": "invalid_request", "message": f"bad arguments: {exc}"})
        except Exception as exc:  # the join's refusal (not an Asterisk call, Asterisk said no)
            return Reply(409, {"code": "cannot_join", "message": str(exc)})
        return Reply(400, {"code": "invalid_request", "message": f"unknown ARI request {op!r}"})

    return execute


async def no_app(_target_id: str, _op: str, _args: dict[str, Any]) -> Reply:
    """A worker without the app answers any request that reaches it so (none should)."""
    return NO_APP


class AriAtWorkerZero:
    """On a worker without the ARI app: the leg ``asterisk``'s originator
    (:class:`sip.outbound.Originator`) and the Asterisk mixer of conferences
    (:class:`control.conferences.AsteriskMixing`), each request carried to worker 0."""

    def __init__(self, commands: CallCommands, cfg: AriConfig) -> None:
        self.commands = commands
        self.holder = Holder(commands.me.node_id, ARI_WORKER)
        self.originate_s = cfg.ring_timeout_s + cfg.setup_timeout_s + ANSWER_MARGIN_S
        self.request_s = 3 * cfg.request_timeout_s + ANSWER_MARGIN_S

    async def _ask(self, target_id: str, op: str, args: dict[str, Any], wait_s: float) -> Reply:
        try:
            return await self.commands.run(self.holder, target_id, op, args, wait_s)
        except HolderUnavailable as exc:
            log.warning("ari request not carried to worker 0", extra={"op": op, "error": str(exc)})
            return Reply(503, {"code": "holder_unavailable", "message": f"the ARI app: {exc}"})

    async def check_ready(self) -> None:
        """``/ready``'s ``asterisk`` check, as worker 0's app answers it (raises when not)."""
        reply = await self._ask("", "ready", {}, READY_WAIT_S)
        if reply.status != 200:
            raise AriUnavailable(str(reply.body.get("message")))

    async def originate(self, source: str, destination: str, params: Mapping[str, str]) -> str:
        args = {"source": source, "destination": destination, "params": dict(params)}
        reply = await self._ask("", "originate", args, self.originate_s)
        log.info("ari originate carried to worker 0", extra={"status": reply.status})
        if reply.status != 200:
            body = reply.body
            raise OriginateRefused(reply.status, str(body["code"]), str(body["message"]))
        return str(reply.body["call_id"])

    async def join(self, call_id: str, conference_id: str) -> str:
        args = {"conference_id": conference_id}
        reply = await self._ask(call_id, "conference_join", args, self.request_s)
        if reply.status != 200:
            raise ConferenceError(reply.status, str(reply.body["code"]), str(reply.body["message"]))
        return str(reply.body["bridge_id"])

    async def end(self, conference_id: str) -> None:
        """As the app's own end, a failure is logged, not raised: the conference's row has
        ended already (its members then leave by hanging up)."""
        reply = await self._ask(conference_id, "conference_end", {}, self.request_s)
        if reply.status != 200:
            log.error(
                "asterisk conference end not carried out",
                extra={"id": conference_id, "error": str(reply.body.get("message"))},
            )
