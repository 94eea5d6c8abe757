"""The media core and the ARI app against a private real Asterisk, for tests/sip/test_ari_*.py.

Callers are Local channels: ``channel originate Local/EXT@caller/n extension DNIS@incoming``
makes ``;1`` run ``DNIS@incoming`` (which enters ``Stasis(callbridge,...)``) and ``;2`` run
``EXT@caller``: the caller's own side, which plays a WAV we wrote and records with MixMonitor
what it heard (``r()``) and what it said (``t()``). No SIP, no sound packs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import trio

from ai_pipeline.echo import echo_call
from ai_pipeline.link import AgentLink, CallHandler
from media.audiosocket_server import serve_audiosocket
from media.bridge_transfer import TransferOutcome
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.hooks import AgentAssignment, CallHandle, CallInfo, CallRejected, ToolOutcome
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from proto.messages import (
    Audio,
    CallStart,
    Dtmf,
    FunctionCall,
    FunctionCallResult,
    Hangup,
    Text,
    Transcript,
)
from sip.ari.app import AriApp
from sip.ari.client import AriClient
from sip.ari.config import AriConfig
from sip.ari.metrics import AriMetrics
from tests.asterisk_instance import ARI_APP, ARI_PASSWORD, ARI_USER, Asterisk, read_wav
from tests.conftest import require_service
from tests.media.conftest import RecordingHooks

RATE_HZ = 8000
UNKNOWN_AGENT = "no-such-agent"


def require_asterisk() -> None:
    from tests.asterisk_instance import asterisk_binary

    if asterisk_binary() is None:
        require_service("asterisk", "not installed: run bash ../shared/asterisk/build.sh")


def tone_pcm16(freq_hz: float, seconds: float, rate_hz: int = RATE_HZ) -> bytes:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2").tobytes()


def tone_level(pcm16: bytes, freq_hz: float, rate_hz: int = RATE_HZ) -> float:
    """The fraction of the signal's energy within 30 Hz of ``freq_hz`` (0..1)."""
    x = np.frombuffer(pcm16, "<i2").astype(np.float64)
    if len(x) < rate_hz // 10:
        return 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate_hz)
    total = power.sum()
    return float(power[np.abs(freqs - freq_hz) < 30].sum() / total) if total else 0.0


def seconds_of(pcm16: bytes, freq_hz: float, rate_hz: int = RATE_HZ) -> float:
    """How long ``freq_hz`` dominates the audio, counted in 100 ms blocks."""
    block = rate_hz // 10 * 2
    blocks = [pcm16[i : i + block] for i in range(0, len(pcm16) - block + 1, block)]
    return sum(1 for b in blocks if rms(b) > 300 and tone_level(b, freq_hz) > 0.5) / 10


def first_second_of(pcm16: bytes, freq_hz: float, rate_hz: int = RATE_HZ) -> float:
    """When ``freq_hz`` first dominates a 100 ms block of the audio (inf: never)."""
    block = rate_hz // 10 * 2
    for n, i in enumerate(range(0, len(pcm16) - block + 1, block)):
        b = pcm16[i : i + block]
        if rms(b) > 300 and tone_level(b, freq_hz) > 0.5:
            return n / 10
    return float("inf")


def active_seconds(pcm16: bytes, rate_hz: int = RATE_HZ) -> float:
    """How long the audio is not silent, counted in 10 ms windows."""
    window = rate_hz // 100 * 2
    return sum(1 for i in range(0, len(pcm16), window) if rms(pcm16[i : i + window]) > 1000) / 100


