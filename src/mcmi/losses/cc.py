"""Correlation congruence (Peng et al., "Correlation Congruence for Knowledge Distillation",
ICCV 2019)."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def rbf_taylor_correlation(feat: Tensor, gamma: float = 0.4, order: int = 2) -> Tensor:
    """Peng et al. (2019): the Gaussian RBF kernel ``exp(-gamma ||f_i - f_j||^2)`` of
    L2-normalized embeddings, approximated by its P-order Taylor expansion

        k(f_i, f_j) ~= sum_{p=0}^{P} exp(-2 gamma) (2 gamma)^p / p! * (f_i . f_j)^p

    (exact for P -> infinity, since ``||f_i - f_j||^2 = 2 - 2 f_i . f_j`` for unit vectors).
    Returns the (N, N) correlation matrix.
    """
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    f = F.normalize(feat.flatten(1), p=2, dim=1)
    sim = f @ f.t()
    corr = sim.new_zeros(sim.shape)
    for p in range(order + 1):
        corr = corr + math.exp(-2.0 * gamma) * (2.0 * gamma) ** p / math.factorial(p) * sim.pow(p)
    return corr


@fp32_loss
def cc_loss(e_s: Tensor, e_t: Tensor, gamma: float = 0.4, order: int = 2) -> Tensor:
    """Correlation-congruence loss (Peng et al., 2019): mean squared difference of the
    student's and teacher's (N, N) correlation matrices, with the RBF/Taylor kernel of
    :func:`rbf_taylor_correlation`. The defaults gamma = 0.4, P = 2 are those of the widely used
    reimplementation in AberHu's Knowledge-Distillation-Zoo.

    ``e_s`` and ``e_t`` are embeddings (any width; RepDistiller projects both to 128 dims with
    trainable linear layers), so the teacher side is NOT detached here: its embedding is trained.
    """
    if e_s.shape[0] != e_t.shape[0]:
        raise ValueError(f"batch sizes differ: {e_s.shape[0]} vs {e_t.shape[0]}")
    return (
        (rbf_taylor_correlation(e_s, gamma, order) - rbf_taylor_correlation(e_t, gamma, order))
        .pow(2)
        .mean()
    )


@fp32_loss
def cc_loss_repdistiller(e_s: Tensor, e_t: Tensor) -> Tensor:
    """The correlation term as shipped in RepDistiller's ``Correlation`` (Tian et al., 2020, code
    credited to Peng et al.): with ``d_n = |e_s[n] - e_t[n]|``, the batch mean of
    ``sum_k d_n[k] d_{n+1}[k]`` over consecutive samples.

    This is the variant behind the CC numbers of CRD's tables (and its weight 0.02); it is not the
    kernel of the CC paper. Teacher side not detached (its embedding is trained).
    """
    if e_s.shape != e_t.shape:
        raise ValueError(f"embedding shapes differ: {tuple(e_s.shape)} vs {tuple(e_t.shape)}")
    if e_s.shape[0] < 2:
        raise ValueError("the consecutive-sample correlation needs a batch of at least 2")
    d = (e_s - e_t).abs()
    return (d[:-1] * d[1:]).sum(1).mean()
