"""A stock pipecat bot as the agent: pipecat's own WebSocket server transport and
``ProtobufFrameSerializer``, nothing of ours on its side (``--agent ws://...?agent_protocol=pipecat``).

Its serializer knows pipecat's five frame kinds only; ours would make it log ``ERROR Unable to
deserialize a valid frame`` (call start and hangup, every call) and leave the bot blind to the
call. Sent as pipecat ``MessageFrame`` s instead, they reach its pipeline as transport messages.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InputTransportMessageFrame,
    OutputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.protobuf import ProtobufFrameSerializer
from pipecat.transports.websocket.server import (
    SingleClientWebsocketServerParams,
    SingleClientWebsocketServerTransport,
)
from pipecat.workers.runner import WorkerRunner

from media.config import ConfigError, MediaConfig
from proto import messages as m
from proto.codec import decode, encode
from proto.stock_pipecat import LABEL, for_stock_pipecat, message_type, split_agent_url
from sip.message import SipRequest
from tests.sip.nodes import start_node
from tests.sip.uac import Uac

RATE_HZ = 16_000


# ---- the dialect, frame by frame ---------------------------------------------------------------


def test_pipecats_own_kinds_pass_unchanged_and_ours_become_messages() -> None:
    for frame in (m.Audio(b"\x01\x00" * 320, RATE_HZ), m.Text("hi"), m.Interruption(),
                  m.Transcription("x"), m.Message({"a": 1})):  # fmt: skip
        assert for_stock_pipecat(frame) is frame
    start = m.CallStart("c1", "a1", {"prompt": "p"}, caller="+15550001", callee="+15550002")
    wrapped = for_stock_pipecat(start)
    assert isinstance(wrapped, m.Message)
    assert wrapped.data == {"label": LABEL, "type": "call_start", "data": {
        "call_id": "c1", "agent_id": "a1", "agent_config": {"prompt": "p"},
        "sample_rate_hz": 16000, "num_channels": 1, "leg": "", "caller": "+15550001",
        "callee": "+15550002", "customer_id": ""}}  # fmt: skip
    assert message_type(m.FunctionCallResult("t", "n", 1)) == "function_call_result"


@pytest.mark.parametrize(
    "frame",
    [m.CallStart("c1", agent_config={"k": [1, 2]}), m.Hangup("caller"), m.Dtmf("5", 100),
     m.Mark("m1"), m.FunctionCallResult("t1", "end_call", {"ok": True}), m.Error("x", "y")],
)  # fmt: skip
def test_every_one_of_our_frames_reaches_pipecat_as_a_transport_message(frame: m.LinkFrame) -> None:
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(str(message)), level="ERROR")
    try:
        got = asyncio.run(ProtobufFrameSerializer().deserialize(encode(for_stock_pipecat(frame))))
    finally:
        logger.remove(sink)
    assert errors == []
    assert isinstance(got, InputTransportMessageFrame)
    assert got.message["label"] == LABEL and got.message["type"] == message_type(frame)
    assert json.loads(json.dumps(got.message)) == decode(encode(for_stock_pipecat(frame))).data  # type: ignore[union-attr]


def test_the_agent_url_names_the_protocol_and_the_parameter_stays_here() -> None:
    assert split_agent_url("ws://127.0.0.1:8765") == ("ws://127.0.0.1:8765", "callbridge")
    assert split_agent_url("ws://h:1/bot?agent_protocol=pipecat&token=t") == (
        "ws://h:1/bot?token=t", "pipecat")  # fmt: skip
    for bad in (
        "ws://h:1/?agent_protocol=rtvi",
        "ws://h:1/?agent_protocol=pipecat&agent_protocol=pipecat",
    ):
        with pytest.raises(ValueError, match="agent_protocol"):
            split_agent_url(bad)


def test_serve_refuses_an_unknown_agent_protocol_at_start_up() -> None:
    with pytest.raises(ConfigError, match="agent_protocol='rtvi'"):
        MediaConfig(agent="ws://127.0.0.1:8765/?agent_protocol=rtvi")
    assert MediaConfig(agent="ws://127.0.0.1:8765/?agent_protocol=pipecat").agent_mode == "remote"


# ---- a whole call against pipecat's real transport ----------------------------------------------


@dataclass
class StockBot:
    """What the pipeline between pipecat's transport input and output saw."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_bytes: int = 0
    errors: list[str] = field(default_factory=list)  # pipecat's ERROR log lines
    disconnected: threading.Event = field(default_factory=threading.Event)


