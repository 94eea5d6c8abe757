"""Call command messages between nodes: what a holder accepts, and what it answers. A message
crossed a process boundary, so a malformed one is refused, never a crash, and bad arguments
answer 400 exactly like a bad body sent to the holder itself."""

from __future__ import annotations

import json

import pytest
from conftest import FakeCall

from control.call_commands import (
    Command,
    MalformedMessage,
    Reply,
    ReplyMessage,
    decode,
    encode_command,
    encode_reply,
)
from control.routes_calls import execute
from media.registry import CallRegistry

CMD = Command("r1", "call-1", "dtmf", {"digits": "12#"}, "callbridge:inbox:node-b/0", 1e9)


def test_messages_round_trip() -> None:
    assert decode(encode_command(CMD)) == CMD
    reply = Reply(422, {"code": "leg_cannot_transfer", "message": "no"})
    assert decode(encode_reply("r1", reply)) == ReplyMessage("r1", reply)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        json.dumps({"kind": "command", "id": "r1"}),
        json.dumps({**json.loads(encode_command(CMD)), "args": "digits=1"}),
        json.dumps({**json.loads(encode_command(CMD)), "deadline": True}),
        json.dumps({"kind": "reply", "id": "r1", "status": "200", "body": {}}),
        json.dumps({"kind": "shout", "id": "r1"}),
    ],
)
def test_malformed_messages_are_refused(text: str) -> None:
    with pytest.raises(MalformedMessage):
        decode(text)


def test_the_holder_validates_routed_arguments_like_a_local_body() -> None:
    calls = CallRegistry()
    call = FakeCall("call-1")
    calls.add(call)
    assert execute(calls, "call-1", "dtmf", {"digits": "12#"}).status == 200
    assert execute(calls, "call-1", "dtmf", {"digits": "1; DROP"}).status == 400
    assert execute(calls, "call-1", "say", {}).status == 400
    assert execute(calls, "call-1", "reboot", {}).status == 400
    refused = execute(calls, "call-1", "transfer", {"target": "+15550001111"})
    assert (refused.status, refused.body["code"]) == (422, "leg_cannot_transfer")
    assert execute(calls, "call-2", "hangup", {}).body["code"] == "call_not_live"
    assert call.actions == [("dtmf", "12#")]
