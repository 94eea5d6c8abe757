"""The load generator's measurements, checked on inputs whose answer is known."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from bench.loadgen import (
    _CMSG_BYTES,
    ANCHOR_WINDOW_FRAMES,
    SO_TIMESTAMPNS,
    CallerResult,
    dtmf_tag,
    grid_lateness_ms,
    is_pulse,
    kernel_arrival,
    pair_forward_ms,
    plan_callers,
    pulse_frame,
)


def _paced(n: int, start_s: float = 100.0) -> tuple[list[float], list[float]]:
    return [start_s + k * 0.02 for k in range(n)], [k * 20.0 for k in range(n)]


def test_paced_stream_is_never_late() -> None:
    arrivals, positions = _paced(200)
    assert np.max(np.abs(grid_lateness_ms(arrivals, positions))) < 1e-6


def test_one_late_frame_scores_its_delay() -> None:
    arrivals, positions = _paced(200)
    arrivals[120] += 0.007
    lateness = grid_lateness_ms(arrivals, positions)
    assert lateness[120] == pytest.approx(7.0, abs=1e-6)
    assert np.max(np.abs(np.delete(lateness, 120))) < 1e-6


def test_lasting_shift_is_forgiven_after_the_anchor_window() -> None:
    arrivals, positions = _paced(300)
    arrivals = arrivals[:100] + [t + 0.040 for t in arrivals[100:]]  # an underrun of 40 ms
    lateness = grid_lateness_ms(arrivals, positions)
    assert lateness[100] == pytest.approx(40.0, abs=1e-6)
    assert np.max(lateness[100 + ANCHOR_WINDOW_FRAMES :]) < 1e-6


def test_early_burst_after_queueing_is_not_late() -> None:
    arrivals, positions = _paced(100)
    arrivals[50:55] = [arrivals[49] + 0.001] * 5  # five frames at once, then on time again
    assert np.max(grid_lateness_ms(arrivals, positions)[:50]) < 1e-6


def test_empty_input() -> None:
    assert grid_lateness_ms([], []).size == 0
    assert CallerResult(0, "x").round_trips_ms() == []


def test_pair_forward_skips_lost_pulses() -> None:
    sent = [1.0, 2.0, 3.0]
    got = [1.010, 3.020, 3.5]  # the pulse of t=2.0 was lost
    assert pair_forward_ms(sent, got) == pytest.approx([10.0, 20.0])
    assert pair_forward_ms(sent, []) == []


def test_pulse_detection() -> None:
    assert is_pulse(pulse_frame())
    assert not is_pulse(bytes(320))
    assert not is_pulse(b"")
    assert not is_pulse(b"\x01")  # half a sample is not audio


def test_dtmf_tag_is_four_digits() -> None:
    assert dtmf_tag(7) == "0007" and dtmf_tag(12_345) == "2345"


def test_plan_splits_callers_and_rejects_bad_input() -> None:
    plans = plan_callers("127.0.0.1", 9, 7, 3.0, 1, workers=3)
    assert [p.n_callers for p in plans] == [3, 2, 2]
    assert [p.first_index for p in plans] == [0, 3, 5]
    assert all(p.total_callers == 7 for p in plans)
    assert len(plan_callers("127.0.0.1", 9, 2, 3.0, 1, workers=8)) == 2
    with pytest.raises(ValueError):
        plan_callers("127.0.0.1", 9, 0, 3.0, 1, workers=1)
    with pytest.raises(ValueError):
        plan_callers("127.0.0.1", 9, 1, 0.5, 1, workers=1)  # not longer than the warm-up


def test_arrival_is_the_kernels_receive_time_not_the_read() -> None:
    """A frame that waited in the socket while the generator was busy is timed when it came,
    not when it was read (the generator's own wake-ups must not count as the server's
    lateness)."""
    sender, receiver = _tcp_pair()
    with sender, receiver:
        receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        _until_the_kernel_stamps(sender, receiver)
        sent_before = time.monotonic()
        sender.sendall(b"frame")
        sent_after = time.monotonic()
        time.sleep(0.2)  # the generator's loop busy elsewhere
        read_at = time.monotonic()
        data, ancillary, _, _ = receiver.recvmsg(64, _CMSG_BYTES)
        arrival = kernel_arrival(ancillary, time.time() - time.monotonic())
    assert data == b"frame"
    assert arrival is not None
    # (realtime and monotonic read a few microseconds apart: allow 10 ms either way)
    assert sent_before - 0.01 <= arrival <= sent_after + 0.01 < read_at


def _until_the_kernel_stamps(sender: socket.socket, receiver: socket.socket) -> None:
    """Linux turns receive timestamps on for the machine a moment after the first socket asks
    (deferred work): segments before that carry none (the generator then keeps its read time).
    Wait for stamped segments, within a bound."""
    for _ in range(200):
        sender.sendall(b"p")
        _, ancillary, _, _ = receiver.recvmsg(64, _CMSG_BYTES)
        if kernel_arrival(ancillary, 0.0) is not None:
            return
        time.sleep(0.01)
    raise AssertionError("the kernel never stamped a segment in 2 s")


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a loopback TCP connection, as a caller's (the kernel stamps TCP)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname())
        receiver, _ = listener.accept()
    return sender, receiver


def test_no_timestamp_in_the_ancillary_data_is_none() -> None:
    assert kernel_arrival([], 0.0) is None
    assert kernel_arrival([(socket.SOL_SOCKET, SO_TIMESTAMPNS, b"\0" * 4)], 0.0) is None
