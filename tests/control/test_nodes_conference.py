"""One conference, callers on two real ``callbridge serve`` nodes (MariaDB + Redis): one bridge.

The bridge lives on the node of the first call to join (stored in the conference row); a call
on the other node joins it over an inter-node link (:mod:`control.conference_links`,
:mod:`media.bridge_link`). Three AudioSocket callers, two on node A and one on node B, each
sending its own tone: each hears the other two at the level sent and not itself; mutes and kicks
sent to either node act; B's caller leaves and joins again. The inter-node hop's added delay is
measured (printed: bench/RESULTS.md, issue 12). A holder SIGKILLed mid-conference: the caller on
the survivor goes back to its agent, and the conference ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
from typing import Any

import numpy as np
import trio

from tests.control.test_nodes import Node, Platform, live_call, platform  # noqa: F401
from tests.media.asterisk_peer import AsteriskPeer, encode_frame
from tests.media.conftest import tone
from tests.media.tones import tone_db

RATE_HZ = 8000
LEVEL = 0.25  # of full scale, each caller
LEVEL_DB = 20 * np.log10(LEVEL)
TONES_HZ = (350.0, 1250.0, 1700.0)  # apart from each other and from the entry/exit tones
TALK_S = 30.0
# Measured here (one run, levels against what was sent): another caller's tone 0.0-0.63 dB
# under it, over the link or not (the mix's headroom with three in it); one's own tone 56-66 dB
# under (only the others' tones leaking into the Hann window), a muted or kicked caller's 98 dB
# or more. A window with an entry or exit tone in it is not the settled state: the check waits.
HEARD_DB = 1.5  # a tone heard: within this of what was sent
GONE_DB = 45.0  # a tone not heard: this far below what was sent


def heard(peer: AsteriskPeer, start: float, end: float) -> bytes:
    return b"".join(r.payload for r in peer.audio_frames() if start <= r.t < end)


async def join(p: Platform, via: Node, conference_id: str, call_id: str) -> dict[str, Any]:
    added = await p.api(
        via, "POST", f"/v1.0/conferences/{conference_id}/participants", {"call_id": call_id}
    )
    assert added.status == 201, added.body
    assert added.body["status"] == "joined" and added.body["call_id"] == call_id
    return added.body


WINDOW_S = 0.7
SETTLE_S = 8.0  # a loaded box moves a call late, never to the wrong place: wait this long at most

Expected = list[tuple[AsteriskPeer, set[int], str]]  # a caller, whom it hears, what it shows


def mismatch(pcm16: bytes, hears: set[int]) -> str:
    """Why ``pcm16`` is not exactly the callers ``hears`` (indices into TONES_HZ), each at the
    level sent; "" when it is."""
    if len(pcm16) < 0.9 * 2 * RATE_HZ * WINDOW_S:  # a frame every 20 ms
        return f"{len(pcm16)} bytes"
    for j, freq in enumerate(TONES_HZ):
        level = tone_db(pcm16, freq)
        if (abs(level - LEVEL_DB) >= HEARD_DB) if j in hears else (level >= LEVEL_DB - GONE_DB):
            return f"caller {j}'s tone at {level:.1f} dB"
    return ""


async def hear_soon(expected: Expected, since: float) -> None:
    """Each caller hears exactly whom it should in a window after ``since``, within SETTLE_S."""
    deadline = since + SETTLE_S
    while True:
        now = trio.current_time()
        why = [mismatch(heard(peer, now - WINDOW_S, now), hears) for peer, hears, _ in expected]
        if now - WINDOW_S >= since and not any(why):
            return
        assert now < deadline, [(label, w) for (_, _, label), w in zip(expected, why, strict=True)]
        await trio.sleep(0.1)


async def test_callers_on_two_nodes_hear_each_other_in_one_bridge(
    platform: Platform,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    p = platform
    a = await p.start("node-a", ttl_s=10)
    b = await p.start("node-b", ttl_s=10)
    created = await p.api(b, "POST", "/v1.0/conferences", {"name": "two nodes"})
    assert created.status == 201, created.body
    conf_id = created.body["id"]
    pcm = [tone(f, TALK_S, level=LEVEL) for f in TONES_HZ]
    peer0, call0 = await live_call(p, a, nursery, pcm[0])
    peer1, call1 = await live_call(p, a, nursery, pcm[1])
    peer2, call2 = await live_call(p, b, nursery, pcm[2])
    peers = (peer0, peer1, peer2)

    # The first join's node holds the bridge; each join is sent to the node that does NOT hold
    # the call (the request is carried to the call's node, which links it to the holder).
    part0 = await join(p, b, conf_id, call0)
    rows = await p.db.fetch_all("SELECT node_id FROM {p}conferences WHERE id = ?", [conf_id])
    assert rows[0]["node_id"] == "node-a"
    part1 = await join(p, b, conf_id, call1)
    part2 = await join(p, a, conf_id, call2)
    again = await p.api(a, "POST", f"/v1.0/conferences/{conf_id}/participants", {"call_id": call2})
    assert (again.status, again.body["error"]) == (409, "call_in_bridge")
    together = [(peer, {0, 1, 2} - {i}, f"together, caller {i}") for i, peer in enumerate(peers)]
    await hear_soon(together, trio.current_time() + 0.5)  # (after the entry tones)

    # Through node B: caller 0 (node A) muted to send; through node A: B's caller kicked.
    path = f"/v1.0/conferences/{conf_id}/participants"
    muted = await p.api(b, "PATCH", f"{path}/{part0['id']}", {"mute_send": True})
    assert muted.status == 200 and muted.body["mute_send"] is True, muted.body
    kicked = await p.api(a, "DELETE", f"{path}/{part2['id']}")
    assert kicked.status == 200 and kicked.body["status"] == "left", kicked.body
    # (B's caller is back with its echo agent: it hears itself, and nobody of the conference)
    after = [(peer0, {1}, "0 muted, still hears"), (peer1, set(), "1: 0 muted, 2 kicked")]
    await hear_soon([*after, (peer2, {2}, "2 back with its agent")], trio.current_time() + 0.3)

    # B's caller joins again (through its own node); caller 0 unmuted through node A; caller 1
    # (node A) kicked through node B.
    part2 = await join(p, b, conf_id, call2)
    unmuted = await p.api(a, "PATCH", f"{path}/{part0['id']}", {"mute_send": False})
    assert unmuted.status == 200 and unmuted.body["mute_send"] is False
    kicked = await p.api(b, "DELETE", f"{path}/{part1['id']}")
    assert kicked.status == 200 and kicked.body["status"] == "left", kicked.body
    back = [(peer0, {2}, "0 hears B's caller again"), (peer2, {0}, "2 hears 0 again")]
    await hear_soon([*back, (peer1, {1}, "1 back with its agent")], trio.current_time() + 0.3)

    # The end, through node B: everyone back with their agents.
    ended = await p.api(b, "DELETE", f"/v1.0/conferences/{conf_id}")
    assert ended.status == 200 and ended.body["status"] == "ended"
    after_end = [(peer, {i}, f"{i} with its agent after the end") for i, peer in enumerate(peers)]
    await hear_soon(after_end, trio.current_time() + 0.3)
    listing = await p.api(a, "GET", f"{path}?page_size=50")
    assert sorted(r["status"] for r in listing.body["result"]) == ["left"] * 4
    assert len(await p.events(conf_id, "conference_participant_added")) == 4
    # each seat leaves once, whoever saw it first (the holder, or the call's node)
    removed = await p.events(conf_id, "conference_participant_removed")
    assert sorted(e["id"] for e in removed) == sorted(
        {part0["id"], part1["id"], part2["id"]} | {r["id"] for r in listing.body["result"]}
    )
    for peer in peers:
        await peer.close()


def pulses(seconds: float, period_s: float, phase_s: float, on_s: float = 0.06) -> np.ndarray:
    """A 1 kHz tone ``on_s`` long every ``period_s``, from ``phase_s`` into each period."""
    pcm = np.frombuffer(tone(1000.0, seconds, level=LEVEL), "<i2").copy()
    t = np.arange(pcm.size) / RATE_HZ
    pcm[((t - phase_s) % period_s) >= on_s] = 0
    return pcm


async def play_in_step(peers: list[AsteriskPeer], pcms: list[bytes]) -> None:
    """Each peer's audio, one frame per 20 ms slot, all peers in the same slot: what they send
    is in step to well under a millisecond, so their pulses' offsets are known."""
    start = trio.current_time()
    for i, offset in enumerate(range(0, len(pcms[0]), 320)):
        await trio.sleep_until(start + i * 0.02)
        for peer, pcm in zip(peers, pcms, strict=True):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await peer.send_raw(encode_frame(0x10, pcm[offset : offset + 320]))


