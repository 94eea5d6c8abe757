"""Keys a caller presses reach integrators as ``dtmf_received`` events, on every leg, through the
real control plane: on the events WebSocket and to a webhook (they used to reach them only as the
echo agent's transcript text "pressed 5")."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import trio
from conftest import Receiver
from prometheus_client import CollectorRegistry

from ai_pipeline.echo import echo_call
from control.bootstrap import create_access_key
from control.config import ControlConfig
from control.plane import open_control_plane
from media.audiosocket_server import serve_audiosocket
from media.call import CallEnv
from media.config import HostPort, MediaConfig
from media.metrics import MediaMetrics
from media.registry import CallRegistry
from media.twilio import TwilioPeer
from tests.control.test_e2e_audiosocket import _http, _ws_collect, e2e_config
from tests.control.test_e2e_websocket_legs import SID, Plane, media_token, plane, twilio_chunks
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import agent_in_thread, tone
from tests.media.ws_client import play

__all__ = ["e2e_config", "plane"]  # fixtures, imported for their use here


async def collect_call_events(
    nursery: trio.Nursery, http: str, auth: str, customer_id: str
) -> list[dict[str, Any]]:
    """Subscribe to the customer's call events (up to ``call_hungup``); returns once subscribed,
    with the list the events are appended to."""
    events: list[dict[str, Any]] = []
    subscribed = trio.Event()
    token = trio.lowlevel.current_trio_token()

    async def subscriber() -> None:
        events.extend(
            await trio.to_thread.run_sync(
                _ws_collect,
                f"ws://{http}/v1.0/ws",
                auth,
                f"customer_id:{customer_id}:call:*",
                lambda: token.run_sync_soon(subscribed.set),
                "call_hungup",
            )
        )

    nursery.start_soon(subscriber)
    with trio.fail_after(10):
        await subscribed.wait()
    return events


def digits_of(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["resource_id"], e["data"]["digit"]) for e in events if e["type"] == "dtmf_received"]


async def test_audiosocket_keys_are_events_on_the_websocket_and_webhooks(
    nursery: trio.Nursery, e2e_config: ControlConfig, receiver: Receiver
) -> None:
    cfg = e2e_config
    base = f"http://{cfg.http}"
    calls, metrics = CallRegistry(), MediaMetrics(CollectorRegistry())
    with agent_in_thread(echo_call) as agent_url:
        async with open_control_plane(cfg, calls, metrics, nursery) as hooks:
            store = hooks.store  # type: ignore[attr-defined]
            (customer,) = await store.find("customers", name="default")
            _, key = await create_access_key(store, customer["id"], "customer_admin", "dtmf")
            auth = f"AccessKey {key}"
            body = {"url": receiver.url, "event_types": ["dtmf_received"]}
            status, _ = await trio.to_thread.run_sync(
                _http, "POST", f"{base}/v1.0/webhooks", auth, body
            )
            assert status == 201
            media_cfg = replace(MediaConfig(audiosocket=HostPort("127.0.0.1", 0), agent=agent_url))
            env = CallEnv(config=media_cfg, hooks=hooks, metrics=metrics, registry=calls)
            port = await nursery.start(serve_audiosocket, env)

            async with trio.open_nursery() as inner:
                events = await collect_call_events(inner, str(cfg.http), auth, customer["id"])
                peer = await AsteriskPeer.connect(port)
                inner.start_soon(peer.read_until_closed)
                await peer.play(tone(440, 0.3))
                for digit in "5#":
                    await peer.send_dtmf(digit)
                await peer.play(tone(440, 0.3))
                await peer.close()
                inner.cancel_scope.deadline = trio.current_time() + 15

            (call_id,) = {e["resource_id"] for e in events if e["type"] == "call_created"}
            assert digits_of(events) == [(call_id, "5"), (call_id, "#")]
            with trio.fail_after(10):
                while len(receiver.received) < 2:
                    await trio.sleep(0.05)
            hooked = [json.loads(b) for _, b in receiver.received]
            assert digits_of(hooked) == [(call_id, "5"), (call_id, "#")]


async def test_twilio_keys_are_events_on_the_websocket(nursery: trio.Nursery, plane: Plane) -> None:
    peer = TwilioPeer(SID)
    start = peer.start({"agent_id": plane.agent_id})
    chunks = twilio_chunks(peer, tone(440, 0.4))
    chunks[5:5] = [peer.dtmf("7"), peer.dtmf("0")]
    async with trio.open_nursery() as inner:
        events = await collect_call_events(inner, plane.http, plane.auth, plane.customer_id)
        url = f"ws://{plane.http}/v1.0/media-streams?token={await media_token(plane)}"
        await trio.to_thread.run_sync(
            lambda: play(url, [peer.connected(), start], chunks, peer.stop())
        )
        inner.cancel_scope.deadline = trio.current_time() + 15
    (call_id,) = {e["resource_id"] for e in events if e["type"] == "call_created"}
    assert digits_of(events) == [(call_id, "7"), (call_id, "0")]
    assert [e["data"]["duration_ms"] for e in events if e["type"] == "dtmf_received"] == [0, 0]
