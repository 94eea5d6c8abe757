"""control.delivery_queue: per-destination order, retries by due time, bounds (pure, no clock)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from control.delivery_queue import DeliveryQueue


def test_a_pending_retry_holds_back_only_its_own_destination() -> None:
    q: DeliveryQueue[str] = DeliveryQueue(max_jobs=10, max_per_destination=10)
    for dest, item in (("a", "a1"), ("a", "a2"), ("b", "b1"), ("b", "b2")):
        assert q.add(dest, item)
    first = q.take(0.0)
    assert first is not None and (first.item, first.number) == ("a1", 1)
    second = q.take(0.0)
    assert second is not None and second.item == "b1"  # a2 waits for a1, b does not
    assert q.take(0.0) is None
    q.retry(first, at_s=10.0)
    q.done(second)
    nxt = q.take(0.0)
    assert nxt is not None and nxt.item == "b2"  # b goes on while a's head waits for its retry
    q.done(nxt)
    assert q.take(9.9) is None and q.next_due_s() == 10.0
    again = q.take(10.0)
    assert again is not None and (again.item, again.number) == ("a1", 2)
    q.done(again)
    last = q.take(10.0)
    assert last is not None and (last.item, last.number) == ("a2", 1)
    q.done(last)
    assert len(q) == 0 and q.next_due_s() == math.inf


def test_bounds_drop_a_dead_destinations_backlog_not_everyone_elses() -> None:
    q: DeliveryQueue[int] = DeliveryQueue(max_jobs=5, max_per_destination=3)
    assert [q.add("dead", i) for i in range(4)] == [True, True, True, False]
    assert q.add("live", 0) and q.add("live", 1)
    assert not q.add("other", 0)  # 5 in all
    assert len(q) == 5


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.booleans(), st.floats(0.0, 5.0)),
        min_size=1,
        max_size=40,
    )
)
def test_every_item_comes_out_once_in_order_per_destination_one_at_a_time(
    script: list[tuple[str, bool, float]],
) -> None:
    """Offer items, then run a simulated clock: each attempt fails or succeeds per the script
    (an item fails at most twice); the delivered order per destination is the offered order."""
    q: DeliveryQueue[int] = DeliveryQueue(max_jobs=1000, max_per_destination=1000)
    offered: dict[str, list[int]] = {}
    for n, (dest, _, _) in enumerate(script):
        assert q.add(dest, n)
        offered.setdefault(dest, []).append(n)
    delivered: dict[str, list[int]] = {}
    now_s, step = 0.0, 0
    while len(q):
        attempts = []
        while (a := q.take(now_s)) is not None:
            attempts.append(a)
        destinations = [a.destination for a in attempts]
        assert len(destinations) == len(set(destinations))  # never two at once for one
        for a in attempts:
            _, fails, delay_s = script[step % len(script)]
            step += 1
            if fails and a.number < 3:
                q.retry(a, now_s + delay_s)
            else:
                delivered.setdefault(a.destination, []).append(a.item)
                q.done(a)
        if not attempts:
            assert q.next_due_s() > now_s
            now_s = q.next_due_s()
    assert delivered == offered
