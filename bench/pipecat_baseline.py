"""The setup a pipecat user deploys for phone calls, as ``vs-pipecat``'s baseline.

FastAPI + uvicorn, pipecat's ``FastAPIWebsocketTransport`` with its ``TwilioFrameSerializer``, one
pipeline per call (input -> [Silero VAD] -> echo -> output) on pipecat's defaults, which is what
its telephony examples do (``callbridge bench vs-pipecat`` measures it against callbridge).
The app reads Twilio's ``connected`` and ``start`` itself, as pipecat's serializer expects.

Run: ``python -m bench.pipecat_baseline --port 8765 [--vad]``; WebSocket path ``/ws``.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket

PATH = "/ws"


def build_app(vad: bool) -> FastAPI:
    # pipecat is imported here, not at module level: the bench CLI imports this module's name only.
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )
    from pipecat.workers.runner import WorkerRunner

    class Echo(FrameProcessor):
        """Caller audio straight back out: the same work callbridge's echo agent does."""

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                out = OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels)
                await self.push_frame(out, direction)
            else:
                await self.push_frame(frame, direction)

    app = FastAPI()

    @app.websocket(PATH)
    async def call(websocket: WebSocket) -> None:
        await websocket.accept()
        start: dict[str, Any] = {}
        for _ in range(2):  # "connected", then "start"
            message = json.loads(await websocket.receive_text())
            if message.get("event") == "start":
                start = message["start"]
                break
        serializer = TwilioFrameSerializer(
            start["streamSid"],
            start.get("callSid"),
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                serializer=serializer,
            ),
        )
        stages: list[Any] = [transport.input()]
        if vad:
            stages.append(VADProcessor(vad_analyzer=SileroVADAnalyzer()))
        stages += [Echo(), transport.output()]
        worker = PipelineWorker(
            Pipeline(stages),
            params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000),
        )

        @transport.event_handler("on_client_disconnected")  # type: ignore[untyped-decorator]
        async def _gone(_transport: Any, _client: Any) -> None:
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--vad", action="store_true", help="Silero VAD in every pipeline")
    ns = parser.parse_args()
    from loguru import logger

    logger.remove()  # pipecat logs every pipeline's start and stop at DEBUG: not the bench's cost
    logger.add(lambda m: print(m, end=""), level="WARNING")
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    uvicorn.run(
        build_app(ns.vad), host=ns.host, port=ns.port, log_level="warning", ws="websockets-sansio"
    )


if __name__ == "__main__":
    main()
