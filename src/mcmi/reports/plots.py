"""Matplotlib figures written as PNG and PDF, headless."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path_stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; returns both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.tight_layout()
    for p in paths:
        tmp = p.with_name(f".{p.name}.tmp{p.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(p)
    plt.close(fig)
    return paths


def grouped_bars(
    groups: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str,
    title: str,
    xlabel: str,
    ax=None,
):
    """Bars of mean with std error bars: one group per x tick, one bar per series."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for j, (name, (means, stds)) in enumerate(series.items()):
        ax.bar(x + (j - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=name)
    ax.set_xticks(x, groups)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
