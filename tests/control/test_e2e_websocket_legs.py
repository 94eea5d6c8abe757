"""The media WebSocket routes as ``callbridge serve`` mounts them: the real control plane on
Hypercorn, real WebSocket clients (``websockets``, in threads), the echo agent. Each leg's call is
a row in ``GET /v1.0/calls`` with its leg type and emits its events; bad input and bad credentials
close that socket with a code and a reason and count a metric, while a good call goes on."""

from __future__ import annotations

import base64
import functools
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from ai_pipeline.echo import echo_call
from control.auth import jwt_encode
from control.bootstrap import create_access_key
from control.config import ControlConfig
from control.db import DatabaseUrl
from control.plane import open_control_plane
from media.call import CallEnv
from media.chan_websocket import MediaStart, media_start_text
from media.codecs.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.twilio import OutboundMedia, TwilioPeer
from media.websocket_calls import WebsocketCalls
from tests.control.test_e2e_audiosocket import _free_port, _http, _ws_collect
from tests.media.conftest import agent_in_thread, best_snr_db, tone
from tests.media.ws_client import Session, play

SID = "MZe2ee2ee2ee2ee2ee2ee2ee2ee2ee2ee2"


@dataclass
class Plane:
    http: str  # host:port
    auth: str  # Authorization header value
    access_key: str
    customer_id: str
    agent_id: str
    jwt_secret: str


@pytest.fixture
async def plane(
    nursery: trio.Nursery, tmp_path: object, request: pytest.FixtureRequest
) -> AsyncIterator[Plane]:
    http = HostPort("127.0.0.1", _free_port())
    limits = getattr(request, "param", {})  # e.g. {"rate_burst": 3}, by indirect parametrize
    cfg = ControlConfig(
        http=http,
        db=DatabaseUrl.parse(f"sqlite:///{tmp_path}/ws.db"),
        jwt_secret="s" * 32,
        **limits,
    )
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    legs = WebsocketCalls()
    with agent_in_thread(echo_call) as agent_url:
        async with open_control_plane(cfg, calls, metrics, nursery, legs) as hooks:
            store = hooks.store
            (customer,) = await store.find("customers", name="default")
            # Not the default agent: a call that gets it was routed by its parameters.
            agent = await store.insert(
                "agents",
                {"customer_id": customer["id"], "name": "picked", "is_default": 0, "detail": {}},
            )
            _, key = await create_access_key(store, customer["id"], "customer_admin", "e2e")
            media_cfg = MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url)
            legs.attach(CallEnv(media_cfg, hooks, metrics, calls), nursery)
            yield Plane(
                str(http), f"AccessKey {key}", key, customer["id"], agent["id"], cfg.jwt_secret
            )


async def media_token(plane: Plane) -> str:
    url = f"http://{plane.http}/v1.0/media-tokens"
    _, body = await trio.to_thread.run_sync(_http, "POST", url, plane.auth)
    token: str = body["token"]
    return token


def twilio_chunks(peer: TwilioPeer, pcm8k: bytes) -> list[str | bytes]:
    ulaw = pcm16_to_ulaw(pcm8k) + bytes([0xFF]) * 160 * 25
    return [peer.media(ulaw[i : i + 160]) for i in range(0, len(ulaw), 160)]


def slin_chunks(pcm16k: bytes) -> list[str | bytes]:
    slin = pcm16k + bytes(640 * 25)
    return [slin[i : i + 640] for i in range(0, len(slin), 640)]


def leg_errors(plane: Plane) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://{plane.http}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = r'callbridge_leg_errors_total\{leg="(\w+)",reason="(\w+)"\} ([0-9.]+)'
    return {(leg, reason): float(n) for leg, reason, n in re.findall(pattern, text)}


async def call_rows(plane: Plane, leg: str) -> list[dict[str, Any]]:
    _, listing = await trio.to_thread.run_sync(
        _http, "GET", f"http://{plane.http}/v1.0/calls", plane.auth
    )
    return [row for row in listing["result"] if row["leg"] == leg]


