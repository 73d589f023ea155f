"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def attention_map(feature: Tensor, p: float = 2.0, eps: float = 1e-12) -> Tensor:
    """Spatial attention map of Zagoruyko & Komodakis (2017): ``mean_c |A_c|^p``, flattened to
    (N, H*W) and L2-normalized per sample."""
    if feature.dim() != 4:
        raise ValueError(f"attention maps need (N, C, H, W) features, got {tuple(feature.shape)}")
    q = feature.abs().pow(p).mean(1).flatten(1)
    return F.normalize(q, p=2, dim=1, eps=eps)


def _match_spatial(f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool the larger map down to the smaller one's size (RepDistiller's convention)."""
    hs, ws = f_s.shape[-2:]
    ht, wt = f_t.shape[-2:]
    if (hs, ws) == (ht, wt):
        return f_s, f_t
    if hs * ws > ht * wt:
        return F.adaptive_avg_pool2d(f_s, (ht, wt)), f_t
    return f_s, F.adaptive_avg_pool2d(f_t, (hs, ws))


@fp32_loss
def at_loss(f_s: Tensor, f_t: Tensor, p: float = 2.0) -> Tensor:
    """Attention-transfer loss of one student/teacher feature pair (Zagoruyko & Komodakis, 2017):
    ``mean_{n, j} (Q_s[n, j] - Q_t[n, j])^2`` with ``Q = attention_map(., p)``.

    Channel counts may differ (attention maps average over channels); spatial sizes may differ
    (the larger map is average-pooled to the smaller). The mean over batch and positions, with
    the loss weight 1000, follows the authors' code and RepDistiller. ``f_t`` is detached.
    """
    if f_s.shape[0] != f_t.shape[0]:
        raise ValueError(f"batch sizes differ: {f_s.shape[0]} vs {f_t.shape[0]}")
    f_s, f_t = _match_spatial(f_s, f_t.detach())
    return (attention_map(f_s, p) - attention_map(f_t, p)).pow(2).mean()


@fp32_loss
def at_loss_multi(feats_s: Sequence[Tensor], feats_t: Sequence[Tensor], p: float = 2.0) -> Tensor:
    """Sum of :func:`at_loss` over paired stages (Zagoruyko & Komodakis, 2017)."""
    if len(feats_s) == 0 or len(feats_s) != len(feats_t):
        raise ValueError(
            f"need the same non-zero number of stages, got {len(feats_s)} and {len(feats_t)}"
        )
    return sum((at_loss(s, t, p) for s, t in zip(feats_s, feats_t)), start=feats_s[0].new_zeros(()))