class _EchoAndRecord(FrameProcessor):  # type: ignore[misc]
    """A stock pipeline's own processor: records transport messages, echoes the caller."""

    def __init__(self, bot: StockBot) -> None:
        super().__init__()
        self._bot = bot

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputTransportMessageFrame):
            self._bot.messages.append(frame.message)
        if isinstance(frame, InputAudioRawFrame):
            self._bot.audio_bytes += len(frame.audio)
            echo = OutputAudioRawFrame(frame.audio, frame.sample_rate, frame.num_channels)
            await self.push_frame(echo, direction)
            return
        await self.push_frame(frame, direction)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stock_bot() -> Iterator[tuple[StockBot, int]]:
    """pipecat's WebsocketServerTransport (SingleClient..., its 1.x name) with its protobuf
    serializer, in a pipeline on an asyncio loop in a thread, as a pipecat user would run it."""
    bot, port = StockBot(), _free_tcp_port()
    sink = logger.add(lambda message: bot.errors.append(str(message)), level="ERROR")
    loop = asyncio.new_event_loop()
    state: dict[str, WorkerRunner] = {}

    async def main() -> None:
        params = SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=RATE_HZ,
            audio_out_sample_rate=RATE_HZ,
        )
        transport = SingleClientWebsocketServerTransport(params, host="127.0.0.1", port=port)

        @transport.event_handler("on_client_disconnected")  # type: ignore[misc]
        async def _gone(_transport: Any, _websocket: Any) -> None:
            bot.disconnected.set()

        pipeline = Pipeline([transport.input(), _EchoAndRecord(bot), transport.output()])
        rates = PipelineParams(audio_in_sample_rate=RATE_HZ, audio_out_sample_rate=RATE_HZ)
        worker = PipelineWorker(pipeline, params=rates)
        runner = WorkerRunner(handle_sigint=False)
        state["runner"] = runner
        await runner.add_workers(worker)
        await runner.run()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while True:  # a bare TCP connect is not a WebSocket client: it takes no call slot
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the pipecat bot did not start"
            time.sleep(0.1)
    try:
        yield bot, port
    finally:
        if "runner" in state:
            asyncio.run_coroutine_threadsafe(state["runner"].cancel(), loop).result(10)
        thread.join(10)
        logger.remove(sink)


@pytest.mark.slow
async def test_a_call_to_a_stock_pipecat_bot_logs_no_error_and_tells_it_the_call(
    nursery: trio.Nursery, stock_bot: tuple[StockBot, int]
) -> None:
    bot, port = stock_bot
    node = await start_node(nursery, f"ws://127.0.0.1:{port}/?agent_protocol=pipecat")
    uac = await Uac.open(node.port)
    assert (await uac.call()).status == 200
    async with trio.open_nursery() as inner:
        inner.start_soon(uac.play_fixture)
        with trio.fail_after(20):
            while uac.rtp_payload_types[0] < 50:  # the bot's echo, back over the link and RTP
                await uac.count_rtp(0.5)
        inner.cancel_scope.cancel()
    assert (await uac.in_dialog("BYE")).status == 200
    uac.close()
    with trio.fail_after(10):
        await node.hooks.ended.wait()
        while not bot.disconnected.is_set():
            await trio.sleep(0.05)

    assert bot.errors == []  # pipecat logged no ERROR for the whole call
    info = node.hooks.created[0]
    start, *_, end = bot.messages
    assert start["label"] == LABEL and start["type"] == "call_start"
    assert start["data"]["call_id"] == info.call_id
    assert start["data"]["caller"] == info.caller == "alice"
    assert start["data"]["agent_config"] == {"k": "v"}  # the control plane's config for it
    assert start["data"]["leg"] == "sip"
    assert end == {"label": LABEL, "type": "hangup", "data": {"reason": "sip bye"}}
    assert bot.audio_bytes > RATE_HZ * 2  # over a second of the caller at 16 kHz


@pytest.mark.slow
async def test_a_second_call_while_the_bot_has_one_ends_and_leaves_the_first_alone(
    nursery: trio.Nursery, stock_bot: tuple[StockBot, int]
) -> None:
    """pipecat's WebsocketServerTransport takes one client at a time and closes a second one
    with 1013: that call ends at once (refused with 480, or a BYE right after the 200 when the
    close comes after the handshake), the first one goes on hearing its bot."""
    bot, port = stock_bot
    node = await start_node(nursery, f"ws://127.0.0.1:{port}/?agent_protocol=pipecat")
    first = await Uac.open(node.port, call_id="first")
    assert (await first.call()).status == 200
    async with trio.open_nursery() as inner:
        inner.start_soon(first.play_fixture)
        with trio.fail_after(20):
            while first.rtp_payload_types[0] < 20:
                await first.count_rtp(0.5)
        second = await Uac.open(node.port, call_id="second")
        status = (await second.call()).status
        assert status in (200, 480)
        if status == 200:
            bye = await second.receive()
            assert isinstance(bye, SipRequest) and bye.method == "BYE"
        with trio.fail_after(10):
            while not node.hooks.hungup:
                await trio.sleep(0.05)
        second_id = node.hooks.created[1].call_id
        assert [h[:2] for h in node.hooks.hungup] == [(second_id, "error")]
        before = first.rtp_payload_types[0]
        with trio.fail_after(10):
            while first.rtp_payload_types[0] < before + 50:  # the first call still hears its bot
                await first.count_rtp(0.5)
        inner.cancel_scope.cancel()
    assert (await first.in_dialog("BYE")).status == 200
    first.close()
    second.close()
    assert bot.errors == []
