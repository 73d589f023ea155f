"""Similarity-preserving distillation (Tung & Mori, "Similarity-Preserving Knowledge
Distillation", ICCV 2019)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def similarity_matrix(feat: Tensor) -> Tensor:
    """Tung & Mori (2019): ``G = Q Q^T`` of the flattened (N, C*H*W) activations, each
    row L2-normalized."""
    q = feat.flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)


@fp32_loss
def sp_loss(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Similarity-preserving loss (Tung & Mori, 2019): ``||G_t - G_s||_F^2 / N^2``.

    Student and teacher may differ in channels and spatial size (only the N x N similarity
    matrices are compared). ``f_t`` is detached.
    """
    n = f_s.shape[0]
    if f_t.shape[0] != n:
        raise ValueError(f"batch sizes differ: {n} vs {f_t.shape[0]}")
    diff = similarity_matrix(f_t.detach()) - similarity_matrix(f_s)
    return diff.pow(2).sum() / (n * n)
