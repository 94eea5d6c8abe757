"""RFC 4733 telephone-events: one digit per press, end-packet redundancy, loss, encoder shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.rtp.dtmf import (
    END_PACKET_REPEATS,
    DtmfDecoder,
    DtmfDigit,
    DtmfEncoder,
    DtmfError,
    TelephoneEvent,
)


def _press(digit: str, timestamp: int, duration_ms: int = 100) -> list[tuple[int, bytes]]:
    encoder = DtmfEncoder(digit, timestamp, duration_ms)
    packets: list[tuple[int, bytes]] = []
    while not encoder.done:
        packets.extend((p.timestamp, p.payload) for p in encoder.next_packets())
    return packets


def _decode(packets: list[tuple[int, bytes]]) -> list[DtmfDigit]:
    decoder = DtmfDecoder()
    out = []
    for timestamp, payload in packets:
        out.extend(decoder.receive(timestamp, payload))
    return out + decoder.flush()


def test_encoder_sends_start_continuations_and_three_ends() -> None:
    encoder = DtmfEncoder("5", timestamp=8000, duration_ms=100)
    ticks = []
    while not encoder.done:
        ticks.append(encoder.next_packets())
    assert [len(t) for t in ticks] == [1, 1, 1, 1, END_PACKET_REPEATS]
    flat = [p for tick in ticks for p in tick]
    assert flat[0].marker and not any(p.marker for p in flat[1:])
    assert {p.timestamp for p in flat} == {8000}
    events = [TelephoneEvent.unpack(p.payload) for p in flat]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}
    assert encoder.next_packets() == []


def test_one_digit_per_press_despite_redundant_ends() -> None:
    packets = _press("1", 1000) + _press("#", 5000) + _press("D", 9000, duration_ms=60)
    assert _decode(packets) == [
        DtmfDigit("1", 100, True),
        DtmfDigit("#", 100, True),
        DtmfDigit("D", 60, True),
    ]


def test_duplicated_and_reordered_packets_still_give_one_digit() -> None:
    packets = _press("7", 1000)
    shuffled = [packets[1], packets[0], packets[0], *packets[2:], packets[-1], packets[3]]
    assert _decode(shuffled) == [DtmfDigit("7", 100, True)]


def test_all_end_packets_lost_reported_when_next_press_starts() -> None:
    first = [p for p in _press("3", 1000) if not TelephoneEvent.unpack(p[1]).end]
    digits = _decode(first + _press("4", 5000))
    assert digits == [DtmfDigit("3", 80, False), DtmfDigit("4", 100, True)]


def test_all_end_packets_lost_reported_at_flush() -> None:
    packets = [p for p in _press("9", 1000) if not TelephoneEvent.unpack(p[1]).end]
    assert _decode(packets) == [DtmfDigit("9", 80, False)]


def test_same_digit_pressed_twice_is_two_events() -> None:
    assert [d.digit for d in _decode(_press("2", 1000) + _press("2", 3000))] == ["2", "2"]


def test_non_dtmf_events_are_counted_not_reported() -> None:
    decoder = DtmfDecoder()
    flash = TelephoneEvent(16, True, 10, 800).pack()  # event 16: flash-hook
    assert decoder.receive(100, flash) == []
    assert decoder.non_dtmf_events == 1


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x80\x00"])
def test_short_payload_is_an_error(payload: bytes) -> None:
    with pytest.raises(DtmfError):
        DtmfDecoder().receive(0, payload)


@pytest.mark.parametrize(
    ("digit", "duration_ms"), [("x", 100), ("12", 100), ("", 100), ("1", 10), ("1", 9000)]
)
def test_encoder_refuses_bad_digits_and_durations(digit: str, duration_ms: int) -> None:
    with pytest.raises(DtmfError):
        DtmfEncoder(digit, 0, duration_ms)


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    payload = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.unpack(payload.pack()) == payload


@given(st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=8)), max_size=30))
def test_random_packets_raise_only_dtmf_error(packets: list[tuple[int, bytes]]) -> None:
    decoder = DtmfDecoder()
    seen: list[DtmfDigit] = []
    for timestamp, payload in packets:
        try:
            seen.extend(decoder.receive(timestamp, payload))
        except DtmfError:
            assert len(payload) < 4
    assert all(d.digit in "0123456789*#ABCD" for d in seen)
