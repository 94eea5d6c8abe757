"""The OpenAI-compatible LLM engine against a local server speaking the real streaming protocol.

The server is a few lines of HTTP/1.1 over asyncio streams on loopback: it answers
``POST /v1/chat/completions`` with server-sent events, first a tool call whose arguments arrive
in fragments, then (once the tool result is in the request) a text reply in chunks. pipecat's
``OpenAILLMService`` and the ``openai`` client run unmodified against it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ai_pipeline.engines.models import ModelStore
from proto.messages import Audio, FunctionCall, Transcript
from tests.ai_pipeline.call_harness import Call, agent_text, answer_transferred, run_scenario

API_KEY = "sk-test-not-a-real-key"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "local-test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _tool_call_stream() -> list[bytes]:
    first = {
        "index": 0,
        "id": "call_abc",
        "type": "function",
        "function": {"name": "transfer_call", "arguments": ""},
    }
    return [
        _chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"depart'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ment": "sales"}'}}]}),
        _chunk({}, "tool_calls"),
        b"data: [DONE]\n\n",
    ]


def _text_stream(text: str) -> list[bytes]:
    words = text.split(" ")
    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": p}) for p in pieces),
        _chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]


class FakeOpenAI:
    """Records every request; streams a tool call, then a reply after the tool result."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            self.requests.append(body)
            self.auth.append(headers.get("authorization", ""))
            last = body["messages"][-1]
            events = (
                _text_stream("Okay, connecting you to sales now.")
                if last["role"] == "tool"
                else _tool_call_stream()
            )
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\nconnection: close\r\n\r\n"
            )
            for event in events:
                writer.write(event)
                await writer.drain()
                await asyncio.sleep(0.01)  # really stream: the client sees separate chunks
        finally:
            writer.close()


def test_openai_compatible_llm_calls_tools_over_real_http(models: ModelStore) -> None:
    async def main() -> None:
        server = FakeOpenAI()
        await server.start()
        config = {
            "greeting": "",
            "prompt": "You route calls.",
            "engines": {
                "llm": {
                    "name": "openai",
                    "model": "local-test-model",
                    "base_url": f"http://127.0.0.1:{server.port}/v1",
                    "api_key_env": "LOCAL_LLM_KEY",
                }
            },
        }
        call = Call(models, config, answer_transferred, env={"LOCAL_LLM_KEY": API_KEY})
        try:
            await call.say("transfer_sales.wav")
            i_call, fc = await call.wait_for(FunctionCall)
            assert (fc.tool_call_id, fc.name, fc.arguments) == (
                "call_abc",
                "transfer_call",
                {"department": "sales"},
            )
            _, reply = await call.wait_for(Transcript, agent_text, after=i_call)
            assert reply.text == "Okay, connecting you to sales now."
            assert any(isinstance(f, Audio) for f in call.frames[i_call:])
        finally:
            await server.stop()
        first, second = server.requests[:2]
        assert server.auth[0] == f"Bearer {API_KEY}"  # the key from the env var named in config
        assert first["model"] == "local-test-model" and first["stream"] is True
        assert {t["function"]["name"] for t in first["tools"]} == {
            "transfer_call",
            "end_call",
            "send_dtmf",
        }
        assert first["messages"][0] == {"role": "system", "content": "You route calls."}
        assert "sales" in first["messages"][-1]["content"].lower()
        tool_msg = second["messages"][-1]
        assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_abc"
        assert json.loads(tool_msg["content"]) == {"status": "transferred"}
        await call.finish()

    run_scenario(main)


@pytest.mark.parametrize("synthesised_s", [0.0, 5.0])
def test_after_a_barge_in_the_llm_is_told_only_what_the_caller_heard(
    models: ModelStore, synthesised_s: float
) -> None:
    """The caller cuts the greeting off as its audio starts (its text not yet confirmed by the
    TTS, which pipecat then leaves out of the context), or once 5 s of it are synthesised (its
    text in the context whole, though the caller heard a sentence)."""
    greeting = (
        "Welcome to the callbridge demo line. This greeting is deliberately long, so that "
        "the caller has plenty of time to interrupt it before it ends. Please listen "
        "carefully, as our menu options have changed recently."
    )

    async def main() -> None:
        server = FakeOpenAI()
        await server.start()
        config = {
            "greeting": greeting,
            "prompt": "You route calls.",
            "engines": {
                "llm": {
                    "name": "openai",
                    "base_url": f"http://127.0.0.1:{server.port}/v1",
                    "api_key_env": "LOCAL_LLM_KEY",
                }
            },
        }
        call = Call(models, config, answer_transferred, env={"LOCAL_LLM_KEY": API_KEY})
        try:

            def synthesised(_: Audio) -> bool:
                sent = sum(len(f.pcm16) for f in call.frames if isinstance(f, Audio))
                return sent >= synthesised_s * 16000 * 2

            i_audio, _ = await call.wait_for(Audio, synthesised)
            await call.say("transfer_sales.wav", lead_ms=100)
            await call.wait_for(FunctionCall, after=i_audio)
        finally:
            await server.stop()
        heard = [f.text for f in call.frames if isinstance(f, Transcript) and agent_text(f)]
        # The greeting, synthesised whole long before, reached the LLM as far as it was heard.
        said = [m for m in server.requests[0]["messages"] if m["role"] == "assistant"]
        assert len(said) <= 1, said
        told = said[0]["content"] if said else ""
        assert told == " ".join(heard), (told, heard)
        assert greeting.startswith(told) and len(told) < len(greeting) / 2
        await call.finish()

    run_scenario(main)
