""" "Put me through to sales" over AudioSocket, every part real: the offline agent (its own
process) hears the caller and calls ``transfer_call``; the real control plane (SQLite, events)
runs the tool: the agent's ``transfer_targets`` give the number, and the media core, an
AudioSocket leg having no REFER, places an outbound SIP call through the trunk (sipp, answering
and echoing RTP) and bridges it with the caller; before the caller moves, its agent says the
announcement ("Please hold while I connect you."), heard whole; the tool's result waits for the
answer, and the agent is then gone (a blind transfer). The caller talks to the far end: its own
tone comes back from sipp."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from control.config import ControlConfig
from control.db import DatabaseUrl
from control.hooks import ControlHooks
from control.plane import open_control_plane
from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferDesk
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from sip.config import SipConfig
from sip.outbound import SipOutbound
from sip.server import serve_sip
from tests.e2e.conftest import free_port
from tests.e2e.test_agent_call import (
    SPEECH_RMS,
    Caller,
    caller_utterance,
    heard_text,
    levels_dbfs,
    rms,
    whisper,
)
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import tone
from tests.media.tones import tone_db
from tests.sip.peers import sipp_uas

pytestmark = [pytest.mark.slow, pytest.mark.service]
__all__ = ["whisper"]  # the module-scoped fixture, shared

SALES = "+15550002"
TONE_HZ = 1000.0


@dataclass
class Stack:
    audiosocket_port: int
    hooks: ControlHooks
    customer_id: str
    trunk: Any  # the sipp UAS

    async def events(self, type_: str) -> list[dict[str, Any]]:
        return await self.hooks.store.find("events", customer_id=self.customer_id, type=type_)


@pytest.fixture
async def stack(nursery: trio.Nursery, offline_agent: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """``serve`` as it runs: control plane, AudioSocket and SIP sharing one env, the transfer
    desk dialling through the SIP listener to sipp."""
    async with sipp_uas(tmp_path, rtp_echo=True, timeout_s=90) as uas:
        cfg = ControlConfig(
            http=HostPort("127.0.0.1", free_port()),
            db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/transfer.db"),
            jwt_secret="s" * 32,
        )
        calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
        outbound = SipOutbound()
        async with open_control_plane(cfg, calls, metrics, nursery, sip=outbound) as hooks:
            (customer,) = await hooks.store.find("customers", name="default")
            # The bootstrap's default agent, with sales at a number behind the trunk.
            (agent,) = await hooks.store.find("agents", customer_id=customer["id"], is_default=1)
            detail = {**agent["detail"], "greeting": "Hello, how can I help?"}
            detail["transfer_targets"] = {"sales": SALES}
            await hooks.store.update("agents", agent["id"], customer["id"], {"detail": detail})
            media_cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=offline_agent)
            env = CallEnv(media_cfg, hooks, metrics, calls, TransferDesk(outbound))
            base = random.randrange(30_000, 39_000, 2)
            sip_cfg = SipConfig(
                listen=HostPort("127.0.0.1", 0),
                rtp_port_min=base,
                rtp_port_max=base + 198,
                outbound=HostPort("127.0.0.1", uas.port),
            )
            await nursery.start(serve_sip, env, sip_cfg, outbound)
            port = await nursery.start(serve_audiosocket, env)
            yield Stack(port, hooks, customer["id"], uas)


async def test_caller_asks_for_sales_and_talks_to_sales(stack: Stack, whisper: Any) -> None:
    caller = Caller(await AsteriskPeer.connect(stack.audiosocket_port))
    async with trio.open_nursery() as call:
        call.start_soon(caller.peer.read_until_closed)
        call.start_soon(caller.run)
        await caller.wait_until_quiet()  # the greeting
        greeting_frames = caller.heard()

        asked_at = trio.current_time()
        caller.say(caller_utterance("transfer_sales.wav"))
        await caller.speech_done.wait()
        spoke_at = trio.current_time()
        transferred: list[dict[str, Any]] = []

        async def transferred_event() -> bool:
            transferred[:] = await stack.events("call_transferred")
            return bool(transferred)

        with trio.fail_after(60):
            while not await transferred_event():
                await trio.sleep(0.1)
        bridged_at = trio.current_time()
        # On the far end's line now: the caller's tone comes back from sipp.
        caller.say(tone(TONE_HZ, 2.0))
        await caller.speech_done.wait()
        # The echo's tail comes back one round trip later (sipp, the bridge, both legs): up to
        # a few hundred ms on a loaded machine. The line must be quiet after that.
        await trio.sleep(1.5)
        talked_at = trio.current_time()
        await caller.peer.close()
        with trio.fail_after(15):
            while len(await stack.events("call_hungup")) < 2:
                await trio.sleep(0.1)
        call.cancel_scope.cancel()

    # The greeting was heard, as speech, at the agent's configured level (piper's own is
    # ~-18 dBFS and peaks at full scale, clipping), under the -3 dBFS ceiling.
    greeting = b"".join(f.payload for f in greeting_frames)
    assert len(greeting_frames) * 20 > 800 and rms(greeting) > SPEECH_RMS
    assert "help" in heard_text(whisper, greeting_frames).lower()
    level, peak = levels_dbfs(greeting)
    assert level == pytest.approx(-20, abs=2.5) and peak < -2.5
    caller_said = await stack.hooks.store.find("transcripts", role="caller")
    assert any("sales" in row["text"].lower() for row in caller_said)
    # The agent understood, answered, and ran the real tool: the number from transfer_targets.
    (tool,) = [e["data"] for e in await stack.events("tool_called")]
    assert (tool["name"], tool["arguments"]) == ("transfer_call", {"department": "sales"})
    assert tool["is_error"] is False
    assert transferred[0]["data"] == {"target": SALES, "status": "answered"}
    # Before the ringback and the far end, the agent's announcement, in its voice. (It may
    # start before the caller's phrase is over: "Transfer me to sales." is a complete sentence,
    # answered in the pause before "please", which is a courtesy tail that does not cut it.)
    announced = heard_text(whisper, caller.heard(after=asked_at, before=bridged_at)).lower()
    assert "hold" in announced and "connect" in announced, announced  # Whisper: "connect to you"
    # The far end: the caller hears itself back (sipp's echo through bridge, SIP leg, RTP)...
    far = b"".join(f.payload for f in caller.heard(after=bridged_at + 0.3, before=talked_at))
    assert tone_db(far, TONE_HZ) > -16
    # ...and no more agent: once the caller is silent, so is the line (sipp echoes silence).
    quiet = caller.heard(after=talked_at - 0.5, before=talked_at)
    assert quiet and rms(b"".join(f.payload for f in quiet)) < SPEECH_RMS
    # The story in events: the caller's call and the callee's, both over.
    hungup = await stack.events("call_hungup")
    created = await stack.events("call_created")
    assert len(created) == 2 and len(hungup) == 2
    callee = [e["data"] for e in created if e["data"]["direction"] == "outgoing"]
    assert callee and callee[0]["destination"] == SALES
    run = stack.trunk.result()
    assert f"INVITE sip:{SALES}@127.0.0.1" in run.messages
    assert asked_at < spoke_at < bridged_at
