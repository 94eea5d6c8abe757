"""Real SIP peers for the end-to-end tests: Kamailio and sipp as processes, a loopback sniffer.

Each is started on loopback with ports chosen at run time, so tests never clash with a system
Kamailio on 5060 or with each other.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "sip" / "kamailio" / "kamailio.cfg"
REGISTRAR_CFG = ROOT / "sip" / "kamailio" / "registrar.cfg"
SCENARIOS = ROOT / "sip" / "sipp"
FIXTURES = ROOT / "rtp_fixtures"
ETH_P_ALL = 0x0003
PACKET_HOST = 0  # each loopback packet is seen twice: outgoing (4) and arriving (0)


def require_binary(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        require_service(name, f"{name} is not installed (apt-get install kamailio sip-tester)")
    assert path is not None
    return path


def require_raw_sockets(why: str) -> None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except (PermissionError, AttributeError):
        require_service("CAP_NET_RAW", f"a raw loopback sniffer needs root: {why}")


def free_udp_port(pair: bool = False) -> int:
    """A free UDP port; with ``pair``, one whose +2 is free too (sipp binds audio and video)."""
    for _ in range(200):
        port = random.randrange(40_000, 60_000, 2)
        sockets = []
        try:
            for p in (port, port + 2) if pair else (port,):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free UDP port")


def sip_options_ok(port: int, timeout_s: float = 0.5) -> bool:
    """Does something on 127.0.0.1:port answer a SIP OPTIONS with a response?"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(timeout_s)
        local = s.getsockname()[1]
        probe = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{random.getrandbits(48)}\r\n"
            "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: probe-{random.getrandbits(48)}\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        s.sendto(probe.encode(), ("127.0.0.1", port))
        try:
            return s.recv(4096).startswith(b"SIP/2.0 ")
        except OSError:
            return False


@asynccontextmanager
async def kamailio(folder: Path, nodes: list[tuple[int, int]], alg: int = 4) -> AsyncIterator[int]:
    """Kamailio with our config, dispatching to ``nodes`` [(port, priority)]; yields its port.

    Start-up is awaited in a thread: the nodes in this test's Trio loop must keep answering
    Kamailio's OPTIONS probes meanwhile, or it would mark them inactive.
    """
    (folder / "dispatcher.list").write_text(
        "".join(f"1 sip:127.0.0.1:{p} 0 {prio}\n" for p, prio in nodes)
    )
    defines = [f'DISPATCHER_LIST="{folder / "dispatcher.list"}"', f"DS_ALG={alg}",
               "DS_PING_INTERVAL=1"]  # fmt: skip
    async with kamailio_with(folder, KAMAILIO_CFG, defines) as port:
        yield port


