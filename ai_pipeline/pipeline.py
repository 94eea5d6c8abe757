"""One pipecat pipeline per call: link -> VAD -> STT -> context -> LLM + tools -> TTS -> link.

``run_call`` is the :data:`~ai_pipeline.link.CallHandler` that ``ai_pipeline.server`` runs for
every call. The models are shared by all calls in the process (:class:`ModelStore`); everything
else (VAD state, context, services, transport) is per call, so one call's failure ends that call.

What is left out on purpose, because the media core does it or it costs CPU for nothing here:
pipecat's output transport (pacing sleeps, resampling), RTVI and the default observers (a
profile of pipecat's own telephony setup put them at ~40% of the framework's CPU; not re-measured
here: ``docs/measurements.md#pipecat-baseline``), turn tracking and the idle timeout (the core
owns call life).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from contextlib import suppress
from functools import cache
from typing import Any

from pipecat.frames.frames import InterruptionFrame, TTSSpeakFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.dtmf_aggregator import DTMFAggregator
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)

from ai_pipeline.agent_config import AgentConfig, AgentConfigError, parse_agent_config
from ai_pipeline.engines.factory import (
    CallServices,
    EngineError,
    build_services,
    load_models_for,
)
from ai_pipeline.engines.models import ModelLoadError, ModelStore
from ai_pipeline.engines.vad import PhoneVADProcessor, SharedSileroVADAnalyzer
from ai_pipeline.engines.vad_batch import BatchedSileroVADAnalyzer
from ai_pipeline.heard_context import HeardContext
from ai_pipeline.link import AgentLink, CallHandler, LinkClosed
from ai_pipeline.tools import END_CALL, JOIN_CONFERENCE, SEND_SMS, LinkToolRunner, tools_schema
from ai_pipeline.transport import (
    AgentTextTap,
    CallerTranscriptTap,
    LinkOutput,
    LinkSender,
    frame_from_link,
)
from ai_pipeline.turns import phone_turn_strategies
from proto.messages import (
    Audio,
    CallStart,
    Error,
    FunctionCall,
    FunctionCallResult,
    Hangup,
    Interruption,
    LinkFrame,
    Mark,
    Text,
)

log = logging.getLogger(__name__)

LINK_RATE_HZ = 16000
DTMF_FLUSH_SECS = 1.5
"""How long after the last key press the digits go to the LLM ('#' sends them at once)."""


@cache
def default_models() -> ModelStore:
    """The process's shared models (loaded lazily); one store per agent process."""
    return ModelStore()


def make_call_handler(models: ModelStore, env: Mapping[str, str] | None = None) -> CallHandler:
    """A :data:`CallHandler` over the given models (tests and benches pass their own)."""

    async def handler(start: CallStart, link: AgentLink) -> None:
        await CallAgent(start, link, models, os.environ if env is None else env).run()

    return handler


async def run_call(start: CallStart, link: AgentLink) -> None:
    """Run the agent for one call until the caller or the agent hangs up."""
    await CallAgent(start, link, default_models(), os.environ).run()


def tool_defaults(cfg: AgentConfig, start: CallStart) -> dict[str, dict[str, Any]]:
    """What the call knows that a tool call may leave out: the caller's number for an SMS (where
    the leg has one: SIP From, Twilio's parameters), the agent's default conference."""
    defaults: dict[str, dict[str, Any]] = {}
    if start.caller.startswith("+"):
        defaults[SEND_SMS] = {"to": start.caller}
    if cfg.default_conference_id:
        defaults[JOIN_CONFERENCE] = {"conference_id": cfg.default_conference_id}
    return defaults


def call_context(cfg: AgentConfig) -> LLMContext:
    """The LLM's context at the call's start: the agent's tools, and the conversation so far
    when another agent handed the call over (``history``), so the caller need not repeat it."""
    history: list[Any] = [{"role": role, "content": text} for role, text in cfg.history]
    return LLMContext(history, tools_schema(cfg.tools)) if cfg.tools else LLMContext(history)


