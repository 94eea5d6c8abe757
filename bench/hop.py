"""``callbridge bench hop``: the latency the media core adds between a leg and the agent.

``callbridge serve`` is pointed at :mod:`bench.hop_agent`, which echoes and timestamps; N
AudioSocket callers (default 100) send a pulse a second and tag their calls with DTMF. With one
monotonic clock for every process on the host:

- inbound: caller wrote the pulse frame -> agent read it (AudioSocket parse, 8k->16k, link);
- outbound: agent wrote the echo -> caller read it (link, 16k->8k, playout and pacing: a frame
  waits for its 20 ms slot, so up to 20 ms of this is the pacer doing its job);
- round trip at the caller, and the agent's own dwell (subtracted from nothing: shown so it
  can be seen to be small).

Pulses of each call's first second are left out of the two hops (``including_call_start`` keeps
them): they carry the call's setup time, not the per-frame hop. A pulse more than half a second
late pairs with nothing (see :func:`bench.loadgen.pair_forward_ms`); the pulse counts show it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.loadgen import CallerResult, dtmf_tag, pair_forward_ms
from bench.measure import STEP_COLUMNS, add_ramp_argument, run_step, step_row, step_summary
from bench.report import format_table, results_folder, write_json
from bench.server import free_port, launched, python_command
from bench.stats import summarize_ms
from bench.targets import add_calls_arguments, callbridge_target
from media.config import ConfigError

SETTLE_S = 1.0  # a call's first second (its first pulse) is call setup, not the hop


def add_hop_arguments(p: argparse.ArgumentParser) -> None:
    add_calls_arguments(p, default_calls=100)
    add_ramp_argument(p)


def match_hops(
    callers: list[CallerResult], records: list[dict[str, Any]], settle_s: float = 0.0
) -> dict[str, Any]:
    """Pair each caller with the agent's record of its call (by DTMF tag) and time the pulses.

    Pulses of a call's first ``settle_s`` (from its first pulse) are paired but not counted:
    they carry the call's setup (control plane, agent link) and the backlog it left, which is
    call setup time rather than the per-frame hop; ``including_call_start`` counts them."""
    by_tag = {r.get("tag", ""): r for r in records}
    inbound: list[float] = []
    outbound: list[float] = []
    everything: list[float] = []
    matched = 0
    for caller in callers:
        record = by_tag.get(dtmf_tag(caller.index))
        if record is None:
            continue
        matched += 1
        since = caller.pulse_sent_at[0] + settle_s if caller.pulse_sent_at else 0.0
        sent, pulse_in = caller.pulse_sent_at, record["pulse_in"]
        inbound += pair_forward_ms(sent, pulse_in, since=since)
        outbound += pair_forward_ms(record["pulse_out"], caller.pulse_received_at, since=since)
        everything += pair_forward_ms(sent, pulse_in)
        everything += pair_forward_ms(record["pulse_out"], caller.pulse_received_at)
    return {
        "calls_matched": matched,
        "agent_records": len(records),
        # frames the agent did not echo because they came in a burst (bench.hop_agent.LivePace)
        "agent_burst_frames_dropped": sum(r.get("dropped_ahead", 0) for r in records),
        "inbound_leg_to_agent": summarize_ms(inbound),
        "outbound_agent_to_leg": summarize_ms(outbound),
        "round_trip_at_caller": summarize_ms([x for c in callers for x in c.round_trips_ms()]),
        "agent_dwell": summarize_ms([us / 1000 for r in records for us in r["dwell_us"]]),
        "settle_s": settle_s,
        "including_call_start": summarize_ms(everything),  # both ways, first pulses too
        "_series": {"inbound": inbound, "outbound": outbound},
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_hop(ns: argparse.Namespace) -> int:
    if ns.calls < 1 or ns.seconds <= 2:
        raise ConfigError("hop needs --calls >= 1 and --seconds > 2")
    folder = results_folder("hop", ns.results_dir)
    agent_port = free_port()
    records_path = folder / "hop-agent.jsonl"
    agent_cmd = python_command(
        "-m", "bench.hop_agent", "--port", str(agent_port), "--out", str(records_path)
    )
    with launched(agent_cmd, "127.0.0.1", agent_port, folder / "hop-agent.log"):
        with callbridge_target(ns, folder, agent=f"ws://127.0.0.1:{agent_port}") as target:
            step = run_step(
                target,
                ns.calls,
                ns.seconds,
                ns.seed,
                ns.workers,
                tag_dtmf=True,
                ramp_rate=ns.ramp_rate,
            )
        time.sleep(0.5)  # calls have ended; let the agent finish writing its records
    hops = match_hops(step.callers, read_records(records_path), settle_s=SETTLE_S)
    series = hops.pop("_series")
    load = step_summary(step, lateness_limit_ms=5.0)
    write_json(
        folder,
        "hop",
        ns.seed,
        {
            "calls": ns.calls,
            "seconds": ns.seconds,
            "ramp_rate": ns.ramp_rate,
            "leg": "audiosocket slin 8 kHz",
        },
        {"hop": hops, "load": load},
    )
    from bench.plots import plot_cdf

    plot_cdf(
        folder / "hop-cdf.png",
        {"leg -> agent": series["inbound"], "agent -> leg (incl. pacing)": series["outbound"]},
        "latency (ms)",
        f"Media core hop latency, {ns.calls} calls",
    )
    rows = [
        [name, s["count"], s["p50_ms"], s["p99_ms"], s["max_ms"]]
        for name, s in hops.items()
        if isinstance(s, dict)
    ]
    print(format_table(["path", "pulses", "p50 ms", "p99 ms", "max ms"], rows))
    print(
        f"\ncalls matched to agent records: {hops['calls_matched']} of {ns.calls}; "
        f"burst frames the agent did not echo: {hops['agent_burst_frames_dropped']}\n"
    )
    print(format_table([h for h, _ in STEP_COLUMNS], [step_row(load)]))
    print(f"results: {folder}")
    return 0