async def call_of(p: Platform, node: Node, peer: AsteriskPeer) -> str:
    with trio.fail_after(15):
        while True:
            listing = await p.api(node, "GET", "/v1.0/calls?status=progressing")
            mine = [c for c in listing.body["result"] if c["leg_ref"] == str(peer.call_uuid)]
            if mine:
                return str(mine[0]["id"])
            await trio.sleep(0.1)


def onsets(peer: AsteriskPeer, after: float) -> list[float]:
    """When each pulse started in what ``peer`` heard (its frames' arrival times, plus the
    sample within the frame), from ``after`` on."""
    found: list[float] = []
    quiet_frames = 0
    for r in peer.audio_frames():
        if r.t < after:
            continue
        loud = np.abs(np.frombuffer(r.payload, "<i2")) > 0.5 * LEVEL * 32767
        if loud.any():
            if quiet_frames >= 5:  # 100 ms of quiet before: a new pulse
                found.append(r.t + int(np.argmax(loud)) / RATE_HZ)
            quiet_frames = 0
        else:
            quiet_frames += 1
    return found


def paired(first: list[float], second: list[float], within_s: float = 0.2) -> list[float]:
    """``second``'s onset minus ``first``'s, for each pulse both heard."""
    out = []
    for t in first:
        near = [u - t for u in second if abs(u - t) < within_s]
        if near:
            out.append(min(near, key=abs))
    return out


