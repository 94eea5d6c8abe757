"""Call summaries: written when a call ends, served at /v1.0/calls/<id>/summary, delivered as a
signed ``call_summary`` webhook; from the record offline, from an OpenAI-compatible LLM (a fake
server on loopback speaking the chat completions protocol) when the agent has one."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import FakeCall, Plane, Receiver, open_plane_for, verify
from live import serve_app
from quart import request
from quart_trio import QuartTrio

from control.summary_doc import CallRecord, build_document, record_text
from control.summary_llm import SummaryLlmError, parse_answer
from media.hooks import CallInfo

NUMBER = "+15550199001"


@pytest.fixture(params=["sqlite", "mysql+redis"])
async def summary_plane(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Plane]:
    record_dir = tmp_path / "rec"
    record_dir.mkdir()
    async with await open_plane_for(
        request.param, tmp_path, summary_settle_s=0.0, record_dir=str(record_dir)
    ) as p:
        yield p


@dataclass
class FakeLlm:
    """An OpenAI-compatible chat completions server: records requests, answers ``content``."""

    url: str = ""
    content: str = ""
    status: int = 200
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)


@pytest.fixture
async def fake_llm(nursery: trio.Nursery) -> FakeLlm:
    llm = FakeLlm()
    app = QuartTrio("fake-openai")

    @app.post("/v1/chat/completions")
    async def completions() -> tuple[str, int, dict[str, str]]:
        body = json.loads(await request.get_data(as_text=True))
        llm.requests.append((dict(request.headers), body))
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_765_000_000,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": llm.content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        return json.dumps(answer), llm.status, {"Content-Type": "application/json"}

    llm.url = f"http://127.0.0.1:{await serve_app(nursery, app)}/v1"
    return llm


async def _call(plane: Plane, detail: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """A customer with an agent on NUMBER, a call that talked, used two tools and hung up."""
    cid, hdr = await plane.customer()
    store = plane.services.store
    agent = await store.insert(
        "agents", {"customer_id": cid, "name": "billing bot", "is_default": 1, "detail": detail}
    )
    await store.insert(
        "agent_routes",
        {"customer_id": cid, "agent_id": agent["id"], "kind": "number", "value": NUMBER},
    )
    call_id = str(uuid.uuid4())
    hooks = plane.hooks
    await hooks.call_created(CallInfo(call_id, "sip", caller="+15550100000", callee=NUMBER))
    handle = FakeCall(call_id)
    plane.calls.add(handle)
    await hooks.call_answered(handle)
    await hooks.transcript(call_id, "agent", "Hello, how can I help you?", True)
    await hooks.transcript(call_id, "caller", "I have a question about my bill", True)
    await hooks.transcript(call_id, "caller", "I have a quest", False)  # interim: not kept
    await hooks.execute_tool(handle, "send_dtmf", {"digits": "12"})
    await hooks.execute_tool(handle, "transfer_call", {"department": "nowhere"})
    await hooks.transcript(call_id, "agent", "Your bill is paid. Goodbye.", True)
    return cid, call_id, hdr


async def _hang_up(plane: Plane, call_id: str) -> None:
    plane.calls.remove(call_id)
    await plane.hooks.call_hungup(call_id, "agent", "agent ended call")


async def _summary(plane: Plane, call_id: str, hdr: dict[str, str]) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            r = await plane.client.get(f"/v1.0/calls/{call_id}/summary", headers=hdr)
            if r.status_code == 200:
                body: dict[str, Any] = await r.get_json()
                return body
            assert r.status_code == 404 and (await r.get_json())["error"] == "summary_pending"
            await trio.sleep(0.05)


TOOLS = {"tools": ["send_dtmf", "transfer_call", "end_call"], "transfer_targets": {}}


async def test_an_ended_call_gets_a_summary_from_its_record(
    summary_plane: Plane, receiver: Receiver
) -> None:
    plane = summary_plane
    cid, call_id, hdr = await _call(plane, TOOLS)
    hook = await (
        await plane.client.post(
            "/v1.0/webhooks",
            json={"url": receiver.url, "event_types": ["call_summary"]},
            headers=hdr,
        )
    ).get_json()
    r = await plane.client.get(f"/v1.0/calls/{call_id}/summary", headers=hdr)
    assert r.status_code == 409  # still live
    wav = Path(plane.services.cfg.record_dir or "") / f"{call_id}.wav"
    wav.write_bytes(b"RIFF" + bytes(40) + bytes(range(256)) * 8)
    await _hang_up(plane, call_id)
    s = await _summary(plane, call_id, hdr)
    assert s["method"] == "record" and "without a language model" in s["note"]
    assert s["agent"]["name"] == "billing bot" and s["leg"] == "sip"
    assert s["source"] == "+15550100000" and s["destination"] == NUMBER
    assert s["hangup"] == {"by": "agent", "reason": "agent ended call"}
    assert s["turns"] == {"caller": 1, "agent": 2}
    assert [t["text"] for t in s["transcript"]] == [
        "Hello, how can I help you?",
        "I have a question about my bill",
        "Your bill is paid. Goodbye.",
    ]
    dtmf, transfer = s["tools"]
    assert (dtmf["name"], dtmf["arguments"], dtmf["is_error"]) == (
        "send_dtmf",
        {"digits": "12"},
        False,
    )
    assert dtmf["result"] is not None
    assert transfer["name"] == "transfer_call" and transfer["is_error"]
    assert "nowhere" in json.dumps(transfer["result"])
    assert s["disposition"] == "completed_by_agent"
    assert s["recording"] == {"url": f"/v1.0/calls/{call_id}/recording"}
    assert s["latency"] is None  # no figures reported: said, not invented
    text = s["text"]
    assert '"I have a question about my bill"' in text and "send_dtmf (ok)" in text
    assert "transfer_call (failed:" in text and '"Your bill is paid. Goodbye."' in text
    assert "ended by the agent (agent ended call)" in text
    # the recording plays back, streamed, and only for its own customer
    r = await plane.client.get(s["recording"]["url"], headers=hdr)
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/wav"
    assert await r.get_data() == wav.read_bytes()
    _, stranger = await plane.customer()
    for path in (s["recording"]["url"], f"/v1.0/calls/{call_id}/summary"):
        assert (await plane.client.get(path, headers=stranger)).status_code == 404
    # the webhook: signed, the same summary
    with trio.fail_after(10):
        await receiver.arrived.wait()
    ((headers, body),) = receiver.received
    assert verify(hook["secret"], headers, body)
    event = json.loads(body)
    assert event["type"] == "call_summary" and event["resource_id"] == call_id
    assert event["customer_id"] == cid and event["data"]["text"] == text
    # one summary per call, whoever else ends the row later
    assert len(await plane.services.store.find("summaries", call_id=call_id)) == 1


async def test_the_media_cores_turn_latencies_become_the_summarys_figures(
    summary_plane: Plane,
) -> None:
    plane = summary_plane
    _, call_id, hdr = await _call(plane, TOOLS)
    handle = plane.calls.get(call_id)
    assert isinstance(handle, FakeCall)
    handle.turn_latency_ms.extend([900, 640, 1800, 700])  # as media/agent_peer.py records them
    await _hang_up(plane, call_id)
    s = await _summary(plane, call_id, hdr)
    assert s["latency"] == {
        "measures": "the caller's last words (final transcript) to the first audio of the answer",
        "answers": 4,
        "median_ms": 700,  # nearest rank: measured values only
        "p90_ms": 1800,
        "max_ms": 1800,
    }
    (hungup,) = await plane.services.store.find("events", resource_id=call_id, type="call_hungup")
    data = json.loads(hungup["data"]) if isinstance(hungup["data"], str) else hungup["data"]
    assert data["turn_latency"] == s["latency"]  # webhooks get them with the hang-up too


async def test_with_an_openai_compatible_llm_the_summary_is_written_by_it(
    summary_plane: Plane, fake_llm: FakeLlm, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = summary_plane
    monkeypatch.setenv("SUMMARY_TEST_KEY", "sk-test-123")
    fake_llm.content = json.dumps(
        {"summary": "The caller asked about a bill; it was paid.", "disposition": "Resolved"}
    )
    engines = {
        "llm": "openai",
        "options": {
            "llm": {"base_url": fake_llm.url, "model": "fake-4", "api_key_env": "SUMMARY_TEST_KEY"}
        },
    }
    _, call_id, hdr = await _call(plane, {**TOOLS, "engines": engines})
    await _hang_up(plane, call_id)
    s = await _summary(plane, call_id, hdr)
    assert (s["method"], s["disposition"], s["llm_model"]) == ("llm", "resolved", "fake-4")
    assert s["text"] == "The caller asked about a bill; it was paid."
    assert "note" not in s
    ((headers, body),) = fake_llm.requests
    assert headers["Authorization"] == "Bearer sk-test-123"
    assert body["model"] == "fake-4" and body["messages"][0]["role"] == "system"
    record = json.loads(body["messages"][1]["content"])
    assert "I have a question about my bill" in json.dumps(record["transcript"])


async def test_a_failing_llm_leaves_the_summary_from_the_record(
    summary_plane: Plane, fake_llm: FakeLlm
) -> None:
    plane = summary_plane
    fake_llm.content = "Sure! Here's a summary of the call."  # not the JSON asked for
    engines = {"llm": "openai", "options": {"llm": {"base_url": fake_llm.url}}}
    _, call_id, hdr = await _call(plane, {**TOOLS, "engines": engines})
    await _hang_up(plane, call_id)
    s = await _summary(plane, call_id, hdr)
    assert s["method"] == "record" and "not a chat completion" in s["llm_error"]
    assert s["text"].startswith("The caller spoke 1 time(s), the agent 2.")


def test_parse_answer_refuses_what_is_not_a_summary() -> None:
    def completion(content: Any) -> bytes:
        return json.dumps({"choices": [{"message": {"content": content}}]}).encode()

    ok = completion('Here: {"summary": "Paid.", "disposition": "call back later!"}')
    assert parse_answer(ok) == ("Paid.", "call_back_later")
    for bad in (
        b"not json",
        json.dumps({"choices": []}).encode(),
        completion(None),
        completion('{"summary": ""}'),
        completion('{"summary": "x", "disposition": 3}'),
        completion("{broken"),
    ):
        with pytest.raises(SummaryLlmError):
            parse_answer(bad)


def _record(**call: Any) -> Iterator[CallRecord]:
    base = {
        "id": "c1",
        "agent_id": "a1",
        "leg": "twilio",
        "direction": "incoming",
        "source": "",
        "destination": "",
        "tm_create": "2026-12-07 10:00:00.000000",
        "tm_answer": "2026-12-07 10:00:01.000000",
        "tm_hangup": "2026-12-07 10:00:31.000000",
        "duration_ms": 30_000,
        "hangup_cause": "caller",
        "hangup_reason": "hangup",
    }
    yield CallRecord({**base, **call}, None, [], [], [])


def test_disposition_and_text_come_from_the_record_only() -> None:
    (rec,) = _record()
    doc = build_document(rec)
    assert doc["disposition"] == "caller_hung_up"
    assert record_text(doc) == (
        "The caller spoke 0 time(s), the agent 0. The agent used no tools. The call was"
        " answered, lasted 30 s and was ended by the caller (hangup)."
    )
    (rec,) = _record(tm_answer=None, hangup_cause="timeout")
    assert build_document(rec)["disposition"] == "not_answered"
    events = [
        {
            "type": "call_transfer_failed",
            "data": {"target": "+1555", "reason": "busy"},
            "tm_create": "",
        }
    ]
    (rec,) = _record()
    failed = build_document(CallRecord(rec.call, None, [], events, []))
    assert failed["disposition"] == "transfer_failed"
    assert failed["transfer"]["reason"] == "busy"
