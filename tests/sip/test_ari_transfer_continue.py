"""A transfer by ``continue`` (sip/ari/transfer.py) against a stand-in for ARI's REST calls:
Asterisk answers the continue before the caller has left our app, so the media core may be
done with the call (``release``) before the caller's StasisEnd arrives, or after it. The
real-Asterisk test: tests/sip/test_ari_asterisk.py::test_transfer_by_continue_into_the_dialplan."""

from __future__ import annotations

from typing import Any, cast

import pytest

from media.config import HostPort
from sip.ari import requests as rq
from sip.ari.app import AriApp
from sip.ari.client import AriClient
from sip.ari.config import AriConfig
from sip.ari.events import Channel, StasisEnd
from sip.ari.state import AriCall
from tests.sip.test_ari_conference_restart import _done


class Recorder:
    """Answers every REST call as Asterisk does when it agrees; ``sent``: method and path."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def call(self, req: rq.AriRequest) -> Any:
        self.sent.append((req.method, req.path))
        return None


@pytest.mark.parametrize("released_first", [True, False])
async def test_the_bridge_goes_whichever_comes_first_release_or_stasis_end(
    released_first: bool,
) -> None:
    asterisk = Recorder()
    cfg = AriConfig(
        url="http://127.0.0.1:1/ari", user="u", password="p", media_host=HostPort("h", 1)
    )
    app = AriApp(cfg, cast(AriClient, asterisk))
    call = AriCall.new(Channel("caller-1"), ())
    call.call_id, call.running = "call-1", True
    app.calls.add(call)
    outcome = await app.transfer(call.call_uuid, "300")
    assert outcome.status == "transferring"
    left = StasisEnd(Channel("caller-1"))
    if released_first:
        app.release(call.call_uuid, "transferred to 300")
        await app._on_event(left)
    else:
        await app._on_event(left)
        app.release(call.call_uuid, "transferred to 300")
    await _done(app)
    assert ("DELETE", f"/bridges/{call.bridge_id}") in asterisk.sent
    assert ("DELETE", "/channels/caller-1") not in asterisk.sent  # it is the dialplan's now
    assert app.calls.by_uuid(call.call_uuid) is None and len(app.calls) == 0
