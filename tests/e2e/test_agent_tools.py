"""The agent's tools and the API's say through every real part: an Asterisk-like AudioSocket
caller, the media core, ``callbridge agent`` (its own process, the offline pipeline) and the
control plane itself (its HTTP API, storage and tool executor on SQLite), not a fake.

An agent saved through the API with ``send_sms`` and ``join_conference`` once ended every call at
once with ``bad_agent_config``, and ``POST /v1.0/calls/<id>/say`` answered ``queued`` while the
agent dropped the text: these calls show both work, from the caller's words (or the API call) to
what the caller hears and what the control plane records.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import media.audiosocket_server
from ai_pipeline.agent_config import DEFAULT_GOODBYE
from media.audiosocket import encode_frame
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import CallInfo
from tests.control.conftest import Plane, open_plane_for
from tests.e2e.test_agent_call import (
    LONG_GREETING,
    SPEECH_RMS,
    Caller,
    caller_utterance,
    heard_text,
    rms,
    wait_for,
    whisper,
)
from tests.media.asterisk_peer import AsteriskPeer

__all__ = ["whisper"]  # the fixture, used by name below

pytestmark = pytest.mark.slow

CALLER_ID = "+15551230000"
GREETING = "Hello, how can I help?"


def data(event: dict[str, Any]) -> Any:
    return json.loads(event["data"]) if isinstance(event["data"], str) else event["data"]


@dataclass
class Line:
    """The control plane and the media core in front of the offline agent process."""

    plane: Plane
    auth: dict[str, str]
    customer_id: str
    port: int

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        client = self.plane.client
        response = await getattr(client, method)(path, json=body, headers=self.auth)
        assert response.status_code < 300, (path, response.status_code, await response.get_data())
        return await response.get_json()

    async def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        return await self.plane.services.store.find(table, **where)  # type: ignore[no-any-return]


@pytest.fixture
async def line(
    nursery: trio.Nursery, offline_agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Line]:
    # AudioSocket carries no caller id (a SIP leg has From, Twilio its parameters): the test
    # gives its calls one, which is all the agent needs to text the caller.
    monkeypatch.setattr(
        media.audiosocket_server, "CallInfo", functools.partial(CallInfo, caller=CALLER_ID)
    )
    async with await open_plane_for("sqlite", tmp_path) as plane:
        customer_id, auth = await plane.customer()
        cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=offline_agent)
        env = CallEnv(cfg, plane.hooks, plane.media_metrics, plane.calls)
        port = await nursery.start(serve_audiosocket, env)
        yield Line(plane, auth, customer_id, port)
        nursery.cancel_scope.cancel()


async def call_agent(line: Line, **detail: Any) -> AsteriskPeer:
    """A caller whose AudioSocket UUID routes it to an agent saved through the API first."""
    peer = await AsteriskPeer.connect(line.port, send_uuid=False)
    routes = {"audiosocket_uuids": [str(peer.call_uuid)]}
    body = {"name": "front desk", "greeting": GREETING, "routes": routes, **detail}
    await line.api("post", "/v1.0/agents", body)
    await peer.send_raw(encode_frame(0x01, peer.call_uuid.bytes))
    return peer


async def greeted(
    line: Line, peer: AsteriskPeer, call: trio.Nursery
) -> tuple[Caller, dict[str, Any]]:
    """The caller in ``call``, listening and speaking, once the agent's greeting is over; and
    the call's row."""
    caller = Caller(peer)
    call.start_soon(peer.read_until_closed)
    call.start_soon(caller.run)
    await wait_for(lambda: caller.heard(), 60, "the greeting")
    await caller.wait_until_quiet()
    (call_row,) = await line.rows("calls", customer_id=line.customer_id)
    return caller, call_row


