"""Calls through ARI against a real Asterisk: Stasis -> ExternalMedia -> our AudioSocket ->
the echo agent -> back to the caller, whose own side records what it heard.

Skips without Asterisk (fails with CI=true): ``bash ../shared/asterisk/build.sh`` installs it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from media.bridge_transfer import TransferOutcome
from media.hooks import CallHandle
from proto.messages import CallStart
from sip.ari.requests import AriRequest
from sip.outbound import OriginateRefused
from tests.asterisk_instance import Asterisk, read_wav, running_asterisk, write_wav
from tests.media.conftest import agent_in_thread
from tests.sip.ari_harness import (
    RATE_HZ,
    SAID_HZ,
    SAID_S,
    Bench,
    active_seconds,
    ari_bench,
    caller_dialplan,
    dtmf_agent,
    first_second_of,
    greeting_agent,
    recording_echo,
    require_asterisk,
    retrying_transfer_agent,
    rms,
    seconds_of,
    target_dialplan,
    tone_level,
    tone_pcm16,
    tool_agent,
    transfer_agent,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]
TONE_HZ = 700.0


TARGET_HZ = 1000.0


@pytest.fixture
def asterisk(tmp_path: Path) -> Iterator[Asterisk]:
    require_asterisk()
    wav = write_wav(tmp_path / "tone.wav", tone_pcm16(TONE_HZ, 1.5))
    long_wav = write_wav(tmp_path / "long.wav", tone_pcm16(TONE_HZ, 4.0))
    target_wav = write_wav(tmp_path / "target.wav", tone_pcm16(TARGET_HZ, 1.5))

    def dialplan(root: Path) -> str:
        return caller_dialplan(root, wav, long_wav) + target_dialplan(root, target_wav)

    with running_asterisk(dialplan) as ast:
        yield ast


async def test_echo_agent_round_trip_through_stasis_and_external_media(
    asterisk: Asterisk,
) -> None:
    starts: list[CallStart] = []
    with agent_in_thread(recording_echo(starts)) as url:
        async with ari_bench(asterisk, url) as bench:
            await bench.originate("talk")
            await bench.wait_ended()
            heard = await bench.heard("talk")
            await bench.wait_asterisk_idle()
            assert bench.counter("callbridge_ari_connected") == 1
            assert bench.counter("callbridge_ari_setups_total", outcome="started") == 1
    [start] = starts  # what the agent was told: caller id, DNIS, channel variables
    assert (start.leg, start.caller, start.callee) == ("asterisk", "+15550001", "5551234")
    assert start.agent_config["channel_vars"] == {"CB_LANG": "en"}
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


async def test_hangup_causes_both_ways(asterisk: Asterisk, echo_agent: str) -> None:
    """A caller that hangs up busy: the call's hangup reason (so its call_hungup event) says
    so, in ARI's words and Q.850's code. A call that callbridge ends is hung up in Asterisk
    with the cause for why: a disabled customer's call is rejected (21), an API hangup is a
    normal clearing (16)."""
    async with ari_bench(asterisk, echo_agent) as bench:
        await bench.originate("busy")
        await bench.wait_ended()
        causes = []
        for reason in ("customer_disabled", "api"):
            await bench.originate("hold")
            handle = await _next_call(bench)
            handle.hangup(reason)
            await bench.wait_ended(len(bench.hooks.hungup) + 1)
            await bench.wait_asterisk_idle()
            causes.append(asterisk.ari("GET", "/asterisk/variable", variable="CAUSE")["value"])
    assert bench.hooks.hungup[0][1:] == ("caller", "caller hung up: busy (Q.850 17)")
    assert causes == ["21", "16"]


async def _next_call(bench: Bench) -> CallHandle:
    """The newest call, once the media core runs it."""
    with trio.fail_after(10):
        while True:
            calls = [bench.env.registry.get(info.call_id) for info in bench.hooks.created]
            if calls and calls[-1] is not None and len(calls) > len(bench.hooks.hungup):
                return calls[-1]
            await trio.sleep(0.05)


async def test_dtmf_both_ways(asterisk: Asterisk) -> None:
    """The caller's key reaches the agent (over the ExternalMedia AudioSocket); the agent's
    answer, another key, reaches the caller through ARI. One key press is one event: the
    media core's ``dtmf_received``; ARI, which sees the key too, does not report it again."""
    with agent_in_thread(dtmf_agent) as url:
        async with ari_bench(asterisk, url) as bench:
            await bench.originate("dtmf")
            await bench.wait_ended()
            await bench.wait_asterisk_idle()
    assert ("caller", "pressed 5") in [t[1:] for t in bench.hooks.transcripts]
    heard = asterisk.ari("GET", "/asterisk/variable", variable="HEARD")
    assert heard["value"] == "7"
    [call_id] = [info.call_id for info in bench.hooks.created]
    assert bench.hooks.digits == [(call_id, "5")]
    assert not [e for e in bench.hooks.events if e[1] == "dtmf_received"], "reported twice"


