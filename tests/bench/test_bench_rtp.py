"""``callbridge bench capacity --leg rtp``: callers place SIP calls to serve's ``--sip`` listener
and speak PCMU over RTP (bench/sip_wire.py); the same smoke checks as the other legs."""

from __future__ import annotations

from pathlib import Path

from test_bench_runs import SECONDS, check_step, load, run_bench


def test_capacity_of_the_rtp_leg(tmp_path: Path) -> None:
    rc, _ = run_bench(
        "capacity",
        "--leg",
        "rtp",
        "--seed",
        "11",
        "--steps",
        "2",
        "--step-seconds",
        SECONDS,
        "--results-dir",
        str(tmp_path),
    )
    assert rc == 0
    doc = load(tmp_path, "capacity")
    check_step(doc["results"]["steps"][0], 2)
    assert doc["params"]["leg"] == "rtp, 8 kHz"
    assert "--sip" in doc["results"]["server"]