async def test_an_agent_with_every_builtin_texts_the_caller_and_joins_a_conference(
    line: Line,
) -> None:
    conference = await line.api("post", "/v1.0/conferences", {"name": "team room"})
    tools = ["end_call", "transfer_call", "send_dtmf", "send_sms", "join_conference"]
    peer = await call_agent(line, tools=tools, default_conference_id=conference["id"])
    async with trio.open_nursery() as call:
        # The agent started (no bad_agent_config) and greeted the caller.
        caller, call_row = await greeted(line, peer, call)

        caller.say(caller_utterance("text_me.wav"))
        await agent_said(line, call_row["id"], "sent you a text", 45)
        caller.say(caller_utterance("join_conference.wav"))
        await agent_said(line, call_row["id"], "into the conference", 45)
        await caller.peer.close()
        call.cancel_scope.cancel()

    # The control plane's executor sent the message: to the caller, the text being what the
    # agent had just said (the router's "text me the details")...
    (message,) = await line.rows("messages", call_id=call_row["id"])
    assert (message["destination"], message["text"]) == (CALLER_ID, GREETING)
    # ...joined the conference the agent names by default...
    (participant,) = await line.rows("participants", conference_id=conference["id"])
    assert participant["call_id"] == call_row["id"]
    # ...and both results went back to the agent, which said so (its replies follow only a
    # result without an error).
    events = await line.rows("events", customer_id=line.customer_id, type="tool_called")
    called = [(data(e)["name"], data(e)["is_error"]) for e in events]
    assert called == [("send_sms", False), ("join_conference", False)], called


async def agent_said(line: Line, call_id: str, words: str, timeout_s: float) -> str:
    """The agent's transcript row (the control plane keeps those heard in full) with ``words``."""
    with trio.fail_after(timeout_s):
        while True:
            for row in await line.rows("transcripts", call_id=call_id):
                if row["role"] == "agent" and words in row["text"]:
                    return str(row["text"])
            await trio.sleep(0.1)


async def test_say_is_heard_in_the_agent_voice_after_it_or_cutting_it_off(
    line: Line, whisper: Any
) -> None:
    peer = await call_agent(line, greeting=LONG_GREETING)
    caller = Caller(peer)
    async with trio.open_nursery() as call:
        call.start_soon(peer.read_until_closed)
        call.start_soon(caller.run)
        await wait_for(lambda: len(caller.heard()) >= 50, 60, "a second of the greeting")
        (call_row,) = await line.rows("calls", customer_id=line.customer_id)
        path = f"/v1.0/calls/{call_row['id']}/say"

        # Interrupting: the greeting stops and the text is said at once.
        cut_at = trio.current_time()
        queued = await line.api(
            "post", path, {"text": "We are closing in five minutes.", "interrupt": True}
        )
        assert queued["status"] == "queued"
        said = await agent_said(line, call_row["id"], "closing", 30)
        await caller.wait_until_quiet(after=cut_at)
        cut_heard = caller.heard(after=cut_at)

        # Queued: said after what the agent is saying; here, after the text above.
        queued_at = trio.current_time()
        await line.api("post", path, {"text": "Thank you for waiting, your order is ready."})
        await agent_said(line, call_row["id"], "ready", 30)
        await caller.wait_until_quiet(after=queued_at)
        queued_heard = caller.heard(after=queued_at)
        await peer.close()
        call.cancel_scope.cancel()

    assert said == "We are closing in five minutes."
    for frames, words in ((cut_heard, "closing"), (queued_heard, "ready")):
        pcm16 = b"".join(f.payload for f in frames)
        assert len(pcm16) / 2 / 8000 > 1.0 and rms(pcm16) > SPEECH_RMS  # speech was heard
        assert words in heard_text(whisper, frames).lower()
    # The greeting was cut off: the caller heard the said text, not the rest of the greeting,
    # and the greeting never became a final transcript (only what was heard in full does).
    assert "support" not in heard_text(whisper, cut_heard).lower()
    agent_rows = [r["text"] for r in await line.rows("transcripts", call_id=call_row["id"])]
    assert not any(t.startswith("Welcome") for t in agent_rows), agent_rows


async def test_the_agents_end_call_is_a_tool_called_event_and_hangs_up_after_the_goodbye(
    line: Line,
) -> None:
    """``end_call`` is the one tool the agent runs itself (it says goodbye first): it was seen
    only as a hang-up cause, never as a ``tool_called`` event (issue 14)."""
    peer = await call_agent(line, tools=["end_call"])
    async with trio.open_nursery() as call:
        caller, call_row = await greeted(line, peer, call)
        caller.say(caller_utterance("goodbye.wav"))
        await wait_for(lambda: peer.closed_at is not None, 60, "the agent's hang-up")
        call.cancel_scope.cancel()
    assert await agent_said(line, call_row["id"], DEFAULT_GOODBYE, 10)
    events = await line.rows("events", customer_id=line.customer_id, type="tool_called")
    assert [(data(e)["name"], data(e)["is_error"]) for e in events] == [("end_call", False)]
    assert data(events[0])["arguments"] == {"reason": "agent_end_call"}
