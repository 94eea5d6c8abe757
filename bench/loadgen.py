"""Simulated callers: many sockets per process, Trio inside, 20 ms frames in real time.

Each caller plays Asterisk's side of AudioSocket (``docs/measurements.md#asterisk-wire``:
kind 0x01 with the 16 UUID bytes, then kind 0x10 frames of 320 bytes of 8 kHz PCM16 every
20 ms), Twilio's side of Media Streams (:mod:`bench.wires`) or a SIP phone sending PCMU over
RTP (:mod:`bench.sip_wire`), and times every audio frame that comes back. The audio is
silence with a one-frame 1 kHz pulse every second, so a pulse's trip out and back can be timed
without trusting the samples to survive resampling bit for bit.

Lateness is measured against the 20 ms grid of the received audio itself: frame ``k`` is due at
``anchor + position_k`` where ``position_k`` is the audio already received before it and
``anchor`` is the earliest ``t - position`` of the last second. A paced stream scores ~0; a late
frame scores how late it is; a lasting shift (an underrun) stops counting after one second.

Arrival times (batched AudioSocket callers, what ``capacity`` runs) are the kernel's receive
timestamps (``SO_TIMESTAMPNS``: when the server's write reached the caller's socket), not when
the generator's loop got round to reading it: at 300 callers the generator's own wake-ups were
most of what a trivial echo server's p99 lateness measured. Frames read together carry the
timestamp of the last one, so a frame is never scored earlier than it came; a frame read before
the kernel has turned stamping on (a moment after the first socket asks) keeps its read time.

Callers run in worker processes (``multiprocessing`` spawn) so that their CPU is theirs alone and
can be reported apart from the server's.
"""

from __future__ import annotations

import audioop
import heapq
import multiprocessing
import random
import select
import socket
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import numpy as np
import trio

from bench.sip_wire import SipRtpWire
from bench.wires import AudioSocketWire, TwilioWire, Wire, WireClosed
from media.audio import FRAME_MS, TELEPHONY_RATE_HZ, pcm16_bytes_per_frame
from media.audiosocket import HEADER, HEADER_BYTES, Kind, encode_frame

FRAME_BYTES = pcm16_bytes_per_frame(TELEPHONY_RATE_HZ)
BYTES_PER_MS = FRAME_BYTES / FRAME_MS
PULSE_EVERY_FRAMES = 50
PULSE_AMPLITUDE = 16000
ANCHOR_WINDOW_FRAMES = 50
SEND_SLACK_S = 0.0005  # batched callers: frames due this close together leave in one wake-up
CONNECT_POLL_S = 0.002  # batched callers: how often a caller still connecting is looked at
_READ_BYTES = 65536
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h> (Python names neither): the cmsg is a timespec
_TIMESPEC = struct.Struct("@qq")
_CMSG_BYTES = socket.CMSG_SPACE(_TIMESPEC.size)


@dataclass(frozen=True, slots=True)
class CallerPlan:
    """What one worker process runs: ``n_callers`` callers, connects spread over ``ramp_s``."""

    protocol: Literal["audiosocket", "twilio", "rtp"]
    host: str
    port: int
    path: str  # WebSocket path for twilio
    first_index: int
    n_callers: int
    total_callers: int
    start_at: float  # time.monotonic() of the first connect, shared by all workers
    ramp_s: float
    duration_s: float  # audio sent per caller
    grace_s: float  # read on after the last frame for echoes still in flight
    warmup_s: float  # first seconds of each call left out of lateness
    seed: int
    tag_dtmf: bool = False  # send the caller's index as 4 DTMF digits first (for ``hop``)


def dtmf_tag(index: int) -> str:
    """The digits a caller sends first so that an agent can tell which caller a call is."""
    return f"{index % 10_000:04d}"


@dataclass(slots=True)
class CallerResult:
    index: int
    call_uuid: str
    connected: bool = False
    error: str | None = None
    frames_sent: int = 0
    bytes_received: int = 0
    lateness_ms: list[float] = field(default_factory=list)
    interarrival_ms: list[float] = field(default_factory=list)
    send_lateness_ms: list[float] = field(default_factory=list)  # the generator's own
    pulse_sent_at: list[float] = field(default_factory=list)
    pulse_received_at: list[float] = field(default_factory=list)

    @property
    def frames_received(self) -> float:
        return self.bytes_received / FRAME_BYTES

    def round_trips_ms(self) -> list[float]:
        """Pulse sent -> its echo received, in order."""
        return pair_forward_ms(self.pulse_sent_at, self.pulse_received_at)