async def test_agent_transfer_leaves_the_caller_bridged_with_the_target(
    asterisk: Asterisk,
) -> None:
    """The agent's transfer_call: Asterisk dials the target into the caller's bridge, the
    agent's ExternalMedia channel leaves, and the caller hears the target's tone, not the
    agent's echo of its own tone."""
    with agent_in_thread(transfer_agent("300")) as url:
        dial = "Local/{target}@targets/n"
        async with ari_bench(asterisk, url, transfer_dial=dial) as bench:
            await bench.originate("long")
            await bench.wait_ended()
            channels = [c["id"] for c in asterisk.channels()]
            [bridge] = asterisk.ari("GET", "/bridges")
            await bench.wait_asterisk_idle(timeout_s=20)
            heard = await bench.heard("long")
    assert bench.hooks.hungup[0][1:] == ("agent", "transferred to 300")
    assert bench.hooks.tools == [("transfer_call", {"target": "300"})]
    assert not [c for c in channels if c.startswith("cbm-")], "the agent's media stayed"
    caller = bench.hooks.created[0].params["asterisk_channel"]
    [target] = [c for c in bridge["channels"] if c != caller]
    assert target.startswith("cbt-") and target in channels
    assert bench.hooks.transfer_outcomes == [TransferOutcome("answered")]
    # The target played 2 x 1.5 s of 1000 Hz; the caller's 4 s of 700 Hz was echoed only
    # until the transfer was asked (after 0.5 s of it); the agent's announcement came first.
    assert seconds_of(heard, TARGET_HZ) >= 2.0
    assert seconds_of(heard, TONE_HZ) <= 2.0
    assert told_before_moved(heard)


def told_before_moved(heard: bytes) -> bool:
    """The caller heard the agent's announcement, whole, and the target only after it."""
    said = seconds_of(heard, SAID_HZ)
    assert said >= SAID_S - 0.2, f"announcement heard for {said} s"
    return first_second_of(heard, SAID_HZ) + said <= first_second_of(heard, TARGET_HZ) + 0.1


async def test_transfer_by_continue_into_the_dialplan(asterisk: Asterisk) -> None:
    """Without a dial string the caller leaves Stasis for TARGET@context: the dialplan plays
    the target's tone to the caller, and our bridge and media channel are gone."""
    with agent_in_thread(transfer_agent("300")) as url:
        async with ari_bench(asterisk, url, transfer_context="targets") as bench:
            await bench.originate("long")
            await bench.wait_ended()
            await trio.sleep(0.5)
            channels = [c["id"] for c in asterisk.channels()]
            bridges = asterisk.ari("GET", "/bridges")
            await bench.wait_asterisk_idle(timeout_s=20)
            heard = await bench.heard("long")
    assert bench.hooks.hungup[0][1:] == ("agent", "transferred to 300")
    assert bridges == [] and not [c for c in channels if c.startswith("cbm-")]
    assert seconds_of(heard, TARGET_HZ) >= 2.0
    assert seconds_of(heard, TONE_HZ) <= 2.0
    assert told_before_moved(heard)


async def test_warm_transfer_keeps_the_agent_until_it_leaves(asterisk: Asterisk) -> None:
    with agent_in_thread(transfer_agent("300")) as url:
        dial = "Local/{target}@targets/n"
        async with ari_bench(asterisk, url, transfer_dial=dial, transfer_mode="warm") as bench:
            await bench.originate("long")
            with trio.fail_after(10):
                while not bench.hooks.transfer_outcomes:
                    await trio.sleep(0.05)
            [call_id] = [c.call_id for c in bench.env.registry]
            [bridge] = asterisk.ari("GET", "/bridges")
            handle = bench.env.registry.get(call_id)
            assert handle is not None
            handle.hangup_after_playout("introduced")  # the agent's end_call
            await bench.wait_ended()
            [after] = asterisk.ari("GET", "/bridges")
            await bench.wait_asterisk_idle(timeout_s=20)
    assert len(bridge["channels"]) == 3  # caller, target and the agent introducing them
    assert len(after["channels"]) == 2 and not [c for c in after["channels"] if "cbm-" in c]
    assert bench.hooks.hungup[0][1:] == ("agent", "introduced")


