"""pipecat's ``TwilioFrameSerializer`` set up as it must be: no auto hang-up (it would need
Twilio credentials), ``setup()`` before use. Only ``audio_in_sample_rate`` is read by setup."""

from __future__ import annotations

from typing import Any

from pipecat.clocks.system_clock import SystemClock
from pipecat.processors.frame_processor import FrameProcessorSetup
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.utils.asyncio.task_manager import TaskManager


async def pipecat_twilio_serializer(stream_sid: str, rate_hz: int = 8000) -> Any:
    serializer = TwilioFrameSerializer(
        stream_sid, params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
    )
    setup = FrameProcessorSetup(
        clock=SystemClock(),  # type: ignore[no-untyped-call]
        task_manager=TaskManager(),
        pipeline_worker=None,  # type: ignore[arg-type]
        audio_in_sample_rate=rate_hz,
    )
    await serializer.setup(setup)
    return serializer