@pytest.mark.parametrize("leg", ["twilio", "chan_websocket", "browser"])
async def test_a_websocket_call_is_a_call_in_the_api_with_events(plane: Plane, leg: str) -> None:
    base = f"ws://{plane.http}"
    ws_events: list[Any] = []
    subscribed = trio.Event()
    trio_token = trio.lowlevel.current_trio_token()

    async def subscriber() -> None:
        ws_events.extend(
            await trio.to_thread.run_sync(
                _ws_collect,
                f"{base}/v1.0/ws",
                plane.auth,
                f"customer_id:{plane.customer_id}:call:*",
                lambda: trio_token.run_sync_soon(subscribed.set),
                "call_hungup",
            )
        )

    # Each leg authenticates the way its clients can: a media token, a key in the URL, a header.
    if leg == "twilio":
        peer = TwilioPeer(SID)
        src = tone(1000, 1.5)
        start = peer.start({"agent_id": plane.agent_id, "from": "+15550001111"})
        args: tuple[Any, ...] = (
            f"{base}/v1.0/media-streams?token={await media_token(plane)}",
            [peer.connected(), start],
            twilio_chunks(peer, src),
            peer.stop(),
        )
        kwargs: dict[str, Any] = {}
    else:
        src = tone(1000, 1.5, rate_hz=16000)
        ms = MediaStart("c9", "WebSocket/c9/0x9", "1764062400.9", "slin16", 640, 20)
        path = "chan-websocket" if leg == "chan_websocket" else "browser"
        url = f"{base}/v1.0/{path}?agent_id={plane.agent_id}"
        if leg == "chan_websocket":
            url += f"&access_key={plane.access_key}"
            kwargs = {"subprotocols": ["media"]}
        else:
            kwargs = {"headers": {"Authorization": plane.auth}}
        args = (url, [media_start_text(ms)], slin_chunks(src))

    async with trio.open_nursery() as inner:
        inner.start_soon(subscriber)
        with trio.fail_after(10):
            await subscribed.wait()
        session = await trio.to_thread.run_sync(lambda: play(*args, **kwargs))
    if leg == "twilio":
        out = [TwilioPeer(SID).parse(m) for m in session.received]
        echoed = b"".join(ulaw_to_pcm16(m.ulaw) for m in out if isinstance(m, OutboundMedia))
        assert best_snr_db(src, echoed, max_delay=4000)[0] > 25
    else:
        echoed = b"".join(m for m in session.received if isinstance(m, bytes))
        assert best_snr_db(src, echoed, max_delay=8000)[0] > 60
    (row,) = await call_rows(plane, leg)
    assert row["status"] == "hangup" and row["hangup_cause"] == "caller"
    assert row["agent_id"] == plane.agent_id and row["customer_id"] == plane.customer_id
    if leg == "twilio":
        assert row["leg_ref"] == SID and row["source"] == "+15550001111"
    types = [e["type"] for e in ws_events if e["resource_id"] == row["id"]]
    assert types == ["call_created", "call_answered", "call_hungup"]


