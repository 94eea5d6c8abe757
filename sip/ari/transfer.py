"""Transfers of Asterisk calls, done by Asterisk so that media stops passing through us.

Two ways, by configuration:

- ``--ari-transfer-dial DIAL``: originate ``DIAL`` (``{target}`` replaced) into our app as
  ``cbt-<uuid>``; when it answers (its StasisStart), add it to the caller's bridge. Blind (the
  default): the agent's side ends once its queued audio has played, and the ExternalMedia channel
  leaves the bridge; caller and target stay bridged by Asterisk. Warm: the agent stays in the
  bridge to introduce the caller and leaves when it ends the call.
- otherwise ``continue``: the caller leaves Stasis for ``TARGET@--ari-transfer-context`` (the
  dialplan dials whatever it likes); our bridge and ExternalMedia channel are dropped.

A transfer that fails (the target is busy, does not answer, Asterisk refuses) leaves the call
with the agent, and the agent's ``transfer_call`` gets the failure and its reason as its result.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import trio

from media.bridge_transfer import TransferOutcome
from sip.ari import requests as rq
from sip.ari.causes import cause_word
from sip.ari.client import AriUnavailable
from sip.ari.events import AriEvent, ChannelDestroyed, StasisEnd
from sip.ari.reconcile import TARGET_PREFIX
from sip.ari.state import AriCall

if TYPE_CHECKING:
    from sip.ari.app import AriApp

log = logging.getLogger(__name__)


class Transfers:
    def __init__(self, app: AriApp) -> None:
        self.app = app

    async def transfer(self, call: AriCall, target: str) -> TransferOutcome:
        """Never raises: the call's own task runs this, and a failed transfer must not end
        the call. The outcome reaches the agent as its tool's result (the control plane
        publishes ``call_transferred`` / ``call_transfer_failed`` from it)."""
        if call.gone or call.handed_off or call.target_id:
            return TransferOutcome("failed", "the call is already being transferred or ended")
        try:
            if self.app.cfg.transfer_dial:
                ok = await self._dial(call, target)
            else:
                ok = await self._continue(call, target)
        except (rq.AriRequestError, AriUnavailable) as exc:
            ok, call.target_failure = False, str(exc)
        if not ok:
            self._drop_target(call)  # the agent may try again
            log.warning(
                "ari transfer failed",
                extra={"call_id": call.call_id, "target": target, "error": call.target_failure},
            )
            return TransferOutcome("failed", call.target_failure)
        log.info("ari transfer", extra={"call_id": call.call_id, "target": target})
        if self.app.cfg.transfer_mode == "blind" or not self.app.cfg.transfer_dial:
            call.media_left = True
            self.app.request(
                "agent leaves bridge", rq.remove_channel(call.bridge_id, call.media_id)
            )
            self.app.end_call(call, f"transferred to {target}")
        # continue: the dialplan carries the caller on, whether the target answers is its own
        return TransferOutcome("answered" if self.app.cfg.transfer_dial else "transferring")

    async def _continue(self, call: AriCall, target: str) -> bool:
        call.handed_off = True  # the StasisEnd that follows is the transfer, not a hangup
        try:
            await self.app.client.call(
                rq.continue_in_dialplan(call.caller.id, self.app.cfg.transfer_context, target)
            )
        except BaseException:
            call.handed_off = False
            raise
        return True

    async def _dial(self, call: AriCall, target: str) -> bool:
        cfg = self.app.cfg
        target_id = TARGET_PREFIX + str(uuid.uuid4())
        self.app.calls.add_target(call, target_id)
        call.target_failure = ""
        endpoint = cfg.transfer_dial.replace("{target}", target)
        await self.app.client.call(
            rq.originate(
                endpoint,
                cfg.app,
                target_id,
                app_args="transfer",
                caller_id=call.caller.caller_number,
                timeout_s=cfg.ring_timeout_s,
            )
        )
        with trio.move_on_after(cfg.ring_timeout_s + 5):
            await call.target_done.wait()
        if not call.target_answered:
            call.target_failure = call.target_failure or "no answer"
            return False
        if call.gone:
            call.target_failure = "the caller hung up before the target answered"
            return False
        await self.app.client.call(rq.add_channels(call.bridge_id, target_id))
        call.handed_off = True
        return True

    def _drop_target(self, call: AriCall) -> None:
        if call.target_id:
            self.app.request("hangup target", rq.hangup(call.target_id))
            self.app.calls.forget_target(call)
        call.target_answered = False
        call.target_done = trio.Event()

    def on_target_event(self, call: AriCall, event: AriEvent) -> None:
        """The target's channel ended: before it answered, the transfer failed; after the
        hand-off, the caller is hung up too (nobody is left to talk to)."""
        if not isinstance(event, ChannelDestroyed | StasisEnd):
            return
        if not call.target_answered:
            if isinstance(event, ChannelDestroyed):
                why = event.cause_txt or cause_word(event.cause)
                call.target_failure = f"the target hung up before answering ({why})"
                call.target_done.set()
            return
        if call.handed_off and not call.gone:
            call.gone = True
            self.app.request("hangup caller after target", rq.hangup(call.caller.id))
            if call.leg is not None and call.running:
                call.leg.end("the transfer target hung up")
            else:
                self.app.calls.forget(call)
                self.app.request("destroy bridge", rq.destroy_bridge(call.bridge_id))
