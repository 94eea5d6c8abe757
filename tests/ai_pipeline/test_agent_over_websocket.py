"""run_call behind the real agent-link server: protobuf frames over a loopback WebSocket.

The media core's side is played by a plain ``websockets`` client with ``proto.codec``, the same
encoding the core uses, so this checks the pipeline against the wire, not just the dataclasses.
"""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import connect

from ai_pipeline.engines.models import ModelStore
from ai_pipeline.pipeline import make_call_handler
from ai_pipeline.server import AgentServer
from proto.codec import decode, encode
from proto.messages import (
    Audio,
    CallStart,
    FunctionCall,
    FunctionCallResult,
    LinkFrame,
    Transcript,
)
from tests.ai_pipeline.memory_link import FRAME_BYTES, load_wav_pcm16, silence_ms


def test_transfer_over_the_agent_link_websocket(models: ModelStore) -> None:
    async def main() -> None:
        server = await AgentServer(make_call_handler(models, env={})).start("127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        received: list[LinkFrame] = []
        try:
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                await ws.send(encode(CallStart("ws-call", agent_config={"greeting": ""})))

                async def caller() -> None:
                    pcm16 = silence_ms(200) + load_wav_pcm16("transfer_sales.wav")
                    pcm16 += silence_ms(6000)
                    for i in range(0, len(pcm16), FRAME_BYTES):
                        chunk = pcm16[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")
                        await ws.send(encode(Audio(chunk, 16000)))
                        await asyncio.sleep(0.01)  # 2x real time

                feeding = asyncio.create_task(caller())
                async with asyncio.timeout(30):
                    async for message in ws:
                        assert isinstance(message, bytes)
                        frame = decode(message)
                        assert frame is not None
                        received.append(frame)
                        if isinstance(frame, FunctionCall):
                            result = FunctionCallResult(frame.tool_call_id, frame.name, "ok")
                            await ws.send(encode(result))
                        if isinstance(frame, Transcript) and frame.role == "agent":
                            break
                feeding.cancel()
        finally:
            server.close()
            await server.wait_closed()
        calls = [f for f in received if isinstance(f, FunctionCall)]
        assert [(c.name, c.arguments) for c in calls] == [
            ("transfer_call", {"department": "sales"})
        ]
        caller_text = [f.text for f in received if isinstance(f, Transcript) and f.role == "caller"]
        assert caller_text and "sales" in caller_text[0].lower()
        reply_audio = [f for f in received if isinstance(f, Audio)]
        assert reply_audio and all(a.sample_rate_hz == 16000 for a in reply_audio)

    asyncio.run(main())