def _bad_cases(plane: Plane) -> list[tuple[str, list[str | bytes], int, tuple[str, str]]]:
    """(URL path and query, messages, expected close code, expected counter labels)."""
    peer = TwilioPeer("MZbadbadbadbadbadbadbadbadbadbadba")
    hello: list[str | bytes] = [peer.connected(), peer.start()]
    wrong_key = TwilioPeer(peer.stream_sid).start({"access_key": "ak_wrong"})
    media = json.loads(peer.media(bytes(160)))
    media["media"]["payload"] = "!!not*base64!!"
    garbage = json.dumps(media)
    media["media"]["payload"] = base64.b64encode(bytes(4000)).decode()
    too_big = json.dumps(media)
    unknown = json.dumps({"event": "bogus", "streamSid": peer.stream_sid})
    tw = f"/v1.0/media-streams?access_key={plane.access_key}"
    cw = f"/v1.0/chan-websocket?access_key={plane.access_key}"
    ms = media_start_text(MediaStart("c", "WebSocket/c/0x1", "1764.1", "slin16", 640, 20))
    rest = jwt_encode(
        {"customer_id": plane.customer_id, "role": "agent_user", "exp": time.time() + 60},
        plane.jwt_secret,
    )
    return [
        (tw, ["{not json"], 1008, ("twilio", "bad_json")),
        (tw, [*hello, unknown], 1008, ("twilio", "unknown_event")),
        (tw, [*hello, garbage], 1008, ("twilio", "bad_base64")),
        (tw, [peer.connected(), peer.media(bytes(160))], 1008, ("twilio", "before_start")),
        (tw, [*hello, too_big], 1008, ("twilio", "bad_payload_size")),
        (cw, [bytes(640)], 1008, ("chan_websocket", "before_start")),
        (cw, [ms, bytes(641)], 1008, ("chan_websocket", "bad_payload_size")),
        (cw, ['{"event": '], 1008, ("chan_websocket", "bad_json")),
        ("/v1.0/media-streams", hello, 4401, ("twilio", "unauthorized")),
        ("/v1.0/media-streams", [hello[0], wrong_key], 4401, ("twilio", "unauthorized")),
        ("/v1.0/browser?token=nonsense", [ms], 4401, ("browser", "unauthorized")),
        (f"/v1.0/browser?token={rest}", [ms], 4401, ("browser", "unauthorized")),
        ("/v1.0/chan-websocket?access_key=ak_no", [ms], 4401, ("chan_websocket", "unauthorized")),
    ]


async def test_bad_input_closes_that_socket_with_a_reason_and_a_count(plane: Plane) -> None:
    base = f"ws://{plane.http}"
    peer = TwilioPeer(SID)
    src = tone(700, 4.0)
    good: list[Session] = []

    async def good_call() -> None:
        # As Twilio must (its <Stream> URL takes no query string): the key as a <Parameter>.
        start = peer.start({"access_key": plane.access_key})
        url = f"{base}/v1.0/media-streams"
        chunks = twilio_chunks(peer, src)
        good.append(
            await trio.to_thread.run_sync(play, url, [peer.connected(), start], chunks, peer.stop())
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(good_call)
        with trio.fail_after(10):
            while not [r for r in await call_rows(plane, "twilio") if r["status"] == "progressing"]:
                await trio.sleep(0.1)
        for path, messages, code, labels in _bad_cases(plane):
            before = (await trio.to_thread.run_sync(leg_errors, plane)).get(labels, 0.0)
            session = await trio.to_thread.run_sync(
                functools.partial(play, f"{base}{path}", messages, close=False)
            )
            assert session.code == code, (path, messages[-1][:60], session)
            assert session.reason, (path, session)
            counts = await trio.to_thread.run_sync(leg_errors, plane)
            assert counts.get(labels) == before + 1, (labels, counts)
        assert len(good) == 0  # the good call still running through all of it
    (session,) = good
    assert session.code == 1000
    out = [peer.parse(m) for m in session.received]
    echoed = b"".join(ulaw_to_pcm16(m.ulaw) for m in out if isinstance(m, OutboundMedia))
    assert best_snr_db(src, echoed, max_delay=4000)[0] > 25
    rows = {r["leg_ref"]: r for r in await call_rows(plane, "twilio")}
    assert rows[SID]["hangup_cause"] == "caller"


@pytest.mark.parametrize("plane", [{"rate_per_s": 0.2, "rate_burst": 3}], indirect=True)
async def test_a_client_opening_sockets_in_a_loop_is_held_back(plane: Plane) -> None:
    url = f"ws://{plane.http}/v1.0/media-streams?access_key={plane.access_key}"
    codes = []
    for _ in range(5):
        session = await trio.to_thread.run_sync(
            functools.partial(play, url, ["{not json"], close=False)
        )
        codes.append(session.code)
    assert codes[:3] == [1008, 1008, 1008]  # within the burst: heard, and refused for its JSON
    assert codes[3:] == [1013, 1013]  # then: try again later
    assert (await trio.to_thread.run_sync(leg_errors, plane))[("twilio", "rate_limited")] == 2
