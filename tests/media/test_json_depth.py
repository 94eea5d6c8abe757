"""JSON nested deeper than proto.safe_json allows is refused at every media and agent-link edge.

Depth 100 is one the stdlib parser itself accepts (its limit is the recursion limit), so each of
these passed straight through before the bound; 50 000 levels made it raise RecursionError.
"""

from __future__ import annotations

import json

import pytest

from media.chan_websocket import ChanWebsocketConnection, ChanWebsocketError
from media.twilio import TwilioProtocolError, TwilioStream
from proto import frames_pb2 as pb
from proto.codec import LinkDecodeError, decode
from proto.safe_json import DEFAULT_MAX_DEPTH

DEEP = DEFAULT_MAX_DEPTH + 68  # 100 levels: fine for json.loads, past our bound


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [DEEP, 30_000])
def test_twilio_start_with_deep_custom_parameters_is_bad_json(levels: int) -> None:
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {"customParameters": {"x": "PLACEHOLDER"}},
    }
    text = json.dumps(start).replace('"PLACEHOLDER"', _nested(levels))
    stream = TwilioStream()
    with pytest.raises(TwilioProtocolError) as info:
        stream.receive(text)
    assert info.value.reason == "bad_json"


@pytest.mark.parametrize("levels", [DEEP, 30_000])
def test_chan_websocket_json_control_with_deep_nesting_is_bad_json(levels: int) -> None:
    text = '{"event":"MEDIA_START","connection_id":"c","x":' + _nested(levels) + "}"
    with pytest.raises(ChanWebsocketError) as info:
        ChanWebsocketConnection().receive_text(text)
    assert info.value.reason == "bad_json"


@pytest.mark.parametrize(
    "frame",
    [
        pb.Frame(
            call_start=pb.CallStartFrame(call_id="c", agent_config='{"a":' + _nested(DEEP) + "}")
        ),
        pb.Frame(
            function_call=pb.FunctionCallFrame(
                function_name="f", arguments='{"a":' + _nested(DEEP) + "}"
            )
        ),
        pb.Frame(message=pb.MessageFrame(data=_nested(50_000))),
    ],
    ids=["agent_config", "function_arguments", "message"],
)
def test_agent_link_json_with_deep_nesting_is_a_decode_error(frame: pb.Frame) -> None:
    with pytest.raises(LinkDecodeError, match="too_deep"):
        decode(frame.SerializeToString())
