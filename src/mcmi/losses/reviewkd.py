"""ReviewKD's hierarchical context loss (Chen et al., "Distilling Knowledge via Knowledge
Review", CVPR 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def hcl_loss_single(f_s: Tensor, f_t: Tensor, levels: Sequence[int] = (4, 2, 1)) -> Tensor:
    """Hierarchical context loss of one feature pair (Chen et al., 2021, Sec. 3.3): the MSE of the
    full maps plus the MSEs of their ``l x l`` average-pooled versions for each ``l`` in
    ``levels`` smaller than the map height, weighted 1, 1/2, 1/4, ... and normalized by the sum
    of the weights. ``f_t`` is detached."""
    if f_s.shape != f_t.shape:
        raise ValueError(f"feature shapes differ: {tuple(f_s.shape)} vs {tuple(f_t.shape)}")
    f_t = f_t.detach()
    h = f_s.shape[2]
    loss = F.mse_loss(f_s, f_t)
    weight, total = 1.0, 1.0
    for level in levels:
        if level >= h:
            continue
        weight /= 2.0
        loss = loss + weight * F.mse_loss(
            F.adaptive_avg_pool2d(f_s, level), F.adaptive_avg_pool2d(f_t, level)
        )
        total += weight
    return loss / total


@fp32_loss
def hcl_loss(
    feats_s: Sequence[Tensor], feats_t: Sequence[Tensor], levels: Sequence[int] = (4, 2, 1)
) -> Tensor:
    """ReviewKD's loss (Chen et al., 2021): sum of :func:`hcl_loss_single` over the fused
    student features and the teacher features, level by level."""
    if len(feats_s) == 0 or len(feats_s) != len(feats_t):
        raise ValueError(
            f"need the same non-zero number of levels, got {len(feats_s)} and {len(feats_t)}"
        )
    total = feats_s[0].new_zeros(())
    for s, t in zip(feats_s, feats_t):
        total = total + hcl_loss_single(s, t, levels)
    return total