def all_loud(pcm16: bytes) -> bool:
    """Sound in every 20 ms frame: a continuous tone, not pulses."""
    x = np.abs(np.frombuffer(pcm16, "<i2")).reshape(-1, RATE_HZ // 50)
    return x.shape[0] >= 10 and bool((x.max(axis=1) > 0.5 * LEVEL * 32767).all())


async def test_the_inter_node_hop_and_a_holder_that_dies(
    platform: Platform,  # noqa: F811
    nursery: trio.Nursery,
) -> None:
    """The hop's added delay, both ways, against the same path without it. Callers 0 and 1 on
    A, 2 on B; 0 and 2 send pulses in step, 2's half a period after 0's. Down: 0's pulse at 2
    (over the link) minus at 1 (local). Up: at 1, 2's pulse (over the link) minus 0's (local),
    minus the half period. Then A is SIGKILLed: B's caller is back with its agent (it hears
    its own echo), and the conference ends."""
    p = platform
    a = await p.start("node-a", ttl_s=4)
    b = await p.start("node-b", ttl_s=4)
    created = await p.api(a, "POST", "/v1.0/conferences", {"name": "hop", "tones": False})
    conf_id = created.body["id"]
    period_s, measure_s, total_s = 0.4, 14.0, 40.0
    peers = [await AsteriskPeer.connect(n.ports["audiosocket"]) for n in (a, a, b)]
    quiet = np.zeros(int(4.0 * RATE_HZ), "<i2")  # while the calls join
    pcm0 = np.concatenate([quiet, pulses(total_s, period_s, 0.0)])
    pcm1 = np.zeros_like(pcm0)
    pcm2 = np.concatenate([quiet, pulses(measure_s, period_s, period_s / 2)])
    pcm2 = np.concatenate([pcm2, np.frombuffer(tone(1000.0, total_s, level=LEVEL), "<i2")])
    pcm2 = pcm2[: pcm0.size]
    for peer in peers:
        nursery.start_soon(peer.read_until_closed)
    nursery.start_soon(play_in_step, peers, [x.tobytes() for x in (pcm0, pcm1, pcm2)])
    started = trio.current_time()
    call_ids = [await call_of(p, n, peer) for n, peer in zip((a, a, b), peers, strict=True)]
    for call_id in call_ids:
        await join(p, a, conf_id, call_id)
    measured_from = started + 4.5
    await trio.sleep_until(started + 4.0 + measure_s - 0.5)
    at1, at2 = onsets(peers[1], measured_from), onsets(peers[2], measured_from)
    down = paired(at1, at2, within_s=0.1)  # 0's pulses: at 2 minus at 1
    zeros = [t for t in at1 if any(abs(u - t) < 0.1 for u in at2)]  # (2 hears only 0's)
    up = [u - t - period_s / 2 for t in zeros for u in at1 if 0.1 < u - t < 0.3]
    assert len(down) >= 25 and len(up) >= 25, (down, up)  # every pulse crossed, each way

    def figures(ms: list[float]) -> str:
        ms = sorted(ms)
        return f"p50 {statistics.median(ms):.1f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.1f} ms"

    print(
        f"\ninter-node hop, added delay against the same path on one node: down (holder's "
        f"bridge -> link -> caller) {len(down)} pulses, {figures([1000 * d for d in down])}; "
        f"up (caller -> link -> holder's bridge) {len(up)} pulses, "
        f"{figures([1000 * d for d in up])}"
    )

    # The holder dies: B's caller's link ends, the call goes back to its (echo) agent.
    await trio.sleep_until(started + 4.0 + measure_s + 1.0)  # 2 talks on, A's pulses go on
    os.kill(a.proc.pid, signal.SIGKILL)
    killed = trio.current_time()
    with trio.fail_after(10):
        while not all_loud(heard(peers[2], trio.current_time() - 0.5, trio.current_time())):
            await trio.sleep(0.1)
    print(f"B's caller hears its agent {trio.current_time() - killed:.2f} s after the kill")
    with trio.fail_after(15):
        while (await p.api(b, "GET", f"/v1.0/conferences/{conf_id}")).body["status"] != "ended":
            await trio.sleep(0.2)
    assert len(await p.events(conf_id, "conference_ended")) == 1
    seats = await p.db.fetch_all(
        "SELECT status FROM {p}participants WHERE conference_id = ?", [conf_id]
    )
    assert [s["status"] for s in seats] == ["left"] * 3
    for peer in peers:
        await peer.close()