@asynccontextmanager
async def kamailio_with(folder: Path, cfg: Path, defines: list[str]) -> AsyncIterator[int]:
    """Kamailio running ``cfg`` with ``-A`` ``defines`` on a free loopback port; yields it."""
    binary = require_binary("kamailio")
    port = free_udp_port()
    cmd = [
        binary, "-DD", "-E", "-f", str(cfg), "-A", "SKIP_LISTEN", "-l", f"udp:127.0.0.1:{port}",
        *(arg for define in defines for arg in ("-A", define)),
        "-Y", str(folder), "-w", str(folder), "-m", "32", "-M", "4",
    ]  # fmt: skip
    log = (folder / "kamailio.log").open("wb")
    proc = await trio.lowlevel.open_process(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        await trio.to_thread.run_sync(_wait_ready, proc, port, folder)
        yield port
    finally:
        proc.terminate()
        with trio.move_on_after(10) as waited:
            await proc.wait()
        if waited.cancelled_caught:
            proc.kill()
            await proc.wait()
        log.close()


def _wait_ready(proc: trio.Process, port: int, folder: Path) -> None:
    deadline = time.monotonic() + 20
    while not sip_options_ok(port):
        assert proc.poll() is None, (folder / "kamailio.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "kamailio did not answer OPTIONS"


async def wait_for_line(path: Path, text: str, timeout_s: float = 30) -> None:
    """Wait until ``text`` shows up in the log file at ``path``."""
    with trio.fail_after(timeout_s):
        while text not in _read(path):
            await trio.sleep(0.1)


@dataclass
class SippRun:
    returncode: int
    stdout: str
    messages: str
    errors: str


async def run_sipp(
    folder: Path,
    scenario: str,
    target_port: int,
    media_port: int,
    timeout_s: float = 60,
    calls: int = 1,
    service: str = "agent",
) -> SippRun:
    """``calls`` calls from sipp (10 per second) with ``scenario`` to 127.0.0.1:target_port."""
    binary = require_binary("sipp")
    stem = f"{scenario}-{random.getrandbits(32)}"
    messages, errors = folder / f"{stem}.msg", folder / f"{stem}.err"
    cmd = [
        binary, f"127.0.0.1:{target_port}", "-sf", str(SCENARIOS / scenario), "-s", service,
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mi", "127.0.0.1", "-mp", str(media_port),
        "-m", str(calls), "-nostdin", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
        "-trace_msg", "-message_file", str(messages), "-trace_err", "-error_file", str(errors),
    ]  # fmt: skip
    with trio.fail_after(timeout_s + 15):
        # From rtp_fixtures/: the scenarios name their pcap files relative to it.
        proc = await trio.run_process(cmd, cwd=FIXTURES, capture_stdout=True, check=False,
                                      stderr=subprocess.STDOUT)  # fmt: skip
    output = proc.stdout.decode(errors="replace")
    return SippRun(proc.returncode, output, _read(messages), _read(errors))


@dataclass
class SippUas:
    port: int
    proc: trio.Process
    messages: Path
    errors: Path

    def result(self) -> SippRun:
        code = self.proc.returncode
        return SippRun(-1 if code is None else code, "", _read(self.messages), _read(self.errors))


@asynccontextmanager
async def sipp_uas(folder: Path, scenario: str | None = None, timeout_s: float = 30,
                   port: int = 0, rtp_echo: bool = False) -> AsyncIterator[SippUas]:  # fmt: skip
    """sipp answering one call on ``port`` (0: a free loopback port): its built-in ``uas``
    scenario, or ``scenario`` from sip/sipp/; ``rtp_echo``: it sends back the RTP it gets.
    On leaving, waits (bounded) for that call's end."""
    binary = require_binary("sipp")
    port = port or free_udp_port()
    stem = f"uas-{random.getrandbits(32)}"
    messages, errors = folder / f"{stem}.msg", folder / f"{stem}.err"
    which = ["-sf", str(SCENARIOS / scenario)] if scenario else ["-sn", "uas"]
    cmd = [
        binary, *which, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
        "-mp", str(free_udp_port(pair=True)), *(["-rtp_echo"] if rtp_echo else []),
        "-m", "1", "-nostdin",
        "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-trace_msg",
        "-message_file", str(messages), "-trace_err", "-error_file", str(errors),
    ]  # fmt: skip
    log = (folder / f"{stem}.log").open("wb")
    proc = await trio.lowlevel.open_process(cmd, stdout=log, stderr=subprocess.STDOUT)
    uas = SippUas(port, proc, messages, errors)
    try:
        yield uas
        with trio.move_on_after(timeout_s):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Sniffed:
    payload_types: Counter[int] = field(default_factory=Counter)
    payloads: list[bytes] = field(default_factory=list)  # PCMU/PCMA payloads, in arrival order


@contextmanager
def sniff_rtp_to(port: int) -> Iterator[Sniffed]:
    """Count RTP arriving at 127.0.0.1:port (a port sipp owns) by payload type: needs root."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    result = Sniffed()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                frame, address = sock.recvfrom(4096)
            except TimeoutError:
                continue
            if address[2] != PACKET_HOST or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            if ip[9] != 17 or int.from_bytes(ip[header + 2 : header + 4], "big") != port:
                continue
            rtp = ip[header + 8 :]
            if len(rtp) >= 12 and rtp[0] >> 6 == 2:
                pt = rtp[1] & 0x7F
                result.payload_types[pt] += 1
                if pt in (0, 8):
                    result.payloads.append(rtp[12:])

    thread = threading.Thread(target=loop, name="sniffer", daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(5)
        sock.close()
