"""Calls through ARI against a real Asterisk: Stasis -> ExternalMedia -> our AudioSocket ->
the echo agent -> back to the caller, whose own side records what it heard.

Skips without Asterisk (fails with CI=true): ``bash ../shared/asterisk/build.sh`` installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.asterisk_instance import Asterisk, running_asterisk, write_wav
from tests.sip.ari_harness import (
    RATE_HZ,
    ari_bench,
    caller_dialplan,
    require_asterisk,
    rms,
    tone_level,
    tone_pcm16,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]
TONE_HZ = 700.0


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(TONE_HZ, 1.5))
    with running_asterisk(lambda root: caller_dialplan(root, wav)) as ast:
        yield ast


async def test_echo_agent_round_trip_through_stasis_and_external_media(
    asterisk: Asterisk, echo_agent: str
) -> None:
    async with ari_bench(asterisk, echo_agent) as bench:
        await bench.originate("talk")
        await bench.wait_ended()
        heard = await bench.heard("talk")
        await bench.wait_asterisk_idle()
    info = bench.hooks.created[0]
    assert info.leg == "asterisk"
    assert (info.caller, info.callee) == ("+15550001", "5551234")
    assert info.params["agent_id"] == "42"
    assert info.params["channel_vars"] == {"CB_LANG": "en"}
    channel_id, bridge_id = info.leg_ref.split("/")
    assert bridge_id.startswith("cbb-") and info.params["asterisk_channel"] == channel_id
    # The caller played 1.5 s of 700 Hz; what it heard back is that tone, from the agent.
    assert len(heard) >= RATE_HZ * 2 * 1.0
    assert rms(heard) > 1000, "the caller heard silence: no audio came back through Asterisk"
    assert tone_level(heard, TONE_HZ) > 0.8
    _, cause, reason = bench.hooks.hungup[0]
    assert cause == "caller" and "caller hung up" in reason


async def test_unknown_agent_is_hung_up_with_a_reason(asterisk: Asterisk, echo_agent: str) -> None:
    async with ari_bench(asterisk, echo_agent) as bench:
        await trio.to_thread.run_sync(
            asterisk.rx, "channel originate Local/hold@caller/n extension nobody@incoming"
        )
        with trio.fail_after(10):
            while not bench.hooks.created:
                await trio.sleep(0.05)
        await bench.wait_asterisk_idle()
    assert bench.hooks.created[0].params["agent_id"] == "no-such-agent"
    assert not bench.hooks.answered and not bench.env.registry


async def test_api_hangup_ends_the_call_in_asterisk(asterisk: Asterisk, echo_agent: str) -> None:
    async with ari_bench(asterisk, echo_agent) as bench:
        await bench.originate("hold")
        [call_id] = await bench.wait_running()
        assert len(asterisk.channels()) == 3  # Local ;1 and ;2, our ExternalMedia channel
        handle = bench.env.registry.get(call_id)
        assert handle is not None
        handle.hangup("api")
        await bench.wait_ended()
        await bench.wait_asterisk_idle()
    assert bench.hooks.hungup[0][1:] == ("api", "api")
