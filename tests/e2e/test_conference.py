"""A conference with audio, every part real: the control plane on Hypercorn (REST, events), the
media core's AudioSocket listener and Twilio media-streams route, three Asterisk-like AudioSocket
callers and one Twilio caller (``websockets``' client in a thread), each talking to the echo agent
until the API moves its call into the conference. Each caller sends its own tone; what each one
hears is measured by FFT in time windows (Trio time for the AudioSocket peers, the monotonic
clock for the Twilio client's thread)."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import trio
from prometheus_client import CollectorRegistry
from websockets.sync.client import connect

from ai_pipeline.echo import echo_call
from control.bootstrap import create_access_key
from control.config import ControlConfig
from control.db import DatabaseUrl
from control.plane import open_control_plane
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.twilio import OutboundMedia, TwilioPeer
from media.websocket_calls import WebsocketCalls
from tests.e2e.conftest import free_port
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import agent_in_thread, tone
from tests.media.tones import tone_db

RATE_HZ = 8000
LEVEL = 0.25  # of full scale, each caller
LEVEL_DB = 20 * np.log10(LEVEL)
SOCKET_TONES_HZ = (350.0, 1250.0, 1700.0)  # apart from each other and the entry/exit tones
TWILIO_TONE_HZ = 2300.0
TALK_S = 9.0


def http(method: str, url: str, auth: str, body: Any = None) -> tuple[int, Any]:
    """One request; (status, JSON body) for errors as well."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fetch(url: str, auth: str) -> tuple[str, bytes]:
    """(Content-Type, body) of a GET that answers bytes (a recording)."""
    request = urllib.request.Request(url, headers={"Authorization": auth})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(resp.headers["Content-Type"]), resp.read()


@dataclass
class Stack:
    base: str  # http://host:port
    ws_base: str
    auth: str
    customer_id: str
    audiosocket_port: int
    calls: CallRegistry

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return await trio.to_thread.run_sync(http, method, self.base + path, self.auth, body)


@pytest.fixture
async def stack(nursery: trio.Nursery, tmp_path: object) -> AsyncIterator[Stack]:
    port = free_port()
    cfg = ControlConfig(
        http=HostPort("127.0.0.1", port),
        db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/conf.db"),
        jwt_secret="s" * 32,
        record_dir=str(tmp_path),
    )
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    legs = WebsocketCalls()
    with agent_in_thread(echo_call) as agent_url:
        async with open_control_plane(cfg, calls, metrics, nursery, legs) as hooks:
            (customer,) = await hooks.store.find("customers", name="default")
            await hooks.store.insert(
                "agents",
                {"customer_id": customer["id"], "name": "echo", "is_default": 1, "detail": {}},
            )
            _, key = await create_access_key(hooks.store, customer["id"], "customer_admin", "t")
            media_cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
            env = CallEnv(media_cfg, hooks, metrics, calls)
            legs.attach(env, nursery)
            audiosocket_port = await nursery.start(serve_audiosocket, env)
            yield Stack(
                f"http://127.0.0.1:{port}",
                f"ws://127.0.0.1:{port}",
                f"AccessKey {key}",
                customer["id"],
                audiosocket_port,
                calls,
            )


