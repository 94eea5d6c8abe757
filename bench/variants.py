"""The serves an A/B capacity run starts side by side (``bench capacity --media-tick off,on
--media-batch off,on --mux-flush-ms A,B --agent-link ws,mux``): every combination of the switches
given, each with its label and the environment it runs with (issue 15's before and after in one
run)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

from media.agent_mux import FLUSH_SWITCH
from media.config import ConfigError
from media.tick import BATCH_SWITCH
from media.tick import ENV_SWITCH as TICK_SWITCH


def _listed(text: str, valid: Callable[[str], bool]) -> list[str] | None:
    """The comma-separated values of ``text``; None where one is not ``valid`` or repeats."""
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not all(valid(v) for v in values) or len(set(values)) != len(values):
        return None
    return values


def parse_tick(text: str, flag: str = "--media-tick") -> list[str]:
    values = _listed(text, lambda v: v in ("off", "on"))
    if values is None:
        raise ConfigError(f"{flag}: expected off,on (or one of them), got {text!r}")
    return values


def parse_links(text: str) -> list[str]:
    values = _listed(text, lambda v: v in ("ws", "mux"))
    if values is None:
        raise ConfigError(f"--agent-link: expected ws,mux (or one of them), got {text!r}")
    return values


@dataclasses.dataclass(frozen=True)
class Variant:
    """One serve of an A/B run: the shared tick on or off, the agent link ws or mux, the
    batched resampling on or off, the multiplexed link's write coalescing in ms (None: serve's
    default)."""

    tick: str | None
    link: str | None
    batch: str | None = None
    flush_ms: str | None = None
    name: str | None = None  # a named pair's (``--core before,after``)
    hold_ms: str | None = None  # serve's --playout-hold-ms (None: its default)

    @property
    def label(self) -> str:
        parts = [
            f"{self.name}:" if self.name else "",
            f"tick {self.tick}" if self.tick else "",
            f"link {self.link}" if self.link else "",
            f"batch {self.batch}" if self.batch else "",
            f"flush {self.flush_ms}ms" if self.flush_ms else "",
            f"hold {self.hold_ms}ms" if self.hold_ms else "",
        ]
        return " ".join(p for p in parts if p)

    def environment(self) -> dict[str, str]:
        """The switches this serve runs with (the rest: serve's defaults)."""
        switches = {TICK_SWITCH: self.tick, BATCH_SWITCH: self.batch}
        found = {name: "1" if value == "on" else "0" for name, value in switches.items() if value}
        if self.flush_ms:
            found[FLUSH_SWITCH] = self.flush_ms
        return found


def variants(
    ticks: list[str],
    links: list[str],
    batches: list[str] | None = None,
    flushes: list[str] | None = None,
    holds: list[str] | None = None,
) -> list[Variant]:
    """Every combination of the values given, in order."""
    axes: list[list[str | None]] = [
        [*axis] or [None] for axis in (ticks, links, batches or [], flushes or [], holds or [])
    ]
    return [
        Variant(tick, link, batch, flush, hold_ms=hold)
        for tick, link, batch, flush, hold in itertools.product(*axes)
    ]


def parse_holds(text: str) -> list[str]:
    values = _listed(text, str.isdigit)
    if values is None:
        raise ConfigError(f"--playout-hold-ms: expected whole milliseconds MS,MS, got {text!r}")
    return values


CORE_PAIR = {
    # the starting point: a reader and a pacer task per call, a WebSocket per call to
    # the agent, each call's audio resampled on its own
    "before": Variant("off", "ws", "off", name="before"),
    # the defaults: one reader and one tick per process, the multiplexed link, batched resampling
    "after": Variant("on", "mux", "on", name="after"),
}


def parse_core(text: str) -> list[Variant]:
    """``--core before,after``: the media core's switches all off, then all on (the default)."""
    values = _listed(text, lambda v: v in CORE_PAIR)
    if values is None:
        raise ConfigError(f"--core: expected before,after (or one of them), got {text!r}")
    return [CORE_PAIR[v] for v in values]


def parse_flushes(text: str) -> list[str]:
    values = _listed(text, _milliseconds)
    if values is None:
        raise ConfigError(f"--mux-flush-ms: expected milliseconds MS,MS (>= 0), got {text!r}")
    return values


def _milliseconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


SWITCHES = (TICK_SWITCH, BATCH_SWITCH, FLUSH_SWITCH)
