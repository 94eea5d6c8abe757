"""The agent link's dialect for a stock pipecat peer: only pipecat's own five frame kinds.

pipecat's ``ProtobufFrameSerializer`` knows fields 1-5 of ``Frame`` (text, audio, transcription,
message, interruption) and nothing else: our additions (call start, hangup, DTMF...) make it log
``ERROR Unable to deserialize a valid frame`` and drop them, so a stock bot would never learn
which call it has. For such a peer (``--agent ws://HOST:PORT/?agent_protocol=pipecat``) every
frame kind beyond those five travels as pipecat's own ``MessageFrame``: a JSON string, which a
stock pipeline receives as an ``InputTransportMessageFrame`` (``frame.message`` is the dict):

    {"label": "callbridge", "type": "call_start",
     "data": {"call_id": "...", "caller": "...", "agent_config": {...}, ...}}

``label`` follows pipecat's RTVI messages (``"rtvi-ai"``) so that a pipeline can tell ours from
its own; ``type`` is the frame kind in snake case; ``data`` holds the frame's fields by the names
of :mod:`proto.messages`. Pure: frames in, frames out.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Final, Literal, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from proto.messages import Audio, Interruption, LinkFrame, Message, Text, Transcription

LABEL: Final = "callbridge"
PROTOCOL_PARAM: Final = "agent_protocol"
AgentProtocol: TypeAlias = Literal["callbridge", "pipecat"]
PROTOCOLS: Final[tuple[AgentProtocol, ...]] = ("callbridge", "pipecat")
_PIPECAT_KINDS = (Audio, Text, Transcription, Message, Interruption)


def message_type(frame: LinkFrame) -> str:
    """``CallStart`` -> ``call_start``: the frame kind as the message's ``type``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(frame).__name__).lower()


def for_stock_pipecat(frame: LinkFrame) -> LinkFrame:
    """The frame as a stock pipecat peer can take it: pipecat's own kinds as they are, ours
    wrapped in a :class:`Message`."""
    if isinstance(frame, _PIPECAT_KINDS):
        return frame
    data = {f.name: getattr(frame, f.name) for f in dataclasses.fields(frame)}
    return Message({"label": LABEL, "type": message_type(frame), "data": data})


def split_agent_url(url: str) -> tuple[str, AgentProtocol]:
    """The URL to connect to (without our ``agent_protocol`` parameter, which is for us, not
    the peer) and the protocol it names (``callbridge`` when absent). ValueError on an unknown
    protocol or a repeated parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    named = [value for key, value in query if key == PROTOCOL_PARAM]
    if len(named) > 1:
        raise ValueError(f"{PROTOCOL_PARAM} given {len(named)} times in {url!r}")
    protocol = named[0] if named else "callbridge"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{PROTOCOL_PARAM}={protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    rest = urlencode([(key, value) for key, value in query if key != PROTOCOL_PARAM])
    return urlunsplit(parts._replace(query=rest)), protocol
