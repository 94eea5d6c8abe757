"""The ARI client's sans-I/O cores: events, REST requests, reconcile, back-off, configuration.
(The same code against a real Asterisk: tests/sip/test_ari_asterisk.py.)"""

from __future__ import annotations

import argparse
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.config import ConfigError, HostPort
from sip.ari import config as ari_config
from sip.ari import requests as rq
from sip.ari.causes import REASON_CODES, caller_hangup_reason, cause_word, ending_reason
from sip.ari.client import backoff_s
from sip.ari.events import (
    AriProtocolError,
    Bridge,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelEnteredBridge,
    ChannelHangupRequest,
    Other,
    RecordingEvent,
    StasisStart,
    parse_event,
    parse_stasis_args,
)
from sip.ari.reconcile import Adopt, Held, plan, stasis_args_of

# A StasisStart as Asterisk sent it here (a Local channel originated into Stasis(callbridge,...)).
STASIS_START = {
    "type": "StasisStart",
    "timestamp": "2026-12-07T05:40:00.000+0000",
    "args": ["agent=42", "lang=en"],
    "channel": {
        "id": "1765085000.12",
        "name": "Local/100@caller-00000001;1",
        "state": "Up",
        "protocol_id": "",
        "caller": {"name": "Alice", "number": "+15550001"},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {
            "context": "incoming",
            "exten": "5551234",
            "priority": 3,
            "app_name": "Stasis",
            "app_data": "callbridge,agent=42,lang=en",
        },
        "creationtime": "2026-12-07T05:40:00.000+0000",
        "language": "en",
        "channelvars": {"CB_LANG": "en"},
    },
    "asterisk_id": "02:42:ac:11:00:02",
    "application": "callbridge",
}


def test_stasis_start_carries_caller_dnis_args_and_variables() -> None:
    event = parse_event(json.dumps(STASIS_START))
    assert isinstance(event, StasisStart)
    ch = event.channel
    assert (ch.id, ch.state, ch.caller_number, ch.caller_name) == (
        "1765085000.12",
        "Up",
        "+15550001",
        "Alice",
    )
    assert (ch.context, ch.exten, ch.app_name) == ("incoming", "5551234", "Stasis")
    assert ch.channelvars == {"CB_LANG": "en"}
    assert parse_stasis_args(event.args) == {"agent_id": "42", "lang": "en"}


def test_other_events() -> None:
    channel = STASIS_START["channel"]
    destroyed = parse_event(
        json.dumps(
            {"type": "ChannelDestroyed", "cause": 17, "cause_txt": "User busy", "channel": channel}
        )
    )
    assert isinstance(destroyed, ChannelDestroyed)
    assert (destroyed.cause, destroyed.cause_txt) == (17, "User busy")
    hangup = parse_event(
        json.dumps({"type": "ChannelHangupRequest", "cause": 16, "channel": channel})
    )
    assert isinstance(hangup, ChannelHangupRequest) and hangup.cause == 16
    dtmf = parse_event(
        json.dumps(
            {"type": "ChannelDtmfReceived", "digit": "5", "duration_ms": 100, "channel": channel}
        )
    )
    assert isinstance(dtmf, ChannelDtmfReceived) and (dtmf.digit, dtmf.duration_ms) == ("5", 100)
    entered = parse_event(
        json.dumps(
            {
                "type": "ChannelEnteredBridge",
                "bridge": {"id": "cbb-1", "bridge_type": "mixing", "channels": ["a", "b"]},
                "channel": channel,
            }
        )
    )
    assert isinstance(entered, ChannelEnteredBridge)
    assert entered.bridge == Bridge("cbb-1", "mixing", ("a", "b"))
    rec = parse_event(
        json.dumps(
            {
                "type": "RecordingFinished",
                "recording": {
                    "name": "r1",
                    "state": "done",
                    "target_uri": "bridge:cbb-1",
                    "duration": 3,
                },
            }
        )
    )
    assert isinstance(rec, RecordingEvent) and rec.recording.duration_s == 3
    other = parse_event(json.dumps({"type": "ChannelVarset", "channel": channel}))
    assert other == Other("ChannelVarset", "1765085000.12")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"no": "type"}',
        '{"type": "StasisStart", "channel": {"name": "no id"}}',
        '{"type": "StasisStart"}',
        '{"type": "ChannelEnteredBridge", "channel": {"id": "x"}, "bridge": 3}',
        '{"type": "RecordingFinished", "recording": {}}',
    ],
)
def test_malformed_events_are_protocol_errors(text: str) -> None:
    with pytest.raises(AriProtocolError):
        parse_event(text)


