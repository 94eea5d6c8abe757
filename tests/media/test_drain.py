"""media.drain: a leg's own marks are recognised exactly; look-alikes are the agent's."""

from __future__ import annotations

from media.drain import PREFIX, DrainMarks


def test_only_marks_handed_out_are_ours_and_only_once() -> None:
    drains = DrainMarks()
    name, event = drains.new()
    assert name.startswith(PREFIX) and not event.is_set()
    assert drains.played(f"{PREFIX}999") is False  # looks like ours, is the agent's
    assert drains.played(name) is True and event.is_set()
    assert drains.played(name) is False  # a second echo goes on like any mark


def test_release_all_wakes_every_waiter() -> None:
    drains = DrainMarks()
    (first, a), (second, b) = drains.new(), drains.new()
    assert first != second
    drains.release_all()
    assert a.is_set() and b.is_set()
    assert drains.played(first) is False
