"""The ``hop`` bench's agent: speaks the agent link (``proto.codec``) over asyncio ``websockets``
like any agent, echoes audio straight back, and timestamps the caller's pulses on the way.

It echoes like a live stream, never ahead of real time: frames that reach it in a burst (the
caller's first frames, held in the kernel while the call was being set up, arrive together) are
echoed only as far as real time allows (:class:`LivePace`) and the rest dropped and counted
(``dropped_ahead``). Echoing a burst whole would leave that much audio queued for playout for
the rest of the call, and every later pulse would measure the queue ahead of it rather than the
media core.

For every call it records, with ``time.monotonic()`` (one clock for every process on the host),
when each pulse frame arrived from the media core and when its echo was handed back, and
the DTMF digits the caller sent first (its tag, :func:`bench.loadgen.dtmf_tag`: the media core
makes its own call ids, so the tag is how a record finds its caller). One JSON line per call
goes to ``--out`` when the call ends.

Run: ``python -m bench.hop_agent --port 8766 --out hop-agent.jsonl``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from bench.loadgen import is_pulse
from proto.codec import MAX_LINK_FRAME_BYTES, decode, encode
from proto.messages import Audio, CallStart, Dtmf, Hangup


class LivePace:
    """Echo like a live stream, at most half a frame ahead of real time (a virtual scheduler,
    as in ATM's GCRA): a frame that would put the echo further ahead came in a burst, and is
    dropped (a live source cannot have produced it yet; echoing it would only queue it for
    playout, and every later frame would wait behind it)."""

    def __init__(self) -> None:
        self._due = float("-inf")  # when the echo's next frame is due in real time

    def may_send(self, now: float, frame_s: float) -> bool:
        due = max(self._due, now)
        if due - now > frame_s / 2:
            return False
        self._due = due + frame_s
        return True


async def handle_call(ws: ServerConnection, out: Path) -> None:
    record: dict[str, Any] = {
        "call_id": None,
        "pulse_in": [],
        "pulse_out": [],
        "dwell_us": [],
        "dropped_ahead": 0,
    }
    in_pulse = False
    pace = LivePace()
    try:
        async for message in ws:
            arrived = time.monotonic()
            frame = decode(message if isinstance(message, bytes) else message.encode())
            if isinstance(frame, CallStart):
                record["call_id"] = frame.call_id
                record["caller"] = frame.caller
            elif isinstance(frame, Audio):
                loud = is_pulse(frame.pcm16)
                pulse_starts, in_pulse = loud and not in_pulse, loud
                if pulse_starts:
                    record["pulse_in"].append(arrived)
                if not pace.may_send(arrived, len(frame.pcm16) / 2 / frame.sample_rate_hz):
                    record["dropped_ahead"] += 1
                    continue
                await ws.send(encode(frame))
                sent = time.monotonic()
                record["dwell_us"].append(round((sent - arrived) * 1e6, 1))
                if pulse_starts:
                    record["pulse_out"].append(sent)
            elif isinstance(frame, Dtmf):  # the caller's tag (bench.loadgen.dtmf_tag)
                record["tag"] = record.get("tag", "") + frame.digit
            elif isinstance(frame, Hangup):
                break
    except ConnectionClosed:
        pass
    finally:
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")


async def main_async(host: str, port: int, out: Path) -> None:
    async def handler(ws: ServerConnection) -> None:
        await handle_call(ws, out)

    async with serve(handler, host, port, max_size=MAX_LINK_FRAME_BYTES, compression=None):
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    ns = parser.parse_args()
    asyncio.run(main_async(ns.host, ns.port, ns.out))


if __name__ == "__main__":
    main()
