"""Probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with
Probabilistic Knowledge Transfer", ECCV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def cosine_conditional_probs(feat: Tensor, eps: float = 1e-7) -> Tensor:
    """PKT's conditional probabilities (Passalis & Tefas, 2018) from the cosine-similarity kernel:
    ``K_ij = (cos(f_i, f_j) + 1) / 2`` and ``P_{j|i} = K_ij / sum_j K_ij`` (rows sum to 1)."""
    f = feat.flatten(1)
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    k = (f @ f.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


@fp32_loss
def pkt_loss(f_s: Tensor, f_t: Tensor, eps: float = 1e-7) -> Tensor:
    """PKT loss (Passalis & Tefas, 2018): KL divergence between the teacher's and the student's
    conditional probability distributions,
    ``mean_{i,j} P^t_{j|i} log((P^t_{j|i} + eps) / (P^s_{j|i} + eps))``.

    The mean runs over all N^2 pairs (the authors' code and RepDistiller), i.e. the per-anchor KL
    averaged over anchors and divided by N; the loss weight 30000 is tuned for that scale.
    Feature widths of student and teacher may differ. ``f_t`` is detached.
    """
    if f_s.shape[0] != f_t.shape[0]:
        raise ValueError(f"batch sizes differ: {f_s.shape[0]} vs {f_t.shape[0]}")
    p_s = cosine_conditional_probs(f_s, eps)
    p_t = cosine_conditional_probs(f_t.detach(), eps)
    return torch.mean(p_t * torch.log((p_t + eps) / (p_s + eps)))
