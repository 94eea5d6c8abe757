"""LinkToolRunner: tool calls go out as frames, results (or a timeout) come back to the LLM."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from unittest.mock import MagicMock

from pipecat.frames.frames import FunctionCallResultProperties
from pipecat.services.llm_service import FunctionCallParams

from ai_pipeline.agent_config import parse_agent_config
from ai_pipeline.pipeline import tool_defaults
from ai_pipeline.tools import BUILTIN_TOOLS, LinkToolRunner, tools_schema
from proto.messages import CallStart, FunctionCall, FunctionCallResult, LinkFrame


class Recorder:
    def __init__(self) -> None:
        self.sent: list[LinkFrame] = []
        self.results: list[tuple[Any, FunctionCallResultProperties | None]] = []
        self.ended = 0

    async def send(self, frame: LinkFrame) -> None:
        self.sent.append(frame)

    async def end_call(self) -> None:
        self.ended += 1

    async def result(
        self, result: Any, *, properties: FunctionCallResultProperties | None = None
    ) -> None:
        self.results.append((result, properties))

    def params(self, name: str, tool_call_id: str, arguments: dict[str, Any]) -> FunctionCallParams:
        return FunctionCallParams(
            function_name=name,
            tool_call_id=tool_call_id,
            arguments=arguments,
            llm=MagicMock(),
            pipeline_worker=MagicMock(),
            context=MagicMock(),
            result_callback=self.result,
        )


def test_result_frame_resumes_the_call() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=5)
        call = asyncio.create_task(
            runner.handle(rec.params("transfer_call", "c1", {"department": "sales"}))
        )
        while not rec.sent:
            await asyncio.sleep(0)
        assert rec.sent == [FunctionCall("c1", "transfer_call", {"department": "sales"})]
        assert runner.pending == 1
        runner.resolve(FunctionCallResult("c1", "transfer_call", {"status": "transferred"}))
        await call
        assert rec.results == [({"status": "transferred"}, None)]
        assert runner.pending == 0

    asyncio.run(main())


def test_error_result_is_an_error_for_the_llm() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=5)
        call = asyncio.create_task(runner.handle(rec.params("send_dtmf", "d1", {"digits": "1"})))
        while not rec.sent:
            await asyncio.sleep(0)
        runner.resolve(FunctionCallResult("d1", "send_dtmf", "no media", is_error=True))
        await call
        assert rec.results == [({"error": "no media"}, None)]

    asyncio.run(main())


def test_timeout_gives_an_error_result_and_late_result_is_counted() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=0.05)
        await runner.handle(rec.params("send_sms", "t1", {"text": "hi"}))
        assert len(rec.results) == 1
        assert "timed out" in rec.results[0][0]["error"]
        assert runner.pending == 0
        runner.resolve(FunctionCallResult("t1", "send_sms", {}))
        runner.resolve(FunctionCallResult("never-sent", "x", {}))
        assert runner.late_results == 2

    asyncio.run(main())


def test_missing_tool_call_id_gets_one() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=5)
        call = asyncio.create_task(runner.handle(rec.params("transfer_call", "", {})))
        while not rec.sent:
            await asyncio.sleep(0)
        sent = rec.sent[0]
        assert isinstance(sent, FunctionCall) and sent.tool_call_id.startswith("call_")
        runner.resolve(FunctionCallResult(sent.tool_call_id, "transfer_call", "ok"))
        await call
        assert rec.results == [("ok", None)]

    asyncio.run(main())


def test_end_call_runs_locally_without_another_llm_turn() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=5)
        await runner.handle(rec.params("end_call", "e1", {}))
        assert rec.sent == []  # not executed by the core
        assert rec.ended == 1
        ((result, props),) = rec.results
        assert result == {"ok": True}
        assert props is not None and props.run_llm is False

    asyncio.run(main())


def test_cancel_all_releases_waiters() -> None:
    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=5)
        call = asyncio.create_task(runner.handle(rec.params("transfer_call", "x", {})))
        while not rec.sent:
            await asyncio.sleep(0)
        runner.cancel_all()
        with contextlib.suppress(asyncio.CancelledError):
            await call
        assert call.done() and runner.pending == 0

    asyncio.run(main())


def test_tools_schema_lists_the_builtins() -> None:
    schema = tools_schema(list(BUILTIN_TOOLS.values()))
    names = [t.name for t in schema.standard_tools]
    assert names == ["transfer_call", "end_call", "send_dtmf", "send_sms", "join_conference"]
    transfer = schema.standard_tools[0]
    assert transfer.required == ["department"]


def test_the_call_fills_in_what_the_llm_left_out() -> None:
    """The caller's number for send_sms and the default conference: the call knows them, and
    the LLM (the intent router above all) does not; what the LLM did say wins."""
    conference = "6f1c2b9a-0000-4000-8000-00000000abcd"
    cfg = parse_agent_config(
        {"tools": ["send_sms", "join_conference"], "default_conference_id": conference}
    )
    defaults = tool_defaults(cfg, CallStart("c", caller="+15551230000"))

    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=0.05, defaults=defaults)
        await runner.handle(rec.params("send_sms", "s1", {"text": "hi"}))
        await runner.handle(rec.params("send_sms", "s2", {"text": "hi", "to": "+15559990000"}))
        await runner.handle(rec.params("join_conference", "j1", {}))
        assert rec.sent == [
            FunctionCall("s1", "send_sms", {"to": "+15551230000", "text": "hi"}),
            FunctionCall("s2", "send_sms", {"to": "+15559990000", "text": "hi"}),
            FunctionCall("j1", "join_conference", {"conference_id": conference}),
        ]

    asyncio.run(main())
    # No caller id (AudioSocket), no default conference: nothing is made up.
    assert tool_defaults(parse_agent_config({}), CallStart("c")) == {}


def test_transfer_call_waits_for_the_transfers_answer_past_the_tool_timeout() -> None:
    """A transfer's result comes when the new call answers or fails (a REFER's NOTIFY 486 may
    take tens of seconds): timing it out at the tool timeout would tell the caller it failed
    while it may still go through, and lose the real failure when it comes."""

    async def main() -> None:
        rec = Recorder()
        runner = LinkToolRunner(rec.send, rec.end_call, timeout_secs=0.05)
        call = asyncio.create_task(
            runner.handle(rec.params("transfer_call", "t1", {"department": "sales"}))
        )
        await asyncio.sleep(0.3)  # six tool timeouts
        busy = {"error": "transfer_failed", "message": "sip 486 Busy Here"}
        runner.resolve(FunctionCallResult("t1", "transfer_call", busy, is_error=True))
        await call
        assert rec.results == [({"error": busy}, None)]
        # Any other tool still times out at the tool timeout.
        await runner.handle(rec.params("send_dtmf", "d1", {"digits": "1"}))
        assert "timed out" in rec.results[-1][0]["error"]

    asyncio.run(main())
