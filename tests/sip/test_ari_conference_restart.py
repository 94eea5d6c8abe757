"""An Asterisk-mixed conference across a restart of callbridge (sip/ari/conference.py), against
a stand-in for Asterisk's REST bridges that answers as Asterisk does (``POST /bridges/<id>`` for
an id it has: 409 "Bridge with id ... already exists"; an unknown bridge: 404). The joins
themselves against the real Asterisk: tests/sip/test_ari_conference.py."""

from __future__ import annotations

from typing import Any, cast

import trio
import trio.testing

from media.config import HostPort
from sip.ari import requests as rq
from sip.ari.app import AriApp
from sip.ari.client import AriClient
from sip.ari.config import AriConfig
from sip.ari.events import Channel
from sip.ari.state import AriCall


class Bridges:
    """Asterisk's bridges as ARI's REST answers them; ``sent``: every request's method and path."""

    def __init__(self, bridges: dict[str, list[str]]) -> None:
        self.bridges = bridges
        self.sent: list[tuple[str, str]] = []

    async def call(self, req: rq.AriRequest) -> Any:
        self.sent.append((req.method, req.path))
        parts = req.path.strip("/").split("/")
        if parts[0] != "bridges":
            return None
        bridge_id = parts[1]
        if req.method == "POST" and len(parts) == 2:
            if bridge_id in self.bridges:
                raise rq.AriRequestError(409, f"Bridge with id '{bridge_id}' already exists", req)
            self.bridges[bridge_id] = []
        elif bridge_id not in self.bridges:
            raise rq.AriRequestError(404, "Bridge not found", req)
        elif parts[2:] == ["addChannel"]:
            self.bridges[bridge_id].append(req.params["channel"])
        elif req.method == "GET":
            return {"id": bridge_id, "channels": self.bridges[bridge_id]}
        elif req.method == "DELETE":
            del self.bridges[bridge_id]
        return None


async def _done(app: AriApp) -> None:
    """Run the app's queued ARI requests."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app._worker)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def test_a_restarted_callbridge_joins_and_ends_the_conference_asterisk_still_has() -> None:
    # Before the restart: "old-1" joined c1, "old-3" joined c2; both talk on in Asterisk.
    asterisk = Bridges({"cbc-c1": ["old-1"], "cbc-c2": ["old-3"]})
    cfg = AriConfig(
        url="http://127.0.0.1:1/ari", user="u", password="p", media_host=HostPort("h", 1)
    )
    app = AriApp(cfg, cast(AriClient, asterisk))
    call = AriCall.new(Channel("new-2"), ())
    call.call_id = "call-2"
    app.calls.add(call)
    assert await app.conferences.join("call-2", "c1") == "cbc-c1"
    assert asterisk.bridges["cbc-c1"] == ["old-1", "new-2"]  # the one Asterisk had, not refused
    app.conferences.left(call)  # the new member hangs up; the old one is still in the bridge
    await _done(app)
    assert "cbc-c1" in asterisk.bridges and ("DELETE", "/bridges/cbc-c1") not in asterisk.sent
    await app.conferences.end("c2")  # nobody joined c2 since the restart
    await _done(app)
    assert ("DELETE", "/channels/old-3") in asterisk.sent and "cbc-c2" not in asterisk.bridges