def rms(pcm16: bytes) -> float:
    x = np.frombuffer(pcm16, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def tool_agent(tool: str, arguments: dict[str, Any], after_frames: int = 25) -> CallHandler:
    """An echo agent that calls ``tool`` after ``after_frames`` frames of the caller's audio
    (as an LLM would once it understood what the caller wants)."""

    async def run(start: CallStart, link: AgentLink) -> None:
        frames = 0
        while True:
            frame = await link.recv()
            if isinstance(frame, Audio):
                await link.send(frame)
                frames += 1
                if frames == after_frames:
                    await link.send(FunctionCall("t1", tool, arguments))
            elif isinstance(frame, Hangup):
                return

    return run


SAID_HZ = 500.0  # what the transfer agent "says" when it is sent a text (its announcement)
SAID_S = 0.6


def transfer_agent(target: str, after_frames: int = 25) -> CallHandler:
    """An echo agent that asks for a transfer to ``target`` after ``after_frames`` frames and
    then, as an LLM's turn ends with its tool call, stops echoing; a text it is sent (the
    transfer's announcement, a warm transfer's introduction) it "says" as :data:`SAID_S` of
    :data:`SAID_HZ`, in one burst as a TTS would."""

    async def run(start: CallStart, link: AgentLink) -> None:
        frames = 0
        while True:
            frame = await link.recv()
            if isinstance(frame, Audio) and frames < after_frames:
                await link.send(frame)
                frames += 1
                if frames == after_frames:
                    await link.send(FunctionCall("t1", "transfer_call", {"target": target}))
            elif isinstance(frame, Text):
                said = tone_pcm16(SAID_HZ, SAID_S, start.sample_rate_hz)
                step = start.sample_rate_hz // 50 * 2  # 20 ms
                for i in range(0, len(said), step):
                    await link.send(Audio(said[i : i + step], start.sample_rate_hz))
            elif isinstance(frame, Hangup):
                return

    return run


def retrying_transfer_agent(first: str, then: str) -> CallHandler:
    """Transfers to ``first``; told it failed, transfers to ``then`` (as an LLM would offer
    another department)."""

    async def run(start: CallStart, link: AgentLink) -> None:
        frames = 0
        while True:
            frame = await link.recv()
            if isinstance(frame, Audio):
                await link.send(frame)
                frames += 1
                if frames == 25:
                    await link.send(FunctionCall("t1", "transfer_call", {"target": first}))
            elif isinstance(frame, FunctionCallResult) and frame.is_error:
                await link.send(FunctionCall("t2", "transfer_call", {"target": then}))
            elif isinstance(frame, Hangup):
                return

    return run


def recording_echo(starts: list[CallStart]) -> CallHandler:
    """The echo agent, keeping each call's start (what the agent was told about the call)."""

    async def run(start: CallStart, link: AgentLink) -> None:
        starts.append(start)
        await echo_call(start, link)

    return run


def greeting_agent(greeting_pcm16_16k: bytes) -> CallHandler:
    """Says its greeting (16 kHz PCM) the moment the call starts, as agents do, then echoes."""

    async def run(start: CallStart, link: AgentLink) -> None:
        await link.send(Audio(greeting_pcm16_16k, 16000))
        await echo_call(start, link)

    return run


async def dtmf_agent(start: CallStart, link: AgentLink) -> None:
    """Answers a key press with key 7, half a second later (SendDTMF on the caller's side
    swallows what arrives while it still plays its own digit)."""
    while True:
        frame = await link.recv()
        if isinstance(frame, Dtmf):
            await link.send(Transcript("caller", f"pressed {frame.digit}"))
            await asyncio.sleep(0.5)
            await link.send(Dtmf("7"))
        elif isinstance(frame, Hangup):
            return


class AriTestHooks(RecordingHooks):
    """Records like RecordingHooks; refuses the agent :data:`UNKNOWN_AGENT` as the control
    plane refuses an agent it does not have; collects ARI's call events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.transfer_outcomes: list[TransferOutcome] = []

    async def call_created(self, info: CallInfo) -> AgentAssignment:
        if info.params.get("agent_id") == UNKNOWN_AGENT:
            self.created.append(info)
            raise CallRejected(f"no agent {UNKNOWN_AGENT}")
        return await super().call_created(info)

    async def execute_tool(
        self, call: CallHandle, name: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        """As the control plane's tools do: ``transfer_call`` asks the call to transfer and
        answers the agent with the outcome."""
        if name == "transfer_call":
            self.tools.append((name, arguments))
            call.transfer(str(arguments["target"]))
            outcome = await call.transfer_outcome()
            self.transfer_outcomes.append(outcome)
            return ToolOutcome({"status": outcome.status}, is_error=outcome.status == "failed")
        return await super().execute_tool(call, name, arguments)

    async def call_event(self, call_id: str, event_type: str, data: dict[str, Any]) -> None:
        self.events.append((call_id, event_type, data))


@dataclass
class Bench:
    asterisk: Asterisk
    app: AriApp
    env: CallEnv
    hooks: AriTestHooks
    audiosocket_port: int

    def counter(self, name: str, **labels: str) -> float:
        value = self.env.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def originate(self, ext: str, dnis: str = "5551234") -> None:
        await trio.to_thread.run_sync(
            self.asterisk.rx, f"channel originate Local/{ext}@caller/n extension {dnis}@incoming"
        )

    async def wait_ended(self, calls: int = 1, timeout_s: float = 20.0) -> None:
        with trio.move_on_after(timeout_s):
            while len(self.hooks.hungup) < calls:
                await trio.sleep(0.05)
            return
        ended = len(self.hooks.hungup)
        raise AssertionError(
            f"{ended} of {calls} calls ended; Asterisk: {self.asterisk.log_tail()}"
        )

    async def wait_running(self, calls: int = 1, timeout_s: float = 10.0) -> list[str]:
        with trio.fail_after(timeout_s):
            while len(self.env.registry) < calls:
                await trio.sleep(0.05)
        return [c.call_id for c in self.env.registry]

    async def wait_bridged(self, calls: int = 1, timeout_s: float = 10.0) -> None:
        """Set-up is over: ``calls`` agents' ExternalMedia channels are in their bridges."""
        with trio.fail_after(timeout_s):
            while (
                sum(e[1] == "bridge_joined" and e[2]["role"] == "agent" for e in self.hooks.events)
                < calls
            ):
                await trio.sleep(0.05)

    async def wait_asterisk_idle(self, timeout_s: float = 5.0) -> None:
        """No channel and no bridge left in Asterisk: everything was cleaned up."""
        with trio.fail_after(timeout_s):
            while True:
                chans = await trio.to_thread.run_sync(self.asterisk.ari, "GET", "/channels")
                bridges = await trio.to_thread.run_sync(self.asterisk.ari, "GET", "/bridges")
                if not chans and not bridges:
                    return
                await trio.sleep(0.1)

    async def heard(self, name: str, timeout_s: float = 5.0) -> bytes:
        """What the caller whose MixMonitor wrote ``<name>-heard.wav`` heard (8 kHz)."""
        path = self.asterisk.root / f"{name}-heard.wav"
        with trio.fail_after(timeout_s):
            while not path.exists():
                await trio.sleep(0.05)
            await trio.sleep(0.3)  # MixMonitor closes the file once the channel is gone
        pcm16, rate_hz = read_wav(path)
        assert rate_hz == RATE_HZ
        return pcm16


def ari_config(asterisk: Asterisk, audiosocket_port: int, **overrides: Any) -> AriConfig:
    return replace(
        AriConfig(
            url=f"{asterisk.base_url}/ari",
            user=ARI_USER,
            password=ARI_PASSWORD,
            app=ARI_APP,
            media_host=HostPort("127.0.0.1", audiosocket_port),
            setup_timeout_s=10.0,
            ring_timeout_s=10,
        ),
        **overrides,
    )


@asynccontextmanager
async def ari_bench(
    asterisk: Asterisk, agent_url: str, **ari_overrides: Any
) -> AsyncIterator[Bench]:
    """Media core (AudioSocket on a free port) + the ARI app, in a nursery of their own."""
    hooks = AriTestHooks()
    cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
    env = CallEnv(config=cfg, hooks=hooks, metrics=MediaMetrics(), registry=CallRegistry())
    async with trio.open_nursery() as nursery:
        app_holder: list[AriApp] = []

        class Claims:
            def claim(self, *args: Any) -> Any:
                return app_holder[0].claim(*args) if app_holder else None

        port = await nursery.start(serve_audiosocket, env, Claims())
        ari_cfg = ari_config(asterisk, port, **ari_overrides)
        client = AriClient(ari_cfg.url, ari_cfg.user, ari_cfg.password, ari_cfg.app)
        app = AriApp(ari_cfg, client, hooks, AriMetrics(env.metrics.registry))
        app_holder.append(app)
        await nursery.start(app.run, env.registry, cfg.max_calls)
        yield Bench(asterisk, app, env, hooks, port)
        nursery.cancel_scope.cancel()


def caller_dialplan(
    root: Path, wav: Path, long_wav: Path | None = None, agent: str = "42", extra: str = ""
) -> str:
    """``talk``: the caller plays ``wav``, then waits; MixMonitor records both directions.
    ``long`` plays ``long_wav`` then waits 8 s; ``hold`` only listens; ``dtmf`` presses 5 and
    stores the digit it hears back in the global HEARD; ``busy`` hangs up busy (Q.850 17)
    after 1 s; ``ring`` dials into the app (so it is not answered when it enters Stasis),
    records what it hears from its answer on, and hangs up 3 s later; every caller leaves
    the cause it was hung up with in the global CAUSE; ``p-NN`` waits 4 s (set-ups of many
    calls at once take a while on a loaded machine), then plays ``p-NN.wav`` from ``wav``'s
    folder.
    ``incoming``: any DNIS enters our Stasis app for ``agent`` with a caller id and a variable."""
    rec = root / "talk"
    long_wav = long_wav or wav
    return f"""
[caller]
exten => talk,1,Answer()
 same => n,MixMonitor({rec}.wav,r({rec}-heard.wav)t({rec}-said.wav))
 same => n,Playback({wav.with_suffix("")})
 same => n,Wait(2)
 same => n,Hangup()
exten => _p-XX,1,Answer()
 same => n,MixMonitor({root}/${{EXTEN}}.wav,r({root}/${{EXTEN}}-heard.wav))
 same => n,Wait(4)
 same => n,Playback({wav.parent}/${{EXTEN}})
 same => n,Wait(2)
 same => n,Hangup()
exten => greet,1,Answer()
 same => n,MixMonitor({root}/greet.wav,r({root}/greet-heard.wav))
 same => n,Wait(3)
 same => n,Hangup()
exten => hold,1,Answer()
 same => n,MixMonitor({root}/hold.wav,r({root}/hold-heard.wav))
 same => n,Wait(30)
 same => n,Hangup()
exten => dtmf,1,Answer()
 same => n,Wait(1)
 same => n,SendDTMF(5)
 same => n,Read(HEARD,,1,,1,4)
 same => n,Set(GLOBAL(HEARD)=${{HEARD}})
 same => n,Hangup()
exten => busy,1,Answer()
 same => n,Wait(1)
 same => n,Hangup(17)
exten => h,1,Set(GLOBAL(CAUSE)=${{HANGUPCAUSE}})
exten => ring,1,Dial(Local/5551234@incoming/n,10,U(ringanswer,s,1)S(3))
exten => long,1,Answer()
 same => n,MixMonitor({root}/long.wav,r({root}/long-heard.wav))
 same => n,Playback({long_wav.with_suffix("")})
 same => n,Wait(8)
 same => n,Hangup()
{extra}
[ringanswer]
exten => s,1,MixMonitor({root}/ring.wav,r({root}/ring-heard.wav))
 same => n,Return()
[incoming]
exten => _X.,1,Set(CALLERID(num)=+15550001)
 same => n,Set(CB_LANG=en)
 same => n,Stasis({ARI_APP},agent={agent})
 same => n,Hangup()
exten => nobody,1,Stasis({ARI_APP},agent={UNKNOWN_AGENT})
 same => n,Hangup()
"""


CONFERENCE_HZ = (500.0, 800.0, 1100.0)


def conference_dialplan(root: Path, wavs: list[Path], wait_s: int = 3) -> str:
    """``conf1``..``conf3``: callers that listen for ``wait_s`` (time to join), then each
    plays its own tone (``wavs``), presses its own number's key and listens again;
    MixMonitor records what each heard."""
    lines = ["[caller]"]
    for n, wav in enumerate(wavs, 1):
        lines += [
            f"exten => conf{n},1,Answer()",
            f" same => n,MixMonitor({root}/conf{n}.wav,r({root}/conf{n}-heard.wav))",
            f" same => n,Wait({wait_s})",
            f" same => n,Playback({wav.with_suffix('')})",
            f" same => n,SendDTMF({n})",
            " same => n,Wait(2)",
            " same => n,Hangup()",
        ]
    return "\n".join(lines) + "\n"


def target_dialplan(root: Path, tone_wav: Path) -> str:
    """``300@targets``: a transfer target that answers and plays ``tone_wav`` for a while."""
    return f"""
[targets]
exten => 300,1,Answer()
 same => n,Playback({tone_wav.with_suffix("")})
 same => n,Playback({tone_wav.with_suffix("")})
 same => n,Wait(10)
 same => n,Hangup()
exten => 486,1,Busy(1)
[callees]
exten => +15559999,1,Answer()
 same => n,MixMonitor({root}/callee.wav,r({root}/callee-heard.wav))
 same => n,Playback({tone_wav.with_suffix("")})
 same => n,Wait(1)
 same => n,Hangup()
exten => +15550486,1,Busy(1)
"""