async def test_failed_transfer_leaves_the_caller_with_the_agent(asterisk: Asterisk) -> None:
    """A busy target: the agent's tool gets the failure and the caller stays with the agent,
    which can try another target, and that one takes the call."""
    with agent_in_thread(retrying_transfer_agent("486", "300")) as url:
        dial = "Local/{target}@targets/n"
        async with ari_bench(asterisk, url, transfer_dial=dial) as bench:
            await bench.originate("long")
            # (No look at the call between the two transfers: over kept-alive ARI connections
            # the retry can be done within one poll. The second transfer is the proof that the
            # first one's failure left the call up, with its agent.)
            await bench.wait_ended(timeout_s=20)
            await bench.wait_asterisk_idle(timeout_s=20)
            heard = await bench.heard("long")
    failed, answered = bench.hooks.transfer_outcomes
    # The agent's tool result says why (Local channels carry no busy cause to the originated
    # side: Asterisk reports cause 0).
    assert failed.status == "failed" and "hung up before answering" in failed.detail
    assert answered == TransferOutcome("answered")
    assert bench.hooks.hungup[0][1:] == ("agent", "transferred to 300")
    assert seconds_of(heard, TARGET_HZ) >= 2.0


async def test_outbound_call_placed_through_asterisk(asterisk: Asterisk, echo_agent: str) -> None:
    """POST /v1.0/calls with leg asterisk: Asterisk dials, the answer enters our app, the
    agent talks to the callee; a busy callee is a refusal with a reason."""
    dial = "Local/{destination}@callees/n"
    async with ari_bench(asterisk, echo_agent, outbound_dial=dial) as bench:
        params = {"agent_id": "42", "customer_id": "c1"}
        call_id = await bench.app.outbound.originate("+15550001", "+15559999", params)
        assert bench.env.registry.get(call_id) is not None
        await bench.wait_ended()
        await bench.wait_asterisk_idle()
        heard = await bench.heard("callee")
        with pytest.raises(OriginateRefused) as refused:
            await bench.app.outbound.originate("+15550001", "+15550486", params)
        await bench.wait_asterisk_idle()
    info = bench.hooks.created[0]
    assert info.call_id == call_id and info.leg == "asterisk"
    assert (info.caller, info.callee) == ("+15550001", "+15559999")
    assert info.params["direction"] == "outgoing" and info.params["agent_id"] == "42"
    assert seconds_of(heard, TARGET_HZ) >= 1.0  # the callee's own tone, echoed by the agent
    assert refused.value.code == "call_refused" and len(bench.hooks.created) == 1


async def test_agent_end_call_hangs_up_the_caller_through_ari(asterisk: Asterisk) -> None:
    with agent_in_thread(tool_agent("end_call", {"reason": "done"})) as url:
        async with ari_bench(asterisk, url) as bench:
            await bench.originate("long")
            await bench.wait_ended()
            await bench.wait_asterisk_idle()  # the caller was hung up, long before its 12 s
    assert bench.hooks.hungup[0][1:] == ("agent", "goodbye")
    assert bench.hooks.tools == [("end_call", {"reason": "done"})]


STASIS_WAIT_MS = 200  # res_stasis.c MAX_WAIT_MS: stasis_app_exec's wait on a channel not bridged
SYSCALLS = {"x86_64": (7, 234)}  # poll's and tgkill's numbers (elsewhere Asterisk uses ppoll)


def interrupt_stasis_waits(pid: int) -> int:
    """SIGURG (Asterisk handles it, doing nothing: its way to wake a thread) to every thread of
    Asterisk ``pid`` that sits in stasis_app_exec's poll of a channel not in a bridge; returns
    how many. The interrupted wait reads the channel whether or not it has anything."""
    machine = platform.machine()
    if machine not in SYSCALLS:
        pytest.skip(f"thread-directed signals are wired for x86_64 here, not {machine}")
    poll, tgkill = SYSCALLS[machine]
    libc = ctypes.CDLL(None, use_errno=True)
    hit = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/syscall").read_text().split()
        except OSError:
            continue  # the thread ended
        if len(fields) > 3 and fields[0] == str(poll) and int(fields[3], 16) == STASIS_WAIT_MS:
            libc.syscall(tgkill, pid, int(tid), signal.SIGURG)
            hit += 1
    return hit


