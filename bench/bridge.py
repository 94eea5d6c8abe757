"""``callbridge bench bridge``: what a mixing bridge costs and the delay it adds (issue 12).

Two parts:

- **mixer**: the pure bridge tick (:class:`media.bridge_core.BridgeCore`: take each port's
  frame, N-1 mix with limiter, deliver) in this process, for several bridge sizes; microseconds
  per participant per 20 ms frame (target <= 5 us).
- **media core**: a fresh ``callbridge serve`` (echo agent, SQLite); ``--conferences`` REST
  conferences of ``--participants`` AudioSocket callers each (created and joined through the
  API, tones off). One caller per conference (the talker) sends a 1 kHz pulse frame a second,
  the others silence. Measured once everyone is in: serve's whole process tree's CPU per
  participant per tick, and the caller-to-caller delay (the talker wrote the pulse -> a
  listener read it), which holds both legs' hops (parse, resampling, the bridge port's wait for
  the tick, the listener's pacer) as well as the bridge's own.

Every figure from a shared machine is noisy: the load average is printed and stored with them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from bench.loadgen import is_pulse, pulse_frame
from bench.report import format_table, results_folder, write_json
from bench.server import tree_usage
from bench.stats import summarize_ms
from bench.targets import Target, callbridge_target, first_access_key
from bench.wires import AudioSocketWire, WireClosed
from media.audio import FRAME_MS
from media.bridge import Bridge
from media.bridge_core import FRAME_BYTES, BridgeCore
from media.config import ConfigError

MIXER_SIZES = (2, 5, 10, 20)
TELEPHONY_FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16, what an AudioSocket caller sends
SETTLE_S = 1.0  # after the last join: the ports' queues and the pacers settle
PULSE_EVERY_S = 1.0
PAIR_WITHIN_S = 0.5  # a listener's pulse later than this after the talker's is not that pulse


def add_bridge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conferences", type=int, default=10, help="bridges (default %(default)s)")
    p.add_argument(
        "--participants", type=int, default=5, help="callers per bridge (default %(default)s)"
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="measured window (default %(default)s)"
    )
    p.add_argument("--ticks", type=int, default=3000, help="mixer ticks timed per size")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG")
    p.add_argument(
        "--no-serve", action="store_true", help="the mixer and the bridge's own delay only"
    )


# ---- mixer ---------------------------------------------------------------------------------


BATCH_TICKS = 100  # timed together; a shared machine's hiccups spoil a batch, not the figure
# Input levels (rms) of the two mixer cases. "talk": one talker at -20 dBFS over the others'
# room noise (-60 dBFS), the usual conference tick, below the limiter's threshold. "all loud":
# everyone at -21 dBFS of noise at once, which keeps the limiter riding every row from five on.
MIX_CASES = {"talk": (3277.0, 33.0), "all loud": (3000.0, 3000.0)}


def time_mixer(participants: int, ticks: int, seed: int, case: str = "talk") -> dict[str, Any]:
    """Microseconds per participant per frame of :meth:`BridgeCore.tick` (uplink a frame into
    each port, take, mix, deliver) and of :meth:`Mixer.mix` alone; the median and the best of
    batches of ``BATCH_TICKS`` ticks (the best: what the code costs on this CPU when nothing
    else runs)."""
    rng = np.random.default_rng(seed)
    core = BridgeCore(tones=False)
    ports = [core.join(f"p{i}", lambda pcm16, rate_hz: None) for i in range(participants)]
    talker, others = MIX_CASES[case]
    levels = np.full((participants, 1), others)
    levels[0] = talker
    frames = (rng.standard_normal((participants, FRAME_BYTES // 2)) * levels).astype("<i2")
    payloads = [row.tobytes() for row in frames]
    tick_us, mix_us = [], []
    for batch in range(max(2, ticks // BATCH_TICKS) + 1):
        begin = time.perf_counter()
        for _ in range(BATCH_TICKS):
            for port, payload in zip(ports, payloads, strict=True):
                port.uplink(payload)
            core.tick()
        middle = time.perf_counter()
        for _ in range(BATCH_TICKS):
            core.mixer.mix(frames)
        end = time.perf_counter()
        if batch:  # the first batch warms up
            tick_us.append((middle - begin) * 1e6 / BATCH_TICKS / participants)
            mix_us.append((end - middle) * 1e6 / BATCH_TICKS / participants)
    return {
        "case": case,
        "participants": participants,
        "tick_us_per_participant_median": float(np.median(tick_us)),
        "tick_us_per_participant_best": min(tick_us),
        "mix_us_per_participant_median": float(np.median(mix_us)),
        "mix_us_per_participant_best": min(mix_us),
    }


# ---- the bridge's own delay ------------------------------------------------------------------

DELAY_PULSE_EVERY = 10  # frames: the talker's pulse, a DC level that names it


async def bridge_delay(participants: int, seconds: float, seed: int) -> dict[str, Any]:
    """What the bridge adds, alone: a :class:`media.bridge.Bridge` on the Trio clock, every
    participant's leg handing it a frame every 20 ms at a phase of its own (as real legs do),
    one talker; the time from the talker's pulse frame going into its port to each listener
    being handed the mix that holds it (the port's wait for the tick, the tick itself). Legs,
    resampling and the listener's playout are not in it."""
    rng = np.random.default_rng(seed)
    bridge = Bridge("bench", tones=False)
    sent: dict[int, float] = {}
    delays: list[float] = []

    def ear(pcm16: bytes, rate_hz: int) -> None:
        level = int(np.frombuffer(pcm16, "<i2")[-1])
        if level in sent:
            delays.append((trio.current_time() - sent[level]) * 1000)

    async def leg(index: int, phase_s: float) -> None:
        port = bridge.join(f"p{index}", ear if index else lambda pcm16, rate_hz: None)
        start = trio.current_time() + phase_s
        for k in itertools.count():
            await trio.sleep_until(start + k * FRAME_MS / 1000)
            if index == 0 and k % DELAY_PULSE_EVERY == 0 and k:
                level = 1000 + k // DELAY_PULSE_EVERY  # the pulse's name
                sent[level] = trio.current_time()
                port.uplink(np.full(FRAME_BYTES // 2, level, "<i2").tobytes())
            else:
                port.uplink(bytes(FRAME_BYTES))

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        for i in range(participants):
            nursery.start_soon(leg, i, float(rng.uniform(0, FRAME_MS / 1000)))
        await trio.sleep(SETTLE_S)
        delays.clear()
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    return {
        "participants": participants,
        "added_delay": summarize_ms(delays),
        "expected_listener_frames": int(seconds * 1000 / FRAME_MS / DELAY_PULSE_EVERY)
        * (participants - 1),
        "skipped_ticks": bridge.skipped_ticks,
    }


# ---- media core ----------------------------------------------------------------------------


@dataclass
class Caller:
    conference: int
    talker: bool
    call_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    pulses_sent: list[float] = field(default_factory=list)
    pulses_heard: list[float] = field(default_factory=list)


def _http(method: str, url: str, auth: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


async def _api(method: str, url: str, auth: str, body: Any = None) -> Any:
    return await trio.to_thread.run_sync(_http, method, url, auth, body)


async def _talk(wire: AudioSocketWire, caller: Caller) -> None:
    """A frame per 20 ms slot: silence, or (the talker) a pulse once a second."""
    silence, pulse = bytes(TELEPHONY_FRAME_BYTES), pulse_frame()
    start = trio.current_time()
    k = 0
    with_pulse = round(PULSE_EVERY_S * 1000 / FRAME_MS)
    while True:
        await trio.sleep_until(start + k * FRAME_MS / 1000)
        if caller.talker and k % with_pulse == 0:
            caller.pulses_sent.append(trio.current_time())
            await wire.send_audio(pulse)
        else:
            await wire.send_audio(silence)
        k += 1


async def _listen(wire: AudioSocketWire, caller: Caller) -> None:
    try:
        while True:
            for frame in await wire.receive_audio():
                if is_pulse(frame):
                    caller.pulses_heard.append(trio.current_time())
    except WireClosed:
        return


async def _call_ids(base: str, auth: str, callers: list[Caller]) -> dict[str, str]:
    """leg_ref (the AudioSocket UUID) -> call id, once every caller's call is progressing."""
    wanted = {c.call_uuid for c in callers}
    with trio.fail_after(30):
        while True:
            listing = await _api("GET", f"{base}/v1.0/calls?status=progressing", auth)
            ids = {r["leg_ref"]: r["id"] for r in listing["result"] if r["leg_ref"] in wanted}
            if len(ids) == len(wanted):
                return ids
            await trio.sleep(0.2)


def _dropped_ms(url: str) -> dict[str, float]:
    """serve's callbridge_audio_dropped_ms counters, by label set (where audio was dropped)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("callbridge_audio_dropped_ms_total"):
            labels, value = line.rsplit(" ", 1)
            out[labels.removeprefix("callbridge_audio_dropped_ms_total")] = float(value)
    return out


def caller_delays_ms(callers: list[Caller], since: float) -> tuple[list[float], int]:
    """Each listener's delay for each of its talker's pulses from ``since`` on, and how many
    (pulse, listener) pairs there were: one not heard within ``PAIR_WITHIN_S`` was lost."""
    talkers = {c.conference: c for c in callers if c.talker}
    delays: list[float] = []
    pairs = 0
    for c in callers:
        if c.talker:
            continue
        heard = np.asarray(c.pulses_heard)
        for sent in talkers[c.conference].pulses_sent:
            if sent < since:
                continue
            pairs += 1
            later = heard[(heard >= sent) & (heard < sent + PAIR_WITHIN_S)]
            if later.size:
                delays.append(float(later[0] - sent) * 1000)
    return delays, pairs


async def run_conferences(target: Target, auth: str, ns: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{target.http_port}"
    callers = [
        Caller(conf, talker=(i == 0))
        for conf in range(ns.conferences)
        for i in range(ns.participants)
    ]
    async with trio.open_nursery() as nursery:
        for c in callers:
            wire = await AudioSocketWire.open(target.host, target.port, c.call_uuid)
            nursery.start_soon(_talk, wire, c)
            nursery.start_soon(_listen, wire, c)
        ids = await _call_ids(base, auth, callers)
        for conf in range(ns.conferences):
            body = {"name": f"bench-{conf}", "tones": False}
            conference = await _api("POST", f"{base}/v1.0/conferences", auth, body)
            for c in (c for c in callers if c.conference == conf):
                url = f"{base}/v1.0/conferences/{conference['id']}/participants"
                await _api("POST", url, auth, {"call_id": ids[c.call_uuid]})
        await trio.sleep(SETTLE_S)
        since = trio.current_time()
        dropped_before = await trio.to_thread.run_sync(_dropped_ms, f"{base}/metrics")
        before, begin = tree_usage(target.pids), time.monotonic()
        callers_cpu_s = time.process_time()
        await trio.sleep(ns.seconds)
        after, wall_s = tree_usage(target.pids), time.monotonic() - begin
        callers_cpu_s = time.process_time() - callers_cpu_s
        dropped_after = await trio.to_thread.run_sync(_dropped_ms, f"{base}/metrics")
        nursery.cancel_scope.cancel()
    participants = len(callers)
    ticks = wall_s * 1000 / FRAME_MS
    cpu_s = after.cpu_s - before.cpu_s
    delays, pairs = caller_delays_ms(callers, since)
    return {
        "participants": participants,
        "window_s": wall_s,
        "serve_cpu_pct_of_core": 100 * cpu_s / wall_s,
        "serve_cpu_pct_per_participant": 100 * cpu_s / wall_s / participants,
        "serve_us_per_participant_tick": cpu_s * 1e6 / (participants * ticks),
        "caller_to_caller": summarize_ms(delays),
        # the callers run in this process, on the same CPUs: their load is part of the delay
        "callers_cpu_pct_of_core": 100 * callers_cpu_s / wall_s,
        "pulse_listener_pairs": pairs,
        # in the window, by where (uplink: to an agent link, none here; playout: to a caller)
        "serve_audio_dropped_ms": {
            k: v - dropped_before.get(k, 0.0) for k, v in dropped_after.items()
        },
    }


def run_bridge(ns: argparse.Namespace) -> int:
    if ns.conferences < 1 or ns.participants < 2 or ns.seconds <= 0:
        raise ConfigError("bridge needs --conferences >= 1, --participants >= 2, --seconds > 0")
    folder = results_folder("bridge", ns.results_dir)
    load_before = os.getloadavg()
    mixer = [time_mixer(n, ns.ticks, ns.seed, case) for case in MIX_CASES for n in MIXER_SIZES]
    own = [trio.run(bridge_delay, n, ns.seconds, ns.seed) for n in (2, ns.participants)]
    core: dict[str, Any] | None = None
    if not ns.no_serve:
        with callbridge_target(ns, folder) as target:
            auth = f"AccessKey {first_access_key(folder / 'serve.log')}"
            core = trio.run(run_conferences, target, auth, ns)
    load = {"loadavg_before": load_before, "loadavg_after": os.getloadavg(), "cpus": os.cpu_count()}
    params = {k: getattr(ns, k) for k in ("conferences", "participants", "seconds", "ticks")}
    results = {"mixer": mixer, "bridge_delay": own, "media_core": core, **load}
    write_json(folder, "bridge", ns.seed, params, results)
    _print_mixer(mixer)
    for d in own:
        added = d["added_delay"]
        print(
            f"the bridge's own added delay, {d['participants']} participants (port -> tick -> "
            f"delivered): p50 {added['p50_ms']} ms, p95 {added['p95_ms']} ms, "
            f"max {added['max_ms']} ms ({added['count']} of {d['expected_listener_frames']} "
            f"pulses; {d['skipped_ticks']} ticks skipped)"
        )
    if core is not None:
        _print_media_core(ns, core)
    print(
        f"load average before/after: {load_before} / {load['loadavg_after']} "
        f"on {load['cpus']} CPUs\nresults: {folder}"
    )
    return 0


def _print_mixer(mixer: list[dict[str, Any]]) -> None:
    keys = ("tick_us_per_participant", "mix_us_per_participant")
    print("us per participant per 20 ms frame (median / best batch):")
    print(
        format_table(
            ["case", "participants", "tick median", "tick best", "mix median", "mix best"],
            [
                [
                    m["case"],
                    m["participants"],
                    *(m[f"{k}_{w}"] for k in keys for w in ("median", "best")),
                ]
                for m in mixer
            ],
        )
    )


def _print_media_core(ns: argparse.Namespace, core: dict[str, Any]) -> None:
    delay = core["caller_to_caller"]
    print(
        f"media core, {ns.conferences} conferences x {ns.participants} AudioSocket callers: "
        f"serve {core['serve_cpu_pct_per_participant']:.2f} % of a core per participant "
        f"({core['serve_us_per_participant_tick']:.0f} us per participant-tick); "
        f"caller-to-caller p50 {delay['p50_ms']} ms, p95 {delay['p95_ms']} ms, "
        f"max {delay['max_ms']} ms; heard {delay['count']} of {core['pulse_listener_pairs']}\n"
        f"serve dropped in the window (ms, by where): {core['serve_audio_dropped_ms']}\n"
        f"the callers' own process: {core['callers_cpu_pct_of_core']:.0f} % of a core"
    )
