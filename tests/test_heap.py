"""The start-up heap is frozen: a later full collection no longer walks it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from callbridge.heap import freeze_startup_heap


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfreeze")
def test_objects_alive_at_start_up_are_frozen_and_new_ones_are_not() -> None:
    old_list: list[list[int]] = [[] for _ in range(1000)]
    frozen = freeze_startup_heap()
    assert frozen >= len(old_list)
    new: list[list[int]] = [[] for _ in range(10)]
    gc.collect()
    # A full pass leaves the frozen ones where they are: still alive (we hold them), in no
    # generation it walks. (Not gc.get_freeze_count() == frozen: a frozen object that another
    # thread of the test process lets go of is freed by its refcount, and the count drops.)
    tracked = {id(x) for x in gc.get_objects()}
    assert not any(id(x) in tracked for x in old_list)
    in_gen2 = {id(x) for x in gc.get_objects(generation=2)}
    assert all(id(x) in in_gen2 for x in new)  # objects from after start-up are still collected
