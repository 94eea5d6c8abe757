"""``callbridge serve --sip`` as a user runs it: the listener answers OPTIONS, a call is answered
and echoed over RTP, and it shows in the metrics with the SIP leg's label."""

from __future__ import annotations

import argparse
import urllib.request
from pathlib import Path

import pytest
import trio

from media.config import ConfigError, HostPort
from sip.config import SipConfig, from_args
from tests.sip.peers import free_udp_port, sip_options_ok
from tests.sip.uac import Uac
from tests.test_serve import start_serve, stop_serve


@pytest.mark.slow
async def test_serve_with_sip_answers_and_echoes_a_call(tmp_path: Path) -> None:
    sip_port = free_udp_port()
    proc, ports = start_serve(tmp_path, "--agent", "echo", "--sip", f"127.0.0.1:{sip_port}")
    try:
        with trio.fail_after(60):
            while not await trio.to_thread.run_sync(sip_options_ok, sip_port):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        uac = await Uac.open(sip_port)
        assert (await uac.call()).status == 200
        async with trio.open_nursery() as inner:
            inner.start_soon(uac.play_fixture)
            with trio.fail_after(20):
                while uac.rtp_payload_types[0] < 50:
                    await uac.count_rtp(0.5)
            inner.cancel_scope.cancel()
        assert (await uac.in_dialog("BYE")).status == 200
        uac.close()
        url = f"http://127.0.0.1:{ports['http']}/metrics"
        text = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert b'callbridge_calls_total{leg="sip"} 1.0' in text
    finally:
        await trio.to_thread.run_sync(stop_serve, proc)


def test_sip_configuration_is_checked_once() -> None:
    assert from_args(_ns(sip="")) is None  # off by default
    cfg = from_args(_ns(sip="127.0.0.1:5080", rtp_ports="20000-20100"))
    assert cfg == SipConfig(HostPort("127.0.0.1", 5080), rtp_port_min=20000, rtp_port_max=20100)
    for bad in (
        _ns(sip="0.0.0.0:5060"),  # which address would Contact and SDP carry?
        _ns(sip="127.0.0.1:5060", rtp_ports="20000"),
        _ns(sip="127.0.0.1:5060", rtp_ports="30000-20000"),
        _ns(sip="127.0.0.1:5060", sip_advertise="sip.example.com"),
        _ns(sip="127.0.0.1:5060", sip_invite_rate=0.0),
    ):
        with pytest.raises(ConfigError):
            from_args(bad)
    advertised = from_args(_ns(sip="0.0.0.0:5060", sip_advertise="192.0.2.7"))
    assert advertised is not None and advertised.public_host == "192.0.2.7"


def _ns(**values: object) -> argparse.Namespace:
    defaults = dict(sip="", sip_advertise="", rtp_ports="10000-20000", sip_invite_rate=10.0,
                    sip_invite_burst=50)  # fmt: skip
    return argparse.Namespace(**{**defaults, **values})