def pair_forward_ms(
    earlier: Sequence[float],
    later: Sequence[float],
    max_gap_s: float = 0.5,
    since: float = float("-inf"),
) -> list[float]:
    """Pair each time in ``earlier`` with the first unused time of ``later`` after it (both
    sorted), within ``max_gap_s``; returns the gaps in ms of the pairs that start at or after
    ``since``. Pulses are a second apart, so half a second is as far as a pairing can be told
    apart from the next pulse's: a pulse lost on the way, or later than that, pairs with
    nothing (the counts show it) rather than with the next pulse's echo."""
    gaps: list[float] = []
    j = 0
    for t in earlier:
        while j < len(later) and later[j] <= t:
            j += 1
        if j < len(later) and later[j] - t <= max_gap_s:
            if t >= since:
                gaps.append((later[j] - t) * 1000)
            j += 1
    return gaps


def pulse_frame() -> bytes:
    t = np.arange(FRAME_BYTES // 2) / TELEPHONY_RATE_HZ
    return (PULSE_AMPLITUDE * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()


def is_pulse(pcm16: bytes) -> bool:
    """Loud enough to be the echoed pulse (resampling rings, so half the amplitude counts)."""
    # audioop's C loop: numpy's per-call overhead was ~9 % of a generator worker's CPU.
    return audioop.max(pcm16[: len(pcm16) & ~1], 2) > PULSE_AMPLITUDE // 2


def grid_lateness_ms(arrivals: Sequence[float], positions_ms: Sequence[float]) -> np.ndarray:
    """Lateness of each frame against the sliding-window anchor described in the module doc."""
    offsets: np.ndarray = np.asarray(arrivals, dtype=np.float64) * 1000 - np.asarray(positions_ms)
    if offsets.size == 0:
        return offsets
    padded = np.concatenate([np.full(ANCHOR_WINDOW_FRAMES - 1, offsets[0]), offsets])
    windows = np.lib.stride_tricks.sliding_window_view(padded, ANCHOR_WINDOW_FRAMES)
    lateness: np.ndarray = offsets - windows.min(axis=1)
    return lateness


async def open_wire(plan: CallerPlan, call_uuid: str) -> Wire:
    if plan.protocol == "twilio":
        return await TwilioWire.open(f"ws://{plan.host}:{plan.port}{plan.path}", call_uuid)
    if plan.protocol == "rtp":
        return await SipRtpWire.open(plan.host, plan.port, call_uuid)
    return await AudioSocketWire.open(plan.host, plan.port, call_uuid)


async def run_caller(plan: CallerPlan, result: CallerResult) -> None:
    """One call: connect at its slot, send in real time, read until the grace period ends."""
    slot_s = plan.ramp_s * (result.index / max(plan.total_callers, 1))
    clock_offset = trio.current_time() - time.monotonic()
    begin = plan.start_at + slot_s
    await trio.sleep_until(begin + clock_offset)
    try:
        wire = await open_wire(plan, result.call_uuid)
    except (OSError, WireClosed) as exc:
        result.error = f"connect: {exc}"
        return
    result.connected = True
    if plan.tag_dtmf:
        for digit in dtmf_tag(result.index):
            await wire.send_dtmf(digit)
    arrivals: list[float] = []
    positions_ms: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_receive, wire, result, arrivals, positions_ms)
        try:
            await _send(wire, plan, begin, clock_offset, result)
        except WireClosed as exc:
            result.error = result.error or f"send: {exc}"
        await trio.sleep_until(begin + plan.duration_s + plan.grace_s + clock_offset)
        nursery.cancel_scope.cancel()
    with trio.move_on_after(1):
        await wire.aclose()
    _summarise(result, arrivals, positions_ms, begin + plan.warmup_s)


def _summarise(
    result: CallerResult, arrivals: list[float], positions_ms: list[float], since: float
) -> None:
    """Lateness and gaps of the frames received from ``since`` on."""
    keep = [i for i, t in enumerate(arrivals) if t >= since]
    lateness = grid_lateness_ms(arrivals, positions_ms)
    result.lateness_ms = [round(float(lateness[i]), 4) for i in keep]
    gaps = np.diff(np.asarray(arrivals)) * 1000
    result.interarrival_ms = [round(float(gaps[i - 1]), 4) for i in keep if i > 0]


async def _send(
    wire: Wire, plan: CallerPlan, begin: float, offset: float, result: CallerResult
) -> None:
    quiet = bytes(FRAME_BYTES)
    loud = pulse_frame()
    n_frames = int(plan.duration_s * 1000 / FRAME_MS)
    pulse_phase = (1 + result.index) % PULSE_EVERY_FRAMES  # spread pulses over the second
    for k in range(n_frames):
        due = begin + k * FRAME_MS / 1000
        await trio.sleep_until(due + offset)
        if k * FRAME_MS >= plan.warmup_s * 1000:
            result.send_lateness_ms.append(round((time.monotonic() - due) * 1000, 4))
        pulse = k % PULSE_EVERY_FRAMES == pulse_phase
        await wire.send_audio(loud if pulse else quiet)
        if pulse:
            result.pulse_sent_at.append(time.monotonic())
        result.frames_sent += 1
    await wire.hang_up()


async def _receive(
    wire: Wire, result: CallerResult, arrivals: list[float], positions_ms: list[float]
) -> None:
    in_pulse = False
    while True:
        try:
            frames = await wire.receive_audio()
        except WireClosed as exc:
            if str(exc) not in ("eof", "hangup frame"):
                result.error = result.error or f"receive: {exc}"
            return
        now = time.monotonic()
        for pcm16 in frames:
            arrivals.append(now)
            positions_ms.append(result.bytes_received / BYTES_PER_MS)
            result.bytes_received += len(pcm16)
            loud = is_pulse(pcm16)
            if loud and not in_pulse:
                result.pulse_received_at.append(now)
            in_pulse = loud


async def _run_all(plan: CallerPlan) -> list[CallerResult]:
    rng = random.Random(plan.seed * 1_000_003 + plan.first_index)
    results = [
        CallerResult(plan.first_index + i, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        for i in range(plan.n_callers)
    ]
    if plan.protocol == "audiosocket" and not plan.tag_dtmf:
        await BatchedCallers(plan, results).run()
        return results
    async with trio.open_nursery() as nursery:
        for r in results:
            nursery.start_soon(run_caller, plan, r)
    return results


@dataclass(slots=True)
class _Line:
    """One batched AudioSocket caller's state."""

    result: CallerResult
    begin: float  # time.monotonic() of its first frame
    sock: socket.socket | None = None
    buffer: bytearray = field(default_factory=bytearray)
    arrivals: list[float] = field(default_factory=list)
    positions_ms: list[float] = field(default_factory=list)
    in_pulse: bool = False


class BatchedCallers:
    """AudioSocket callers with no task of their own (the generator must cost far less than
    the server it loads): one loop sends every caller's frame when its slot comes (callers due
    within :data:`SEND_SLACK_S` of each other in one wake-up), one epoll set reads every
    caller's echo, frames are built once. Each caller keeps the phase its connect time gave it,
    as calls from a PBX do; the timing rules and results are :func:`run_caller`'s."""

    def __init__(self, plan: CallerPlan, results: list[CallerResult]) -> None:
        self.plan = plan
        self.lines = [
            _Line(r, plan.start_at + plan.ramp_s * (r.index / max(plan.total_callers, 1)))
            for r in results
        ]
        self.quiet = encode_frame(Kind.SLIN, bytes(FRAME_BYTES))
        self.loud = encode_frame(Kind.SLIN, pulse_frame())
        self.epoll = select.epoll()
        self.by_fd: dict[int, _Line] = {}
        self.offset = trio.current_time() - time.monotonic()

    async def run(self) -> None:
        plan = self.plan
        end = max(line.begin for line in self.lines) + plan.duration_s + plan.grace_s
        async with trio.open_nursery() as nursery:
            for line in self.lines:
                nursery.start_soon(self._connect, line)
            nursery.start_soon(self._send_all)
            nursery.start_soon(self._receive_all)
            await trio.sleep_until(end + self.offset)
            nursery.cancel_scope.cancel()
        for line in self.lines:
            if line.sock is not None:
                line.sock.close()
            _summarise(line.result, line.arrivals, line.positions_ms, line.begin + plan.warmup_s)
        self.epoll.close()

    async def _connect(self, line: _Line) -> None:
        await trio.sleep_until(line.begin + self.offset)
        try:
            stream = await trio.open_tcp_stream(self.plan.host, self.plan.port)
        except OSError as exc:
            line.result.error = f"connect: {exc}"
            return
        sock = socket.socket(fileno=stream.socket.detach())
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.sendall(encode_frame(Kind.UUID, uuid.UUID(line.result.call_uuid).bytes))
        line.sock, line.result.connected = sock, True
        self.by_fd[sock.fileno()] = line
        self.epoll.register(sock.fileno(), select.EPOLLIN)

    async def _send_all(self) -> None:
        """Frame ``k`` of a caller is due at its ``begin + k * 20 ms``; one not connected yet
        is tried again 2 ms later, and frames whose slot passed meanwhile go at once (as
        :func:`run_caller` sends them)."""
        n_frames = int(self.plan.duration_s * 1000 / FRAME_MS)
        queue = [(line.begin, i, 0) for i, line in enumerate(self.lines)]  # (wake at, caller, k)
        heapq.heapify(queue)
        while queue:
            await trio.sleep_until(queue[0][0] + self.offset)
            horizon = time.monotonic() + SEND_SLACK_S
            while queue and queue[0][0] <= horizon:
                _, i, k = heapq.heappop(queue)
                line = self.lines[i]
                if line.sock is None:
                    if not (line.result.connected or line.result.error):  # still connecting
                        heapq.heappush(queue, (time.monotonic() + CONNECT_POLL_S, i, k))
                    continue
                self._send_frame(line, line.begin + k * FRAME_MS / 1000, k)
                if k + 1 < n_frames:
                    heapq.heappush(queue, (line.begin + (k + 1) * FRAME_MS / 1000, i, k + 1))
                else:
                    self._write(line, encode_frame(Kind.HANGUP))

    def _send_frame(self, line: _Line, slot: float, k: int) -> None:
        result, now = line.result, time.monotonic()
        if k * FRAME_MS >= self.plan.warmup_s * 1000:
            result.send_lateness_ms.append(round((now - slot) * 1000, 4))
        pulse = k % PULSE_EVERY_FRAMES == (1 + result.index) % PULSE_EVERY_FRAMES
        if self._write(line, self.loud if pulse else self.quiet):
            if pulse:
                result.pulse_sent_at.append(now)
            result.frames_sent += 1

    def _write(self, line: _Line, data: bytes) -> bool:
        assert line.sock is not None
        try:
            line.sock.sendall(data)  # a few hundred bytes into an empty loopback buffer
        except OSError as exc:
            line.result.error = line.result.error or f"send: {exc}"
            self._drop(line)
            return False
        return True

    async def _receive_all(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.epoll.fileno())
            now = time.monotonic()
            realtime_lead = time.time() - now  # the kernel stamps in CLOCK_REALTIME
            for fd, _ in self.epoll.poll(0):
                line = self.by_fd.get(fd)
                if line is not None and line.sock is not None:
                    self._read(line, now, realtime_lead)

    def _read(self, line: _Line, now: float, realtime_lead: float) -> None:
        assert line.sock is not None
        try:
            data, ancillary, _, _ = line.sock.recvmsg(_READ_BYTES, _CMSG_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            line.result.error = line.result.error or f"receive: {exc}"
            data, ancillary = b"", []
        if not data:
            self._drop(line)
            return
        now = min(now, kernel_arrival(ancillary, realtime_lead) or now)
        buf, result = line.buffer, line.result
        buf += data
        while len(buf) >= HEADER_BYTES:
            kind, length = HEADER.unpack_from(buf)
            if len(buf) < HEADER_BYTES + length:
                break
            if kind == Kind.SLIN:
                pcm16 = bytes(buf[HEADER_BYTES : HEADER_BYTES + length])
                line.arrivals.append(now)
                line.positions_ms.append(result.bytes_received / BYTES_PER_MS)
                result.bytes_received += len(pcm16)
                loud = is_pulse(pcm16)
                if loud and not line.in_pulse:
                    result.pulse_received_at.append(now)
                line.in_pulse = loud
            del buf[: HEADER_BYTES + length]

    def _drop(self, line: _Line) -> None:
        if line.sock is not None:
            self.by_fd.pop(line.sock.fileno(), None)
            self.epoll.unregister(line.sock.fileno())
            line.sock.close()
            line.sock = None


def kernel_arrival(ancillary: list[tuple[int, int, bytes]], realtime_lead: float) -> float | None:
    """The ``SO_TIMESTAMPNS`` receive time in a ``recvmsg``'s ancillary data, on the
    ``time.monotonic()`` clock (``realtime_lead``: ``time.time() - time.monotonic()``)."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9 - realtime_lead)
    return None


def _worker(plan: CallerPlan, conn: Connection) -> None:
    """Import, say ready, wait for the shared start time, run, send the results back."""
    try:
        conn.send("ready")
        start_at = conn.recv()
        conn.send(trio.run(_run_all, replace(plan, start_at=start_at)))
    except BaseException as exc:  # the parent must hear about any failure, not hang
        conn.send(exc)
        raise
    finally:
        conn.close()


@dataclass(slots=True)
class LoadGenerator:
    """Callers split over worker processes: ``start`` spawns them, ``go`` sets them off together
    (after every worker has imported, so no caller starts late), ``collect`` waits."""

    plans: list[CallerPlan]
    processes: list[BaseProcess] = field(default_factory=list)
    _pipes: list[Connection] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def start(self, timeout_s: float = 30.0) -> None:
        # spawn, not fork: the parent may hold threads (pipecat, a test suite) and a fork copies
        # their locks mid-use. Spawn skips ``python -m``'s __main__ and the console script is
        # guarded, so no entry point runs the bench again in a worker.
        ctx = multiprocessing.get_context("spawn")
        for plan in self.plans:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(plan, child), daemon=True)
            proc.start()
            child.close()
            self.processes.append(proc)
            self._pipes.append(parent)
        for pipe in self._pipes:
            self._expect(pipe, timeout_s)

    def go(self, delay_s: float = 0.3) -> float:
        """Start every caller ``delay_s`` from now; returns that ``time.monotonic()``."""
        start_at = time.monotonic() + delay_s
        for pipe in self._pipes:
            pipe.send(start_at)
        return start_at

    def collect(self, timeout_s: float) -> list[CallerResult]:
        results: list[CallerResult] = []
        for proc, pipe in zip(self.processes, self._pipes, strict=True):
            results.extend(self._expect(pipe, timeout_s))
            proc.join(5)
        return results

    def stop(self) -> None:
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def _expect(self, pipe: Connection, timeout_s: float) -> Any:
        if not pipe.poll(timeout_s):
            self.stop()
            raise TimeoutError("a load generator worker did not answer in time")
        got = pipe.recv()
        if isinstance(got, BaseException):
            self.stop()
            raise RuntimeError("a load generator worker failed") from got
        return got


def plan_callers(
    host: str,
    port: int,
    n_callers: int,
    duration_s: float,
    seed: int,
    *,
    workers: int,
    protocol: Literal["audiosocket", "twilio", "rtp"] = "audiosocket",
    path: str = "/",
    tag_dtmf: bool = False,
    ramp_s: float = 1.0,
    grace_s: float = 0.5,
    warmup_s: float = 1.0,
) -> list[CallerPlan]:
    """Split ``n_callers`` into ``workers`` plans; :meth:`LoadGenerator.go` sets the start."""
    if n_callers < 1 or workers < 1 or duration_s <= warmup_s:
        raise ValueError("need n_callers >= 1, workers >= 1 and duration_s > warmup_s")
    workers = min(workers, n_callers)
    share, extra = divmod(n_callers, workers)
    plans: list[CallerPlan] = []
    first = 0
    for w in range(workers):
        count = share + (1 if w < extra else 0)
        plan = CallerPlan(
            protocol=protocol,
            host=host,
            path=path,
            port=port,
            first_index=first,
            n_callers=count,
            total_callers=n_callers,
            start_at=0.0,
            ramp_s=ramp_s,
            duration_s=duration_s,
            grace_s=grace_s,
            warmup_s=warmup_s,
            seed=seed,
            tag_dtmf=tag_dtmf,
        )
        plans.append(plan)
        first += count
    return plans
