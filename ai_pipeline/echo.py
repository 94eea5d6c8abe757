"""The echo agent: the caller's own audio comes back as agent speech, over the real agent link.

Used by ``callbridge serve --agent echo``, tests and the capacity benchmark: it exercises every
part of the media core (decode, resample both ways, link, pacing) with no model in the way. DTMF is
echoed too (the media core plays it back as tones on legs without DTMF signalling).
"""

from __future__ import annotations

from ai_pipeline.link import AgentLink
from proto.messages import Audio, CallStart, Dtmf, Hangup, Text, Transcript


async def echo_call(start: CallStart, link: AgentLink) -> None:
    while True:
        frame = await link.recv()
        if isinstance(frame, Audio):
            await link.send(frame)
        elif isinstance(frame, Dtmf):
            await link.send(Transcript("caller", f"pressed {frame.digit}"))
            await link.send(frame)
        elif isinstance(frame, Text):  # "say this": an echo agent can only say that it would
            await link.send(Transcript("agent", frame.text))
        elif isinstance(frame, Hangup):
            return
