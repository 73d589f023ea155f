"""Per-channel pixel statistics for normalization: published constants and an exact counter.

:func:`mcmi.data.datasets.dataset_stats` picks between them by data set name.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch

from mcmi.data.image_dataset import DataError

__all__ = ["KNOWN_STATS", "DatasetStats", "compute_stats"]


class DatasetStats(NamedTuple):
    """Per-channel mean and standard deviation of pixel values scaled to [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_CIFAR10 = DatasetStats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100 = DatasetStats((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))
_IMAGENET = DatasetStats((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
KNOWN_STATS: dict[str, DatasetStats] = {"cifar10": _CIFAR10, "cifar10-partial": _CIFAR10,
                                         "cifar100": _CIFAR100, "cifar100-partial": _CIFAR100,
                                         "cifar100-coarse": _CIFAR100,
                                         "imagenet": _IMAGENET}


def compute_stats(dataset: Any, max_images: int | None = None,
                  batch_size: int = 1024) -> DatasetStats:
    """Exact per-channel mean/std (population) of a data set's uint8 pixels, scaled to [0, 1].

    Counts a 256-bin histogram per channel, batch-wise, so it works for lazy data sets too.
    ``max_images`` limits the count to an evenly spaced subset (for huge lazy folders).
    """
    n = len(dataset)
    if n == 0:
        raise DataError(f"cannot compute statistics of the empty data set {dataset.name!r}")
    idx = torch.arange(n)
    if max_images is not None and n > max_images:
        idx = torch.linspace(0, n - 1, max_images).round().long().unique()
    hist = torch.zeros(3, 256, dtype=torch.float64)
    for start in range(0, idx.numel(), batch_size):
        x = dataset.get_images(idx[start:start + batch_size]).cpu()
        for c in range(3):
            hist[c] += torch.bincount(x[:, c].reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    count = hist.sum(1)
    mean = (hist * values).sum(1) / count
    var = (hist * values**2).sum(1) / count - mean**2
    std = var.clamp_min(0).sqrt()
    return DatasetStats(tuple(mean.tolist()), tuple(std.tolist()))  # type: ignore[arg-type]
