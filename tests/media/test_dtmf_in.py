"""A key the caller presses reaches the control plane (``CallHooks.dtmf_received``) whoever the
call talks with: here a bridge, with the agent parked and so never told."""

from __future__ import annotations

import trio

from media.bridge import Bridge
from tests.media.asterisk_peer import AsteriskPeer
from tests.media.conftest import Media
from tests.media.test_bridge_calls import handle_of


async def test_a_key_pressed_in_a_bridge_is_reported(media_echo: Media) -> None:
    bridge = Bridge("conf-dtmf", tones=False)
    peer = await AsteriskPeer.connect(media_echo.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        nursery.start_soon(peer.read_until_closed)
        call = await handle_of(media_echo, peer)
        await peer.play(bytes(320 * 5))
        call.join_bridge(bridge, agent="park")
        assert call.bridge_id == "conf-dtmf"
        await peer.play(bytes(320 * 5))
        await peer.send_dtmf("3")
        await peer.play(bytes(320 * 10))
        await peer.close()
        bridge.close()
    assert media_echo.hooks.digits == [(call.call_id, "3")]
    # the parked echo agent never heard it (it would have said "pressed 3")
    assert "pressed 3" not in [t for _, _, t in media_echo.hooks.transcripts]