_KEYS = ["id", "name", "caller", "dialplan", "channels", "number", "args", "channelvars"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
_EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["StasisStart", "ChannelDestroyed", "ChannelLeftBridge", "X"])},
    optional={k: _JSON for k in ("channel", "bridge", "recording", "args", "cause", "digit")},
)


@given(_EVENT | _JSON)
def test_parse_event_raises_only_protocol_errors(raw: object) -> None:
    """Asterisk's JSON of any shape: an event or an AriProtocolError, never a crash."""
    with contextlib.suppress(AriProtocolError):
        parse_event(json.dumps(raw))


def test_stasis_args() -> None:
    assert parse_stasis_args(("agent=7", "bare", "=x", " k = v ")) == {
        "agent_id": "7",
        "arg1": "bare",
        "k": "v",
    }


def test_requests_encode_ids_and_parameters() -> None:
    req = rq.external_media("callbridge", "cbm-1", "127.0.0.1:9000", "0b5e...")
    target = req.target("/ari")
    assert target.startswith("/ari/channels/externalMedia?")
    assert "encapsulation=audiosocket" in target and "transport=tcp" in target
    assert "external_host=127.0.0.1%3A9000" in target and "format=slin16" in target
    assert rq.hangup("a/b c", "busy").target("/ari") == "/ari/channels/a%2Fb%20c?reason=busy"
    assert rq.add_channels("cbb-1", "x", "y").params == {"channel": "x,y"}
    with pytest.raises(ValueError):
        rq.hangup("x", "because")


def test_error_responses() -> None:
    req = rq.answer("nope")
    with pytest.raises(rq.AriRequestError) as err:
        rq.decode_response(req, 404, b'{"message": "Channel not found"}')
    assert err.value.status == 404 and err.value.message == "Channel not found"
    assert rq.decode_response(req, 204, b"") is None
    with pytest.raises(AriProtocolError):
        rq.decode_response(rq.list_channels(), 200, b"<html>")
    assert rq.decode_response(rq.stored_recording_file("r"), 200, b"RIFF") == b"RIFF"


def test_hangup_causes_in_ari_words() -> None:
    assert [cause_word(c) for c in (16, 17, 19, 21, 34, 42, 0, 99)] == [
        "normal",
        "busy",
        "no_answer",
        "rejected",
        "congestion",
        "congestion",
        "unknown",
        "cause 99",
    ]
    assert caller_hangup_reason(17) == "caller hung up: busy (Q.850 17)"
    assert caller_hangup_reason(0) == "caller hung up"
    assert caller_hangup_reason(99, "Odd Cause") == "caller hung up: odd cause (Q.850 99)"
    assert ending_reason("api", refused=False) == "normal"
    assert ending_reason("goodbye", refused=True) == "rejected"
    assert ending_reason("customer_disabled", refused=False) == "rejected"
    assert set(REASON_CODES) == set(rq.HANGUP_REASONS)  # every word is one ARI takes


def _ch(cid: str, app_data: str = "", app_name: str = "Stasis") -> Channel:
    return Channel(cid, app_name=app_name if app_data else "", app_data=app_data)


def test_reconcile_after_asterisk_restart_ends_every_held_call() -> None:
    held = [Held("c1", "cbm-1", "cbb-1"), Held("c2", "cbm-2", "cbb-2")]
    result = plan("callbridge", held, [], [])
    assert result.gone == ("c1", "c2") and not result.adopt


