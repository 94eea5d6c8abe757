"""The media WebSockets as ``serve`` mounts them, seen from inside a live call: the leg reads
Hypercorn's ASGI ``receive`` itself. Through Quart-Trio's ``websocket`` every caller message
passed two more tasks and two more channels (Quart-Trio's message pump, then our relay), which
with a deadline per message made the media-streams leg cost 1.7-1.9x AudioSocket's CPU per call
and fall behind on a loaded machine (``bench/RESULTS.md``, media-streams leg)."""

from __future__ import annotations

from typing import Any

import trio

from control.routes_media import MEDIA_ROUTES, _route
from media.codecs.g711 import ulaw_to_pcm16
from media.twilio import OutboundMedia, TwilioPeer
from tests.control.test_e2e_websocket_legs import (  # noqa: F401  (plane: a fixture)
    Plane,
    call_rows,
    plane,
    twilio_chunks,
)
from tests.media.conftest import best_snr_db, tone
from tests.media.ws_client import play

SID = "MZd1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"


def task_names() -> list[str]:
    """Every task of this Trio run (the control plane, Hypercorn and the media core all run
    in this test's)."""
    names: list[str] = []
    root = trio.lowlevel.current_root_task()
    assert root is not None
    todo = [root]
    while todo:
        task = todo.pop()
        names.append(task.name)
        todo.extend(t for n in task.child_nurseries for t in n.child_tasks)
    return names


async def test_caller_messages_reach_the_leg_with_no_task_between(plane: Plane) -> None:  # noqa: F811
    peer = TwilioPeer(SID)
    src = tone(1000, 2.0)
    url = f"ws://{plane.http}/v1.0/media-streams?access_key={plane.access_key}"
    during_call: list[str] = []

    async def look() -> None:
        with trio.fail_after(10):
            while not [r for r in await call_rows(plane, "twilio") if r["status"] == "progressing"]:
                await trio.sleep(0.05)
        during_call.extend(task_names())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(look)
        first = [peer.connected(), peer.start()]
        chunks = twilio_chunks(peer, src)
        session = await trio.to_thread.run_sync(play, url, first, chunks, peer.stop())
    out = [peer.parse(m) for m in session.received]
    echoed = b"".join(ulaw_to_pcm16(m.ulaw) for m in out if isinstance(m, OutboundMedia))
    assert best_snr_db(src, echoed, max_delay=4000)[0] > 25  # the call worked
    assert any(name.endswith("LegSide.reader") for name in during_call), during_call
    # Quart-Trio's pump for a WebSocket, and our relay's inbound half: neither runs.
    pumps = ("WebsocketConnection.handle_messages", "relay.<locals>.inbound")
    between = [name for name in during_call if name.endswith(pumps)]
    assert not between, between


def test_media_paths_are_matched_below_hypercorns_root_path() -> None:
    scope: Any = {"type": "websocket", "path": "/cb/v1.0/media-streams", "root_path": "/cb"}
    assert MEDIA_ROUTES[_route(scope)] == "twilio"
    unrooted: Any = {**scope, "root_path": ""}
    assert _route(unrooted) == "/cb/v1.0/media-streams"  # no root: as is
