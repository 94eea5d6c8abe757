"""Keep the garbage collector's full passes off the audio path.

A full (generation 2) collection walks every tracked object. After start-up a serve process holds
~90 000 of them (Quart, Hypercorn, protobuf, numpy, the routes), nearly all alive for the whole
run, and on this project's 2-core VM one pass over them took 76-79 ms (``gc.callbacks``, 25 echo
calls): a pause every call shares, long enough to push frames past their slot. Freezing the
start-up heap (:func:`gc.freeze`) moves those objects to a permanent generation the collector
never walks, so a full pass only looks at what calls created since, and CPython's rule that
starts one (a quarter of the long-lived objects pending) still bounds what is collected.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then freeze everything alive; returns the number of frozen objects.
    Call it when start-up is done (imports, app, models) and before calls arrive."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
