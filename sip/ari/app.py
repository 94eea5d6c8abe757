"""callbridge as an ARI Stasis application: a caller that enters ``Stasis(NAME[,agent=ID])``
becomes a callbridge call.

For each caller: ringing, a mixing bridge (``cbb-<uuid>``), an ExternalMedia channel
(``cbm-<uuid>``, AudioSocket over TCP, slin16, ``data=<uuid>``) to our own AudioSocket listener,
both channels into the bridge. When Asterisk connects with that UUID, the AudioSocket listener
asks :meth:`AriApp.claim` and the call runs over the existing media path, its leg wrapped in an
:class:`sip.ari.leg.AriLeg`; only then is the caller answered (answer-after-bridge: no dead air
while we set up, and the agent's first words are the first thing the caller hears). Everything
this module asks of Asterisk after set-up goes through a bounded job queue served by a few
workers, so neither the media core nor the events reader waits on a REST answer. Transfers
live in :mod:`sip.ari.transfer`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

import trio

from media.bridge_transfer import TransferOutcome
from media.hooks import CallInfo
from media.leg import Leg
from media.registry import CallRegistry
from sip.ari import requests as rq
from sip.ari.causes import caller_hangup_reason, cause_word, ending_reason
from sip.ari.client import AriClient, AriUnavailable
from sip.ari.conference import AriConferences
from sip.ari.config import AriConfig
from sip.ari.events import (
    AriEvent,
    BridgeDestroyed,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    ChannelLeftBridge,
    RecordingEvent,
    StasisEnd,
    StasisStart,
    parse_bridge,
    parse_channel,
)
from sip.ari.leg import AriLeg
from sip.ari.metrics import AriMetrics
from sip.ari.outbound import OUTBOUND_PREFIX, AriOutbound
from sip.ari.reconcile import MEDIA_PREFIX, TARGET_PREFIX, plan, stasis_args_of
from sip.ari.recordings import AriRecordings
from sip.ari.state import AriCall, CallTable
from sip.ari.transfer import Transfers

log = logging.getLogger(__name__)

# The reason the media core gives a call it ends because the server stops (media/call.py).
# Such a caller stays in our Stasis app: the next callbridge adopts it (see reconcile).
SHUTDOWN_REASON = "server shutting down"
JOB_QUEUE = 1024  # ARI requests waiting for a worker; beyond it they are dropped and counted
WORKERS = 4


class CallEvents(Protocol):
    """Where ARI's view of a call becomes callbridge events (the control plane's hooks)."""

    async def call_event(self, call_id: str, event_type: str, data: dict[str, Any]) -> None: ...


class NoEvents:
    async def call_event(self, call_id: str, event_type: str, data: dict[str, Any]) -> None:
        return None


Job = Callable[[], Awaitable[object]]


class AriApp:
    def __init__(
        self,
        cfg: AriConfig,
        client: AriClient,
        events: CallEvents | None = None,
        metrics: AriMetrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.events = events or NoEvents()
        self.metrics = metrics or AriMetrics()
        self.metrics.watch_connected(lambda: client.connected)
        self.calls = CallTable()
        self.registry = CallRegistry()  # the media core's, once attached
        self.max_calls = 2_000
        self.job_drops = 0
        self._jobs_send, self._jobs_recv = trio.open_memory_channel[tuple[str, Job]](JOB_QUEUE)
        self._limiter = trio.CapacityLimiter(cfg.max_setups)
        self._nursery: trio.Nursery | None = None
        self.transfers = Transfers(self)
        self.conferences = AriConferences(self)
        self.recordings = AriRecordings(self)
        self.outbound = AriOutbound(self)

    # ---- running --------------------------------------------------------------------------

    async def run(
        self, registry: CallRegistry, max_calls: int, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Serve until cancelled; started once the first connection attempt is over."""
        self.registry, self.max_calls = registry, max_calls
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for _ in range(WORKERS):
                nursery.start_soon(self._worker)
            await nursery.start(self.client.run, self._on_connected, self._on_event)
            task_status.started()

    def submit(self, what: str, job: Job) -> None:
        """Queue ``job`` for a worker; never waits (a full queue drops it, counted)."""
        try:
            self._jobs_send.send_nowait((what, job))
        except trio.WouldBlock:
            self.job_drops += 1
            self.metrics.job_failures.labels("dropped").inc()
            log.error("ari job dropped: queue full", extra={"job": what})

    def after(self, delay_s: float, what: str, job: Job) -> None:
        """Queue ``job`` for a worker once ``delay_s`` has passed: the wait is a task of its
        own, never one of the few workers (they carry every call's requests)."""
        assert self._nursery is not None

        async def wait_then_submit() -> None:
            await trio.sleep(delay_s)
            self.submit(what, job)

        self._nursery.start_soon(wait_then_submit)

    def request(self, what: str, req: rq.AriRequest) -> None:
        self.submit(what, lambda: self.client.call(req))

    def event(self, call: AriCall, event_type: str, data: dict[str, Any]) -> None:
        if call.call_id:
            self.submit(event_type, lambda: self.events.call_event(call.call_id, event_type, data))

    async def _worker(self) -> None:
        async for what, job in self._jobs_recv:
            try:
                await job()
            except rq.AriRequestError as exc:
                if exc.status != 404:  # already gone is what a cleanup wanted
                    self.metrics.job_failures.labels("refused").inc()
                    log.warning("ari request refused", extra={"job": what, "error": str(exc)})
            except AriUnavailable as exc:
                self.metrics.job_failures.labels("unavailable").inc()
                log.warning("ari request failed", extra={"job": what, "error": str(exc)})
            except Exception:  # (a recording's disk write...): this job only, never the app
                self.metrics.job_failures.labels("error").inc()
                log.exception("ari job failed", extra={"job": what})

    # ---- the AudioSocket listener's seam --------------------------------------------------

    def claim(self, call_uuid: uuid.UUID, info: CallInfo, leg: Leg) -> tuple[CallInfo, Leg] | None:
        """An AudioSocket connection with ``call_uuid``: ours if an ExternalMedia channel we
        created sent it. Returns the call's info (caller id, DNIS, channel ids, Stasis
        arguments and channel variables) and its leg; None for any other AudioSocket call."""
        call = self.calls.by_uuid(str(call_uuid))
        return None if call is None else self._claim(call, info, leg)

    def claim_channel(
        self, channel_id: str, info: CallInfo, leg: Leg
    ) -> tuple[CallInfo, Leg] | None:
        """A chan_websocket connection whose MEDIA_START names ``channel_id``: ours if it is
        the ExternalMedia channel we created (``--ari-media websocket``); as :meth:`claim`."""
        call = self.calls.by_channel(channel_id)
        if call is None or channel_id != call.media_id:
            return None
        return self._claim(call, info, leg)

    def _claim(self, call: AriCall, info: CallInfo, leg: Leg) -> tuple[CallInfo, Leg] | None:
        if call.leg is not None or call.gone:
            return None
        caller = call.caller
        params: dict[str, Any] = {
            **info.params,  # what the listener granted (a chan_websocket key's customer)
            **call.params,
            "asterisk_channel": caller.id,
            "asterisk_bridge": call.bridge_id,
            "channel_vars": dict(caller.channelvars),
        }
        info = replace(
            info,
            leg="asterisk",
            leg_ref=f"{caller.id}/{call.bridge_id}",
            caller=caller.caller_number,
            callee=caller.exten,
            params=params,
        )
        placed = self.outbound.placed(caller.id)
        if placed is not None:  # a call we placed: our id, our numbers
            info = replace(
                info, call_id=placed.call_id, caller=placed.source, callee=placed.destination
            )
        call.call_id, call.running = info.call_id, True
        self.metrics.setups.labels("started").inc()
        self.recordings.start(call.bridge_id, info.call_id)
        ari_leg = AriLeg(leg, call.call_uuid, self, call.bridged, self.cfg.setup_timeout_s)
        call.leg = ari_leg
        call.claimed.set()
        if leg.kind == "audiosocket" and self._nursery is not None:
            # chan_audiosocket can block on a read while the channel is set up (sip.ari.leg)
            self._nursery.start_soon(ari_leg.keep_alive)
        return info, ari_leg

    # ---- AriActions (what a call's leg asks) ----------------------------------------------

    def send_dtmf(self, call_uuid: str, digits: str) -> None:
        call = self.calls.by_uuid(call_uuid)
        if call is not None and not call.gone:
            self.request("dtmf", rq.send_dtmf(call.caller.id, digits))

    async def transfer(self, call_uuid: str, target: str) -> TransferOutcome:
        call = self.calls.by_uuid(call_uuid)
        if call is None:
            return TransferOutcome("failed", "the call has ended")
        return await self.transfers.transfer(call, target)

    def started(self, call_uuid: str) -> None:
        call = self.calls.by_uuid(call_uuid)
        if call is not None:
            self.outbound.running(call.caller.id)

    def release(self, call_uuid: str, reason: str) -> None:
        """The media core is done with the call: hang up what is left in Asterisk."""
        call = self.calls.by_uuid(call_uuid)
        if call is None:
            return
        call.running = False
        self.outbound.failed(call.caller.id, reason)  # (a call placed that never started)
        if reason == SHUTDOWN_REASON:
            self.calls.forget(call)
            return
        # The ExternalMedia channel ends with our socket (the leg closes it next). No DELETE
        # for it as well: an ARI hangup racing the socket's close deadlocked this Asterisk
        # (its HTTP and events stopped answering; 10 concurrent calls, 1 run in ~8).
        if call.handed_off and not call.gone:
            if call.conference_bridge:  # its own bridge is empty now
                self.request("destroy bridge", rq.destroy_bridge(call.bridge_id))
            return  # the caller talks to the target now; kept until one of them leaves
        if not call.gone:
            # A call the control plane refused never entered the registry.
            refused = self.registry.get(call.call_id) is None
            cause = ending_reason(reason, refused)
            log.info(
                "ari hangup", extra={"call_id": call.call_id, "reason": reason, "cause": cause}
            )
            self.request("hangup caller", rq.hangup(call.caller.id, cause))
        self._finish(call)

    def _finish(self, call: AriCall) -> None:
        if call.conference_bridge:
            self.conferences.left(call)
        if call.target_id:
            self.request("hangup target", rq.hangup(call.target_id))
        self.request("destroy bridge", rq.destroy_bridge(call.bridge_id))
        self.calls.forget(call)

    def end_call(self, call: AriCall, reason: str) -> None:
        """End the media core's side of the call once queued audio has played."""
        handle = self.registry.get(call.call_id)
        if handle is not None:
            handle.hangup_after_playout(reason)

    # ---- events ---------------------------------------------------------------------------

    async def _on_connected(self) -> None:
        self.metrics.connects.inc()
        # Calls held before the lists were fetched count too: one that ends meanwhile has its
        # caller still listed, and must not be adopted as a caller without an agent.
        held_before = self.calls.held()
        channels = [parse_channel(c) for c in await self.client.call(rq.list_channels())]
        bridges = [parse_bridge(b) for b in await self.client.call(rq.list_bridges())]
        held = held_before + [h for h in self.calls.held() if h not in held_before]
        todo = plan(self.cfg.app, held, channels, bridges)
        for caller_id in todo.gone:
            call = self.calls.by_channel(caller_id)
            if call is not None:
                self._caller_gone(call, "asterisk: the caller's channel is gone")
        for adopt in todo.adopt:
            log.info("ari call adopted", extra={"channel": adopt.channel.id})
            self.metrics.setups.labels("adopted").inc()
            self._start_setup(adopt.channel, stasis_args_of(adopt.channel), adopt.bridge_id)
        for channel_id in todo.hangup:
            self.request("hangup orphan", rq.hangup(channel_id))
        for bridge_id in todo.destroy:
            self.request("destroy orphan", rq.destroy_bridge(bridge_id))

    async def _on_event(self, event: AriEvent) -> None:
        if isinstance(event, StasisStart):
            self._on_stasis_start(event.channel, event.args)
            return
        if isinstance(event, RecordingEvent):
            self.recordings.on_event(event)
            return
        if isinstance(event, BridgeDestroyed):
            self.recordings.on_bridge_destroyed(event.bridge.id)
            return
        if isinstance(event, ChannelEnteredBridge | ChannelLeftBridge):
            call = self.calls.by_channel(event.channel.id)
            if call is not None and event.bridge.id == call.bridge_id:
                kind = "joined" if isinstance(event, ChannelEnteredBridge) else "left"
                who = _role(call, event.channel.id)
                self.event(call, f"bridge_{kind}", {"bridge_id": event.bridge.id, "role": who})
            return
        channel = getattr(event, "channel", None)
        call = self.calls.by_channel(channel.id) if isinstance(channel, Channel) else None
        if call is None or not isinstance(channel, Channel):
            if isinstance(event, ChannelDestroyed) and event.channel.id.startswith(OUTBOUND_PREFIX):
                why = event.cause_txt or cause_word(event.cause)
                self.outbound.failed(event.channel.id, f"not answered ({why})")
            return
        if channel.id == call.target_id:
            self.transfers.on_target_event(call, event)
        elif channel.id != call.caller.id:
            return
        elif isinstance(event, ChannelHangupRequest):
            self._caller_gone(call, caller_hangup_reason(event.cause))
        elif isinstance(event, ChannelDestroyed):
            self._caller_gone(call, caller_hangup_reason(event.cause, event.cause_txt))
        elif isinstance(event, StasisEnd):
            self._caller_gone(call, "the caller left the Stasis application", left_stasis=True)
        elif isinstance(event, ChannelDtmfReceived):
            self._key_pressed(call, event)

    def _key_pressed(self, call: AriCall, event: ChannelDtmfReceived) -> None:
        """One event per key press. While our ExternalMedia channel shares the caller's bridge,
        Asterisk passes the key to it and the media core reports it (``dtmf_received``, the
        agent is told), as for every leg. ARI reports only the keys the media core cannot
        hear: once the caller is Asterisk's alone (an Asterisk conference, a blind transfer),
        as ``call_dtmf_received``."""
        if not call.media_hears_caller():
            data = {"digit": event.digit, "duration_ms": event.duration_ms}
            self.event(call, "dtmf_received", data)

    def _on_stasis_start(self, channel: Channel, args: tuple[str, ...]) -> None:
        if channel.id.startswith(MEDIA_PREFIX):
            call = self.calls.by_channel(channel.id)
            if call is not None:
                call.media_in_app.set()
            return
        if channel.id.startswith(TARGET_PREFIX):
            call = self.calls.by_channel(channel.id)
            if call is not None:
                call.target_answered = True
                call.target_done.set()
            else:  # a target whose transfer was given up
                self.request("hangup stray target", rq.hangup(channel.id))
            return
        if self.calls.by_channel(channel.id) is None:
            self._start_setup(channel, args)

    def _caller_gone(self, call: AriCall, reason: str, left_stasis: bool = False) -> None:
        if call.gone:
            return
        call.gone = True
        if left_stasis and call.handed_off:
            # Transferred by continue: the agent's side is ending. Asterisk answers the continue
            # before the caller leaves, so the media core may have released the call already
            # (release() then kept it for this event): the bridge goes now, or never.
            if not call.running:
                self._finish(call)
            return
        if call.leg is not None and call.running:
            call.leg.end(reason)  # the call ends; release() cleans up
        elif call.setup_scope is not None and not call.claimed.is_set():
            call.setup_scope.cancel()
        else:
            self._finish(call)

    # ---- set-up ---------------------------------------------------------------------------

    def _start_setup(self, caller: Channel, args: tuple[str, ...], bridge_id: str = "") -> None:
        if len(self.calls) >= self.max_calls:
            log.warning("ari call refused: at max_calls", extra={"channel": caller.id})
            self.metrics.setups.labels("over_capacity").inc()
            self.request("hangup over capacity", rq.hangup(caller.id, "congestion"))
            return
        call = AriCall.new(caller, args, bridge_id)
        self.calls.add(call)
        assert self._nursery is not None
        self._nursery.start_soon(self._setup, call, not bridge_id)

    async def _setup(self, call: AriCall, new_bridge: bool) -> None:
        failure = ""
        async with self._limiter:
            with trio.move_on_after(self.cfg.setup_timeout_s) as scope:
                call.setup_scope = scope
                try:
                    await self._build(call, new_bridge)
                    return
                except (rq.AriRequestError, AriUnavailable) as exc:
                    failure = str(exc)
        call.setup_scope = None
        if call.leg is not None:  # claimed, then a later step failed: end it the usual way
            call.leg.end(f"asterisk set-up failed: {failure}")
            return
        self.outbound.failed(call.caller.id, failure or "set-up failed")
        self.metrics.setups.labels("failed").inc()
        if not call.gone:
            failure = failure or f"our AudioSocket was not reached in {self.cfg.setup_timeout_s} s"
            log.warning(
                "ari call set-up failed", extra={"channel": call.caller.id, "error": failure}
            )
            self.request("hangup failed set-up", rq.hangup(call.caller.id, "failure"))
        self.request("hangup media", rq.hangup(call.media_id))
        self._finish(call)

    async def _build(self, call: AriCall, new_bridge: bool) -> None:
        cfg, client = self.cfg, self.client
        started = trio.current_time()
        if call.caller.state != "Up":
            await client.call(rq.ring(call.caller.id))
        if new_bridge:
            await client.call(rq.create_bridge(call.bridge_id, f"callbridge {call.call_uuid}"))
        if cfg.media_transport == "websocket":
            media = rq.external_media_websocket(cfg.app, call.media_id, cfg.media_connection)
        else:
            media = rq.external_media(cfg.app, call.media_id, str(cfg.media_host), call.call_uuid)
        await client.call(media)
        # It enters our app on its own time (chan_websocket: once its socket is up; AudioSocket:
        # mostly before the answer above, not always): bridged before, Asterisk answers 422.
        await call.media_in_app.wait()
        await client.call(rq.add_channels(call.bridge_id, call.caller.id, call.media_id))
        # Answered only now that the agent's audio has its whole path (our socket connected,
        # both channels bridged): until then the caller hears ringing, not dead air.
        await call.claimed.wait()
        if call.caller.state != "Up":
            await client.call(rq.answer(call.caller.id))
        call.bridged.set()
        setup_ms = round((trio.current_time() - started) * 1000)
        log.info("ari call set up", extra={"channel": call.caller.id, "setup_ms": setup_ms})


def _role(call: AriCall, channel_id: str) -> str:
    if channel_id == call.caller.id:
        return "caller"
    return "agent" if channel_id == call.media_id else "target"
