"""PNG plots of bench results (matplotlib, headless Agg backend; the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from bench.resample import ResampleRow


def plot_resample(folder: Path, rows: Sequence[ResampleRow]) -> list[Path]:
    """Cost per frame and quality per candidate, as two bar charts."""
    measured = [r for r in rows if r.cost_up_us is not None]
    names = [r.name for r in measured]
    x = np.arange(len(measured))
    cost_path = folder / "resample-cost.png"
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(x - 0.2, [r.cost_up_us or 0 for r in measured], 0.4, label="8k->16k")
    ax.bar(x + 0.2, [r.cost_down_us or 0 for r in measured], 0.4, label="16k->8k")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("us per 20 ms frame")
    ax.set_title("Resampler cost per frame")
    ax.legend()
    fig.tight_layout()
    fig.savefig(cost_path, dpi=100)
    plt.close(fig)

    quality_path = folder / "resample-quality.png"
    fig, ax = plt.subplots(figsize=(8, 4))
    metrics = [
        ("snr_up_db", "tone SNR 8k->16k"),
        ("image_up_db", "imaging"),
        ("alias_down_db", "aliasing"),
        ("click_db", "clicks"),
    ]
    width = 0.8 / len(metrics)
    for i, (field, label) in enumerate(metrics):
        values = [getattr(r, field) or 0 for r in measured]
        ax.bar(x + (i - 1.5) * width, values, width, label=label)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("dB (SNR: higher is better; others: lower)")
    ax.set_title("Resampler quality")
    ax.legend()
    fig.tight_layout()
    fig.savefig(quality_path, dpi=100)
    plt.close(fig)
    return [cost_path, quality_path]


def plot_cdf(path: Path, series: Mapping[str, Sequence[float]], xlabel: str, title: str) -> Path:
    """Empirical CDFs of several latency series on one chart."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        data = np.sort(np.asarray(values, dtype=np.float64))
        if data.size:
            ax.plot(data, np.arange(1, data.size + 1) / data.size, label=label)
    return _save(fig, ax, path, xlabel, "cumulative fraction", title)


def plot_vs_n(
    path: Path,
    n_values: Sequence[int],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    title: str,
) -> Path:
    """One line per series against the number of calls."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, values in series.items():
        points = [(n, v) for n, v in zip(n_values, values, strict=True) if v is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    return _save(fig, ax, path, "concurrent calls", ylabel, title)


def plot_grouped_bars(
    path: Path,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    title: str,
) -> Path:
    """One bar per series in each group (missing values left out)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        heights = [v if v is not None else 0.0 for v in values]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=label)
    ax.set_xticks(x, groups, rotation=20)
    return _save(fig, ax, path, "", ylabel, title)


def _save(fig: Figure, ax: Axes, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
