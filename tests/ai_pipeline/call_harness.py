"""The core's side of a call, for driving ``run_call`` in tests over a :class:`MemoryLink`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.pipeline import make_call_handler
from proto.messages import (
    Audio,
    CallStart,
    FunctionCall,
    FunctionCallResult,
    LinkFrame,
    Transcript,
)
from tests.ai_pipeline.memory_link import MemoryLink, load_wav_pcm16, play, silence_ms

SPEED = 2.0
F = TypeVar("F", bound=LinkFrame)
Answer = Callable[[FunctionCall], Awaitable[FunctionCallResult | None]]


CALLS: list[Call] = []


class Call:
    """The core's side of one call: records frames, answers tool calls with ``answer``."""

    def __init__(
        self,
        models: ModelStore,
        agent_config: dict[str, Any],
        answer: Answer | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        CALLS.append(self)
        self.link = MemoryLink()
        self.frames: list[LinkFrame] = []
        self._new = asyncio.Event()
        self._answer = answer
        handler = make_call_handler(models, env=env or {})
        start = CallStart("call-1", agent_config=agent_config)

        async def agent() -> None:
            await handler(start, self.link)

        self.agent: asyncio.Task[None] = asyncio.create_task(agent())
        self._core = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            frame = await self.link.from_agent.get()
            self.frames.append(frame)
            self._new.set()
            if isinstance(frame, FunctionCall) and self._answer is not None:
                result = await self._answer(frame)
                if result is not None:
                    await self.link.to_agent.put(result)

    async def wait_for(
        self,
        kind: type[F],
        pred: Callable[[F], bool] = lambda f: True,
        within_s: float = 15.0,
        after: int = 0,
    ) -> tuple[int, F]:
        """Index and frame of the first ``kind`` frame matching ``pred`` at index >= after."""
        async with asyncio.timeout(within_s):
            while True:
                for i, frame in enumerate(self.frames[after:], start=after):
                    if isinstance(frame, kind) and pred(frame):
                        return i, frame
                self._new.clear()
                await self._new.wait()

    async def say(self, wav: str, *, lead_ms: int = 200, tail_ms: int = 1200) -> None:
        await play(
            self.link, silence_ms(lead_ms) + load_wav_pcm16(wav) + silence_ms(tail_ms), speed=SPEED
        )

    def dump(self) -> str:
        return "\n".join(
            f"Audio {len(f.pcm16) // 32} ms" if isinstance(f, Audio) else repr(f)
            for f in self.frames
        )

    async def finish(self) -> None:
        """Hang up as the core would; the agent must end by itself, promptly."""
        self.link.close()
        try:
            await asyncio.wait_for(self.agent, 10)
        finally:
            self._core.cancel()


def run_scenario(body: Callable[[], Awaitable[None]]) -> None:
    """Run a test body; on failure, still end every agent so asyncio.run can return."""

    async def guarded() -> None:
        try:
            await asyncio.wait_for(body(), 60)
        except BaseException:
            for call in CALLS:
                print(call.dump())
            raise
        finally:
            CALLS.clear()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

    asyncio.run(guarded())


async def answer_transferred(call: FunctionCall) -> FunctionCallResult:
    return FunctionCallResult(call.tool_call_id, call.name, {"status": "transferred"})


def agent_text(frame: Transcript) -> bool:
    return frame.role == "agent"
