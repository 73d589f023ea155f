"""Matplotlib figures written as PNG and PDF, headless."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path_stem: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``<stem>.png`` (``dpi``) and ``<stem>.pdf``, each atomically (:func:`mcmi.io.atomic_write`);
    closes the figure and returns both paths. ``tight_layout`` unless the figure has a layout engine."""
    from mcmi.io import atomic_write

    stem = Path(path_stem)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    if fig.get_layout_engine() is None:  # figures with their own layout engine keep it
        fig.tight_layout()
    try:
        for p in paths:
            atomic_write(p, lambda f, fmt=p.suffix[1:]: fig.savefig(f, format=fmt, dpi=dpi))
    finally:
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