async def test_a_stasis_read_before_the_bridge_does_not_hold_the_external_media_channel(
    asterisk: Asterisk, echo_agent: str
) -> None:
    """Stasis can read our ExternalMedia channel when nothing is there (its wait woke for
    another reason: a command's frame taken by the bridge thread the command started, a
    signal); chan_audiosocket's read then polls until our next byte, holding the channel's
    lock, so the channel can be neither bridged nor written and later channel allocations queue
    behind it (the ten-concurrent-calls stall). Made certain here: just before our channel is
    added to the caller's bridge, the Stasis waits are interrupted, so its Stasis thread reads
    an idle socket. The echo agent says nothing until it hears the caller: only our side's
    keep-alive silence frees that read, and the call must still be set up and echo."""
    assert asterisk.proc is not None
    pid = asterisk.proc.pid
    interrupted: list[int] = []
    async with ari_bench(asterisk, echo_agent) as bench:
        call = bench.app.client.call

        async def interrupting(req: AriRequest) -> Any:
            if req.path.endswith("/addChannel"):
                for _ in range(20):  # (a thread between two waits is missed: try again)
                    interrupted.append(interrupt_stasis_waits(pid))
                    await trio.sleep(0.05)
            return await call(req)

        bench.app.client.call = interrupting  # type: ignore[method-assign]
        await bench.originate("talk")
        await bench.wait_ended()
        heard = await bench.heard("talk")
        await bench.wait_asterisk_idle()
    assert sum(interrupted) > 0, "no Stasis wait was found to interrupt"
    assert bench.counter("callbridge_ari_setups_total", outcome="started") == 1
    assert rms(heard) > 1000, "the caller heard silence: the set-up stalled"
    assert tone_level(heard, TONE_HZ) > 0.8


async def test_concurrent_stasis_calls_each_get_their_own_echo(
    asterisk: Asterisk, echo_agent: str, tmp_path: Path
) -> None:
    """Ten callers at once, each with its own tone: set-ups overlap, every caller gets its own
    agent and hears its own tone back, nobody else's; Asterisk is left clean."""
    tones_hz = {f"p-{n:02d}": 400.0 + 100 * n for n in range(10)}
    for ext, hz in tones_hz.items():
        write_wav(tmp_path / f"{ext}.wav", tone_pcm16(hz, 3.0))
    async with ari_bench(asterisk, echo_agent) as bench:
        async with trio.open_nursery() as nursery:
            for n, ext in enumerate(tones_hz):
                nursery.start_soon(bench.originate, ext, f"55510{n:02d}")
        await bench.wait_ended(len(tones_hz), timeout_s=40)
        await bench.wait_asterisk_idle(timeout_s=10)
        await trio.sleep(0.5)  # MixMonitor closes its files once the channels are gone
    for ext, hz in tones_hz.items():
        heard, _ = read_wav(asterisk.root / f"{ext}-heard.wav")
        # (A tone played before its caller is bridged is lost: set-ups of ten at once took up
        # to 2.3 s on this loaded 2-core machine, hence the callers' 4 s wait.)
        assert seconds_of(heard, hz) >= 1.0, ext
        others = [tone_level(heard, f) for f in tones_hz.values() if f != hz]
        assert max(others) < 0.02, f"{ext} heard another caller"
    assert all(cause == "caller" for _, cause, _ in bench.hooks.hungup)


async def test_the_agents_greeting_is_heard_whole(asterisk: Asterisk) -> None:
    """The agent speaks the moment its call starts, which can be before Asterisk has put our
    ExternalMedia channel in the caller's bridge: none of the greeting may be lost."""
    greeting = tone_pcm16(TARGET_HZ, 1.0, rate_hz=16000)
    with agent_in_thread(greeting_agent(greeting)) as url:
        async with ari_bench(asterisk, url) as bench:
            await bench.originate("greet")
            await bench.wait_ended()
            await bench.wait_asterisk_idle()
            heard = await bench.heard("greet")
    assert tone_level(heard, TARGET_HZ) > 0.9  # the greeting and nothing else
    assert active_seconds(heard) >= 0.98, "part of the greeting was lost"


async def test_a_ringing_caller_is_answered_once_the_agent_can_be_heard(
    asterisk: Asterisk,
) -> None:
    """A caller that dials into the app enters Stasis unanswered: it rings while its call is
    set up and is answered only once our ExternalMedia channel is connected and in its bridge,
    so what it hears from its answer on is the agent's greeting, whole, not dead air."""
    greeting = tone_pcm16(TARGET_HZ, 1.0, rate_hz=16000)
    asked: list[str] = []
    with agent_in_thread(greeting_agent(greeting)) as url:
        async with ari_bench(asterisk, url) as bench:
            call = bench.app.client.call

            async def spy(req: AriRequest) -> Any:
                asked.append(f"{req.method} {req.path}")
                return await call(req)

            bench.app.client.call = spy  # type: ignore[method-assign]
            originate = "channel originate Local/ring@caller/n application Wait 10"
            await trio.to_thread.run_sync(asterisk.rx, originate)
            await bench.wait_ended()
            await bench.wait_asterisk_idle()
            heard = await bench.heard("ring")
    last = [a.rsplit("/", 1)[-1] for a in asked]
    assert last.index("ring") < last.index("addChannel") < last.index("answer"), asked
    assert bench.hooks.answered and bench.hooks.hungup[0][1] == "caller"
    assert tone_level(heard[: RATE_HZ * 2], TARGET_HZ) > 0.9  # its first second: the greeting
    assert active_seconds(heard) >= 0.98, "part of the greeting was lost"