class CallAgent:
    """Builds one call's pipeline from its agent config and runs it against the link."""

    def __init__(
        self,
        start: CallStart,
        link: AgentLink,
        models: ModelStore,
        env: Mapping[str, str],
        *,
        observers: list[BaseObserver] | None = None,
    ) -> None:
        self.start = start
        self._observers = observers or []  # measurement only (turnbench); none in service
        self._link = link
        self._models = models
        self._env = env
        self.send = LinkSender(link.send)
        self.output = LinkOutput(self.send)
        self._worker: PipelineWorker | None = None
        self._vad: PhoneVADProcessor | None = None  # the pipeline's head: caller audio goes here
        self._config: AgentConfig | None = None

    async def run(self) -> None:
        call_id = self.start.call_id
        if (self.start.sample_rate_hz, self.start.num_channels) != (LINK_RATE_HZ, 1):
            message = (
                f"agent link audio must be {LINK_RATE_HZ} Hz mono, call_start says "
                f"{self.start.sample_rate_hz} Hz x{self.start.num_channels}"
            )
            log.error("call %s: %s", call_id, message)
            with suppress(LinkClosed):
                await self.send(Error("unsupported_format", message, fatal=True))
            return
        try:
            self._config = parse_agent_config(self.start.agent_config)
            await asyncio.to_thread(load_models_for, self._config, self._models)
            services = build_services(self._config, self._models, self._env)
            vad = BatchedSileroVADAnalyzer(  # one ONNX run per tick for all calls
                self._models.silero_batcher(), self._models.silero_session(), self._config.vad
            )
        except (AgentConfigError, EngineError, ModelLoadError) as exc:
            code = "bad_agent_config" if isinstance(exc, AgentConfigError) else "engine_unavailable"
            log.error("call %s: %s: %s", call_id, code, exc)
            with suppress(LinkClosed):
                await self.send(Error(code, str(exc), fatal=True))
            return
        log.info(
            "call %s: agent stt=%s llm=%s tts=%s",
            call_id,
            self._config.stt.name,
            self._config.llm.name,
            self._config.tts.name,
        )
        self.output.set_voice_level(self._config.voice_level_dbfs)
        await self._run_pipeline(self._config, services, vad)

    async def _run_pipeline(
        self, cfg: AgentConfig, services: CallServices, vad: SharedSileroVADAnalyzer
    ) -> None:
        tools = LinkToolRunner(
            self.send,
            self._end_call,
            timeout_secs=cfg.tool_timeout_secs,
            defaults=tool_defaults(cfg, self.start),
        )
        for spec in cfg.tools:
            services.llm.register_function(spec.name, tools.handle)
        context = call_context(cfg)
        strategies = phone_turn_strategies(cfg.user_turn_timeout_secs)
        aggregators = LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(user_turn_strategies=strategies)
        )
        self._llm = services.llm
        self._goodbye = cfg.goodbye
        self._vad = PhoneVADProcessor(vad)  # also says when the caller goes quiet (STT starts)
        pipeline = Pipeline(
            [
                self._vad,
                services.stt,
                CallerTranscriptTap(self.send),
                DTMFAggregator(timeout=DTMF_FLUSH_SECS, prefix="The caller pressed "),
                aggregators.user(),
                services.llm,
                AgentTextTap(self.output),
                services.tts,
                self.output,
                aggregators.assistant(),
                HeardContext(context, self.output.take_heard),  # after a barge-in
            ]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=LINK_RATE_HZ, audio_out_sample_rate=LINK_RATE_HZ
            ),
            enable_rtvi=False,
            enable_turn_tracking=False,
            idle_timeout_secs=None,
            check_dangling_tasks=False,
            conversation_id=self.start.call_id,
            observers=list(self._observers),
        )
        self._worker = worker
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(worker)
        if cfg.greeting.strip():
            await worker.queue_frame(TTSSpeakFrame(cfg.greeting))
        reader = asyncio.create_task(
            self._read_link(worker, tools), name=f"link-reader-{self.start.call_id}"
        )
        try:
            await runner.run()
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
            tools.cancel_all()

    async def _read_link(self, worker: PipelineWorker, tools: LinkToolRunner) -> None:
        """Feed the caller's frames into the pipeline until the call ends, then stop it."""
        try:
            while True:
                frame: LinkFrame = await self._link.recv()
                if isinstance(frame, FunctionCallResult):
                    if frame.name != END_CALL:  # end_call's is the core's receipt: call ending
                        tools.resolve(frame)
                elif isinstance(frame, Hangup):
                    log.info("call %s: hangup from core (%s)", self.start.call_id, frame.reason)
                    break
                elif isinstance(frame, Error) and frame.fatal:
                    log.warning(
                        "call %s: fatal error from core: %s", self.start.call_id, frame.message
                    )
                    break
                elif isinstance(frame, Mark):
                    continue  # playout acks: the pipeline estimates playout itself
                elif isinstance(frame, Interruption):  # say with interrupt: cut the agent off
                    await worker.queue_frame(InterruptionFrame())
                elif isinstance(frame, Text):  # the control plane's say: in the agent's voice
                    await worker.queue_frame(TTSSpeakFrame(frame.text))
                elif isinstance(frame, Audio):
                    await self._queue_audio(frame)
                elif (pipecat_frame := frame_from_link(frame)) is not None:
                    await worker.queue_frame(pipecat_frame)
        except LinkClosed:
            log.info("call %s: link closed", self.start.call_id)
        await worker.cancel(reason="call ended")

    async def _queue_audio(self, frame: Audio) -> None:
        """Caller audio straight into the VAD's own input queue, the first hop that does work:
        50 frames a second per call, and the worker's push queue and task, the two pipelines and
        their sources in front of the VAD (each hop an observer record, event handler calls and
        a trace line formatted for nothing) cost a listening call ~a fifth of its CPU
        (bench/RESULTS.md). The audio keeps its order (one reader, one queue) and is a system
        frame, which pipecat processes on arrival, never behind the pipeline's other frames;
        frames queued before the pipeline has started wait for the VAD's StartFrame, as they
        waited in the worker's queue."""
        pipecat_frame = frame_from_link(frame)
        assert pipecat_frame is not None and self._vad is not None
        await self._vad.queue_frame(pipecat_frame)

    async def _end_call(self) -> None:
        """The ``end_call`` tool: say the goodbye, then ask the core to hang up (and to run the
        tool, so that it is recorded as every tool is)."""
        goodbye = self._goodbye.strip()
        reason = "agent_end_call"
        tool = FunctionCall(f"{END_CALL}_{self.start.call_id}", END_CALL, {"reason": reason})
        await self.output.hang_up_after_speech(reason, speech_expected=bool(goodbye), tool=tool)
        if goodbye:
            await self._llm.push_frame(TTSSpeakFrame(goodbye, append_to_context=False))