def test_reconcile_after_callbridge_restart_adopts_callers_left_in_the_app() -> None:
    channels = [
        _ch("c1", "callbridge,agent=9"),  # in its bridge; our media channel died with us
        _ch("c2", "callbridge"),  # never got a bridge
        _ch("c3", "otherapp"),  # someone else's app
        _ch("c4", "callbridge"),  # transferred: bridged with a target
        _ch("cbt-1", "callbridge"),
        _ch("c5", "callbridge"),  # in a conference
        _ch("c6", "x", app_name="Dial"),
        _ch("cbm-9"),  # a media channel nobody owns
    ]
    bridges = [
        Bridge("cbb-1", "mixing", ("c1",)),
        Bridge("cbb-4", "mixing", ("c4", "cbt-1")),
        Bridge("cbc-1", "mixing", ("c5",)),
        Bridge("cbb-9", "mixing", ("cbm-9",)),
    ]
    result = plan("callbridge", [], channels, bridges)
    assert result.adopt == (Adopt(channels[0], "cbb-1"), Adopt(channels[1]))
    assert stasis_args_of(channels[0]) == ("agent=9",)
    assert result.hangup == ("cbm-9",)
    assert result.destroy == ("cbb-9",)
    assert result.gone == ()


def test_reconcile_leaves_held_calls_alone() -> None:
    held = [Held("c1", "cbm-1", "cbb-1")]
    channels = [_ch("c1", "callbridge"), _ch("cbm-1")]
    result = plan("callbridge", held, channels, [Bridge("cbb-1", "mixing", ("c1", "cbm-1"))])
    assert result == type(result)()


def test_backoff_doubles_to_a_cap() -> None:
    assert [backoff_s(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert backoff_s(10_000) == 10


def _ns(**kw: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ari_config.add_arguments(parser)
    argv = [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]
    return parser.parse_args(argv)


def test_config(monkeypatch: pytest.MonkeyPatch) -> None:
    local = HostPort("127.0.0.1", 9000)
    assert ari_config.from_args(_ns(), local) is None
    monkeypatch.delenv(ari_config.PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=ari_config.PASSWORD_ENV):
        ari_config.from_args(_ns(ari="http://127.0.0.1:8088", ari_user="u"), local)
    monkeypatch.setenv(ari_config.PASSWORD_ENV, "s3cret")
    cfg = ari_config.from_args(_ns(ari="http://127.0.0.1:8088", ari_user="u"), local)
    assert cfg is not None and cfg.url == "http://127.0.0.1:8088/ari"
    assert cfg.media_host == local and "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError, match="--ari-media-host"):
        ari_config.from_args(_ns(ari="http://h:1", ari_user="u"), HostPort("0.0.0.0", 9000))
    with pytest.raises(ConfigError, match="--ari-app"):
        ari_config.from_args(_ns(ari="http://h:1", ari_user="u", ari_app="a b"), local)
    with pytest.raises(ConfigError, match="--ari:"):
        ari_config.from_args(_ns(ari="ftp://h", ari_user="u"), local)
    # chan_websocket media: Asterisk dials a websocket_client.conf id, our listen address is moot
    ws = ari_config.from_args(
        _ns(ari="http://h:1", ari_user="u", ari_media="websocket", ari_media_connection="cb"),
        HostPort("0.0.0.0", 9000),
    )
    assert ws is not None and (ws.media_transport, ws.media_connection) == ("websocket", "cb")
    with pytest.raises(ConfigError, match="--ari-media-connection"):
        ari_config.from_args(
            _ns(ari="http://h:1", ari_user="u", ari_media="websocket", ari_media_connection="a b"),
            local,
        )
    req = rq.external_media_websocket("callbridge", "cbm-1", "cb")
    assert "transport=websocket" in req.target("/ari") and "encapsulation=none" in req.target("")