@dataclass
class TwilioCaller:
    """Twilio's side in a thread: a media message every 20 ms, every message heard stamped."""

    url: str
    pcm8k: bytes
    peer: TwilioPeer = field(default_factory=lambda: TwilioPeer("MZ" + "conf" * 8))
    heard: list[tuple[float, bytes]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with connect(self.url, open_timeout=10, close_timeout=5) as ws:
            reader = threading.Thread(target=self._read, args=(ws,))
            reader.start()
            ws.send(self.peer.connected())
            ws.send(self.peer.start({"from": "+15550009999"}))
            ulaw = pcm16_to_ulaw(self.pcm8k)
            deadline = time.monotonic()
            for i in range(0, len(ulaw), 160):
                if self.stop.is_set():
                    break
                ws.send(self.peer.media(ulaw[i : i + 160]))
                deadline += 0.02
                time.sleep(max(0.0, deadline - time.monotonic()))
            ws.send(self.peer.stop())
            reader.join(10)

    def _read(self, ws: Any) -> None:
        try:
            while True:
                message = self.peer.parse(ws.recv(timeout=10))
                if isinstance(message, OutboundMedia):
                    self.heard.append((time.monotonic(), ulaw_to_pcm16(message.ulaw)))
        except Exception:  # closed: the call is over
            return

    def between(self, start: float, end: float) -> bytes:
        return b"".join(pcm for t, pcm in self.heard if start <= t < end)


def socket_heard(peer: AsteriskPeer, start: float, end: float) -> bytes:
    return b"".join(r.payload for r in peer.audio_frames() if start <= r.t < end)


@dataclass
class Clocks:
    """One instant on both clocks: Trio's (AudioSocket peers) and monotonic (Twilio thread)."""

    trio_s: float
    mono_s: float

    @classmethod
    def now(cls) -> Clocks:
        return cls(trio.current_time(), time.monotonic())

    def window(self, after_s: float, length_s: float) -> Windows:
        return (
            (self.trio_s + after_s, self.trio_s + after_s + length_s),
            (self.mono_s + after_s, self.mono_s + after_s + length_s),
        )


Windows = tuple[tuple[float, float], tuple[float, float]]  # (Trio clock, monotonic clock)


async def live_call_ids(stack: Stack, peers: list[AsteriskPeer]) -> list[str]:
    """The four calls' ids once all are live: the AudioSocket ones in ``peers``' order, then
    the Twilio one."""
    with trio.fail_after(15):
        while True:
            _, listing = await stack.api("GET", "/v1.0/calls?status=progressing")
            rows = listing["result"]
            by_ref = {r["leg_ref"]: r["id"] for r in rows}
            twilio = [r["id"] for r in rows if r["leg"] == "twilio"]
            ids = [by_ref.get(str(p.call_uuid)) for p in peers]
            if all(ids) and twilio and all(stack.calls.get(i) for i in [*ids, *twilio]):
                return [str(i) for i in ids] + twilio
            await trio.sleep(0.1)


async def test_three_audiosocket_callers_and_a_twilio_caller_in_one_conference(
    stack: Stack,
) -> None:
    status, conf = await stack.api("POST", "/v1.0/conferences", {"name": "standup"})
    assert status == 201 and conf["tones"] is True and conf["on_leave"] == "agent"
    peers = [await AsteriskPeer.connect(stack.audiosocket_port) for _ in SOCKET_TONES_HZ]
    twilio = TwilioCaller(
        f"{stack.ws_base}/v1.0/media-streams?access_key={stack.auth.split()[1]}",
        tone(TWILIO_TONE_HZ, TALK_S, level=LEVEL),
    )
    tones = [*SOCKET_TONES_HZ, TWILIO_TONE_HZ]

    def heard(i: int, window: Windows) -> bytes:
        if i < len(peers):
            return socket_heard(peers[i], *window[0])
        return twilio.between(*window[1])

    async with trio.open_nursery() as nursery:
        for peer, freq in zip(peers, SOCKET_TONES_HZ, strict=True):
            nursery.start_soon(peer.read_until_closed)
            nursery.start_soon(peer.play, tone(freq, TALK_S, level=LEVEL))
        nursery.start_soon(trio.to_thread.run_sync, twilio.run)
        call_ids = await live_call_ids(stack, peers)
        echo = Clocks.now().window(0.2, 0.6)
        await trio.sleep(0.9)  # before the conference: each hears its own echo

        parts = []
        for call_id in call_ids:
            status, part = await stack.api(
                "POST", f"/v1.0/conferences/{conf['id']}/participants", {"call_id": call_id}
            )
            assert status == 201, part
            assert part["status"] == "joined" and part["mute_send"] is False
            parts.append(part)
        joined = Clocks.now()
        # Bad input: the same call again, a call that does not exist, an unknown conference.
        status, body = await stack.api(
            "POST", f"/v1.0/conferences/{conf['id']}/participants", {"call_id": call_ids[0]}
        )
        assert (status, body["error"]) == (409, "call_in_bridge")
        status, _ = await stack.api(
            "POST",
            f"/v1.0/conferences/{conf['id']}/participants",
            {"call_id": "00000000-0000-4000-8000-000000000000"},
        )
        assert status == 404
        status, _ = await stack.api(
            "POST",
            "/v1.0/conferences/00000000-0000-4000-8000-000000000000/participants",
            {"call_id": call_ids[1]},
        )
        assert status == 404
        await trio.sleep(1.6)
        together = joined.window(0.5, 1.0)  # after the entry tones

        # Mute caller 0's sending, and kick caller 1 back to its agent.
        status, muted = await stack.api(
            "PATCH",
            f"/v1.0/conferences/{conf['id']}/participants/{parts[0]['id']}",
            {"mute_send": True},
        )
        assert status == 200 and muted["mute_send"] is True
        status, kicked = await stack.api(
            "DELETE", f"/v1.0/conferences/{conf['id']}/participants/{parts[1]['id']}"
        )
        assert status == 200 and kicked["status"] == "left"
        changed = Clocks.now()
        await trio.sleep(1.4)
        after = changed.window(0.5, 0.8)

        status, ended = await stack.api("DELETE", f"/v1.0/conferences/{conf['id']}")
        assert status == 200 and ended["status"] == "ended"
        await trio.sleep(0.5)
        for peer in peers:
            await peer.close()
        twilio.stop.set()

    for i, freq in enumerate(tones):
        assert tone_db(heard(i, echo), freq) > LEVEL_DB - 4, (i, "own echo before")
        during = heard(i, together)
        assert len(during) >= 0.9 * 2 * RATE_HZ, (i, len(during))  # a frame every 20 ms
        for j, other in enumerate(tones):
            level = tone_db(during, other)
            if j == i:
                assert level < LEVEL_DB - 45, (i, "hears itself", level)
            else:  # G.711 on the Twilio leg costs a little: within 1.5 dB of what was sent
                assert abs(level - LEVEL_DB) < 1.5, (i, j, level)
    # After the mute and the kick: nobody in the conference hears 0 or 1; 1 hears its echo.
    for i in (0, 2, 3):
        heard_now = heard(i, after)
        assert tone_db(heard_now, tones[0]) < LEVEL_DB - 45, (i, "hears the muted caller")
        assert tone_db(heard_now, tones[1]) < LEVEL_DB - 45, (i, "hears the kicked caller")
    assert tone_db(heard(0, after), tones[2]) > LEVEL_DB - 1.5  # muted to send, still hears
    kicked_hears = heard(1, after)
    assert tone_db(kicked_hears, tones[1]) > LEVEL_DB - 4  # its own echo: back with its agent
    assert tone_db(kicked_hears, tones[2]) < LEVEL_DB - 45

    _, events = await stack.api("GET", "/v1.0/events?page_size=100")
    types = [e["type"] for e in events["result"] if e["resource_id"] == conf["id"]]
    assert types.count("conference_participant_added") == 4
    assert types.count("conference_participant_updated") == 1
    assert types.count("conference_participant_removed") == 4  # the kick, then the end
    assert "conference_ended" in types
    _, listing = await stack.api("GET", f"/v1.0/conferences/{conf['id']}/participants")
    assert sorted(p["status"] for p in listing["result"]) == ["left"] * 4

    # The recording holds the mix: everyone, at the level each was sent (before the mute).
    url = f"{stack.base}/v1.0/conferences/{conf['id']}/recording"
    content_type, wav = await trio.to_thread.run_sync(fetch, url, stack.auth)
    assert content_type.startswith("audio/wav")
    with wave.open(io.BytesIO(wav)) as recording:
        assert (recording.getnchannels(), recording.getframerate()) == (1, 16000)
        mix = recording.readframes(recording.getnframes())
    assert len(mix) / 2 / 16000 > 2.5  # from the first join to the end
    first_second = mix[: 2 * 16000]
    for freq in tones:
        level = tone_db(first_second, freq, rate_hz=16000)
        assert abs(level - LEVEL_DB) < 1.5, (freq, level)
