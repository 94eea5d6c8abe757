"""Smoke tests of ``callbridge bench resample``: the JSON holds every field with sane values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import resample
from bench.progress import Progress
from bench.report import format_table
from bench.resamplers import NumpyLinear, SoxrOneShot, SoxrStream, candidates


def test_run_writes_json_and_plots(tmp_path: Path) -> None:
    folder, rows = resample.run_resample(seed=3, n_frames=20, out_dir=tmp_path)
    doc = json.loads((folder / "resample.json").read_text())
    assert doc["seed"] == 3
    assert doc["machine"]["logical_cores"] >= 1
    assert doc["machine"]["python"].startswith("3.")
    names = [r["name"] for r in doc["results"]]
    assert names[0] == "callbridge"
    assert {"soxr-stream-hq", "soxr-oneshot", "numpy-linear", "pipecat-stream"} <= set(names)
    for row in doc["results"]:
        if row["cost_up_us"] is None:
            assert row["note"].startswith("missing")
            continue
        assert row["cost_up_us"] > 0 and row["cost_down_us"] > 0
        assert row["first_output_ms"] >= 20
    assert (folder / "resample-cost.png").stat().st_size > 1000
    assert (folder / "resample-quality.png").stat().st_size > 1000
    table = resample.summary_table(rows)
    assert "soxr-stream-hq" in table and "SNR up dB" in table


def test_quality_separates_streaming_from_per_frame() -> None:
    """The metrics must tell a good resampler from a bad one, or they measure nothing."""
    stream_snr_up, _, stream_clicks = resample.measure_snr_and_clicks(SoxrStream)
    linear_snr_up, _, _ = resample.measure_snr_and_clicks(NumpyLinear)
    oneshot_snr_up, _, oneshot_clicks = resample.measure_snr_and_clicks(SoxrOneShot)
    assert stream_snr_up is not None and linear_snr_up is not None and oneshot_snr_up is not None
    assert stream_snr_up > 70 > 40 > linear_snr_up
    assert stream_clicks is not None and oneshot_clicks is not None
    assert stream_clicks < -60 and oneshot_clicks > -40
    # Plain decimation keeps everything above 4 kHz: full-power aliasing.
    assert resample.measure_alias_down(NumpyLinear) == pytest.approx(0.0, abs=1.0)
    alias = resample.measure_alias_down(SoxrStream)
    assert alias is not None and alias < -60


def test_latency_sees_soxr_buffering() -> None:
    """soxr's stream holds audio back before its first output; one-shot does not."""
    first_stream, mean_stream, worst_stream = resample.measure_latency(SoxrStream)
    first_oneshot, mean_oneshot, worst_oneshot = resample.measure_latency(SoxrOneShot)
    assert first_stream is not None and first_stream > 20
    # It returns audio in ~100 ms bursts: some samples wait most of a burst.
    assert mean_stream is not None and worst_stream is not None and worst_stream >= 60
    assert first_oneshot == 20
    assert mean_oneshot is not None and worst_oneshot is not None and abs(worst_oneshot) < 1


def test_fit_tone_recovers_a_clean_tone_exactly() -> None:
    clean = resample.tone(8000).astype(np.float64)
    fit, residual = resample.fit_tone(clean, 8000, resample.TONE_HZ)
    assert np.max(np.abs(residual)) <= 0.6  # rounding to int16 only
    assert np.allclose(fit, clean, atol=0.6)


def test_missing_candidate_is_reported_not_faked(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.resamplers as r

    def missing() -> r.Candidate:
        return r.Candidate("callbridge", "missing: test", None)

    monkeypatch.setattr(r, "callbridge_candidate", missing)
    row = resample.measure(candidates()[0], np.random.default_rng(0), 10)
    assert row.note == "missing: test" and row.cost_up_us is None and row.snr_db is None


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        Progress("x", 0)
    with pytest.raises(ValueError):
        format_table(["a", "b"], [[1, 2, 3]])


def test_table_aligns_numbers_and_shows_missing() -> None:
    table = format_table(["name", "us"], [["a", 1.5], ["bb", None]]).splitlines()
    assert table[0].startswith("name") and set(table[1]) <= {"-", " "}
    assert table[2].endswith("1.5") and table[3].rstrip().endswith("-")
