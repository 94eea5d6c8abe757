"""``vs-pipecat``'s agent with VAD: the echo agent's work with the offline agent's VAD in front.

pipecat's baseline with ``--vad`` runs Silero in every call's pipeline, so the callbridge side of
that comparison must too, or the ratio compares VAD against no VAD. This agent runs, per call,
what the offline agent's pipeline (:mod:`ai_pipeline.pipeline`) runs before STT: link audio ->
pipecat ``VADProcessor`` over :class:`~ai_pipeline.engines.vad.SharedSileroVADAnalyzer` (the
process's one Silero session, the offline agent's default thresholds) -> the caller's audio back
on the link. Only the echo replaces STT -> LLM -> TTS, as in pipecat's baseline.

Run: ``python -m bench.vad_echo_agent --listen 127.0.0.1:8767``; ``serve --agent ws://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipecat.frames.frames import Frame, InputAudioRawFrame
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from ai_pipeline.agent_config import VadConfig
from ai_pipeline.engines.vad import SharedSileroVADAnalyzer
from ai_pipeline.link import AgentLink, CallHandler, LinkClosed
from ai_pipeline.transport import frame_from_link
from proto.messages import Audio, CallStart, Hangup

if TYPE_CHECKING:
    import onnxruntime  # type: ignore[import-untyped]


class EchoToLink(FrameProcessor):
    """The caller's audio, after VAD has seen it, straight back to the media core."""

    def __init__(self, link: AgentLink) -> None:
        super().__init__()
        self._link = link

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            with contextlib.suppress(LinkClosed):  # the reader sees the close and ends the call
                await self._link.send(Audio(frame.audio, frame.sample_rate, frame.num_channels))
        else:
            await self.push_frame(frame, direction)


def vad_echo_handler(
    session: onnxruntime.InferenceSession, observers: Sequence[BaseObserver] = ()
) -> CallHandler:
    """Calls served as the module docstring says; ``observers`` watch the pipeline (tests)."""

    async def handler(start: CallStart, link: AgentLink) -> None:
        vad = SharedSileroVADAnalyzer(session, VadConfig(), sample_rate_hz=start.sample_rate_hz)
        worker = PipelineWorker(
            Pipeline([VADProcessor(vad_analyzer=vad), EchoToLink(link)]),
            params=PipelineParams(
                audio_in_sample_rate=start.sample_rate_hz,
                audio_out_sample_rate=start.sample_rate_hz,
            ),
            enable_rtvi=False,  # as the offline agent runs its pipelines
            enable_turn_tracking=False,
            idle_timeout_secs=None,
            check_dangling_tasks=False,
            observers=list(observers),
        )
        runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
        await runner.add_workers(worker)
        reader = asyncio.create_task(_feed(link, worker))
        try:
            await runner.run()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    return handler


async def _feed(link: AgentLink, worker: PipelineWorker) -> None:
    """The caller's frames into the pipeline until the call ends, then stop it."""
    with contextlib.suppress(LinkClosed):
        while not isinstance(frame := await link.recv(), Hangup):
            if (pipecat_frame := frame_from_link(frame)) is not None:
                await worker.queue_frame(pipecat_frame)
    await worker.cancel(reason="call ended")


def main() -> None:
    from ai_pipeline.cli import serve_forever
    from ai_pipeline.engines.models import ModelStore
    from media.config import HostPort

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    ns = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from loguru import logger

    logger.remove()  # pipecat logs every pipeline's start and stop at DEBUG: not the bench's cost
    logger.add(lambda m: print(m, end=""), level="WARNING")
    handler = vad_echo_handler(ModelStore().silero_session())  # loaded before the port opens
    asyncio.run(serve_forever(handler, HostPort.parse(ns.listen, "--listen")))


if __name__ == "__main__":
    main()
