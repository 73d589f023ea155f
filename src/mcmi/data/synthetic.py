"""The synthetic Gaussian classification task with a known Bayes posterior (paper Appendix A.6).

Labels are uniform over C classes; ``x | y=k ~ N(mu_k, s^2 I)`` with the entries of each mean
drawn uniformly from ``{-delta, 0, +delta}``. The Bayes conditional distribution is then exact:

    P*(k | x) = softmax_k( -||x - mu_k||^2 / (2 s^2) ).

Two parameterizations of the noise exist and disagree:

- ``noise_is="std"`` (default, the paper's text): ``s = noise`` (sigma = 4), split 0.9/0.05/0.05.
- ``noise_is="variance"`` (the code of Ren et al. 2021, which the paper follows): ``s^2 = noise``
  (6 there), split 0.05 train / 0.05 validation / 0.90 test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

SPLITS = ("train", "val", "test")


@dataclass
class GaussianTask:
    """One sampled data set: inputs, labels, exact posteriors and split indices."""

    x: Tensor  # (N, dim) float32
    y: Tensor  # (N,) int64
    posterior: Tensor  # (N, C) float32, exact P*(x)
    means: Tensor  # (C, dim)
    std: float
    split_index: dict[str, Tensor]

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    def split(self, name: str) -> tuple[Tensor, Tensor, Tensor]:
        """(x, y, P*) of split ``name`` (train, val or test)."""
        if name not in self.split_index:
            raise KeyError(f"unknown split {name!r}; known: {', '.join(SPLITS)}")
        i = self.split_index[name]
        return self.x[i], self.y[i], self.posterior[i]

    def bayes_accuracy(self, name: str = "test") -> dict[str, float]:
        """Accuracy of the Bayes classifier on a split: ``empirical`` (argmax P* vs sampled y) and
        ``expected`` (mean of max_k P*(k|x), the same quantity without label noise)."""
        _, y, post = self.split(name)
        return {
            "empirical": float((post.argmax(1) == y).double().mean()),
            "expected": float(post.max(1).values.double().mean()),
        }


def bayes_posterior(x: Tensor, means: Tensor, std: float) -> Tensor:
    """Exact P*(y|x) for equal-prior isotropic Gaussians, computed in float64."""
    d2 = torch.cdist(x.double(), means.double()).pow(2)
    return torch.softmax(-d2 / (2 * std**2), dim=1).float()


def make_gaussian_task(
    delta: float,
    seed: int,
    n: int = 100_000,
    num_classes: int = 10,
    dim: int = 30,
    noise: float = 4.0,
    noise_is: str = "std",
    split: tuple[float, float, float] | None = None,
) -> GaussianTask:
    """Sample the A.6 data set for mean spacing ``delta``; everything is determined by ``seed``."""
    if noise_is not in ("std", "variance"):
        raise ValueError(f"noise_is must be 'std' or 'variance', got {noise_is!r}")
    if split is None:
        split = (0.9, 0.05, 0.05) if noise_is == "std" else (0.05, 0.05, 0.9)
    if len(split) != 3 or any(f < 0 for f in split) or not math.isclose(sum(split), 1.0):
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {split}")
    if n < 3 or delta < 0 or noise <= 0:
        raise ValueError(f"need n >= 3, delta >= 0, noise > 0; got n={n}, delta={delta}, noise={noise}")
    g = torch.Generator().manual_seed(seed)
    std = noise if noise_is == "std" else math.sqrt(noise)
    means = (torch.randint(0, 3, (num_classes, dim), generator=g).float() - 1.0) * delta
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = means[y] + std * torch.randn(n, dim, generator=g)
    order = torch.randperm(n, generator=g)
    n_train = int(round(split[0] * n))
    n_val = int(round(split[1] * n))
    index = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    return GaussianTask(x, y, bayes_posterior(x, means, std), means, std, index)
