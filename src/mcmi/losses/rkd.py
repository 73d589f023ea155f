"""Relational knowledge distillation (Park et al., "Relational Knowledge Distillation",
CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def pairwise_distances(e: Tensor, eps: float = 1e-12) -> Tensor:
    """Euclidean distance matrix (N, N) of the rows of ``e``; squared distances are clamped at
    ``eps`` before the square root (finite gradients) and the diagonal is exactly 0."""
    sq = e.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (e @ e.t())).clamp_min(eps)
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return d2.sqrt().masked_fill(eye, 0.0)


def _normalized_distances(e: Tensor, eps: float) -> Tensor:
    d = pairwise_distances(e, eps)
    positive = d[d > 0]
    if positive.numel() == 0:
        return d
    return d / positive.mean()


@fp32_loss
def rkd_distance_loss(f_s: Tensor, f_t: Tensor, eps: float = 1e-12) -> Tensor:
    """RKD-D (Park et al., 2019): Huber (smooth-L1, delta 1) loss between the student's and the
    teacher's pairwise distances, each divided by its mean over distinct pairs. Mean over all
    N^2 entries (RepDistiller/mdistiller). ``f_t`` is detached."""
    s = _normalized_distances(f_s.flatten(1), eps)
    t = _normalized_distances(f_t.detach().flatten(1), eps)
    return F.smooth_l1_loss(s, t)


@fp32_loss
def angle_matrix(e: Tensor) -> Tensor:
    """(N, N, N) cosines ``<u_ij, u_ik>`` with ``u_ij`` the unit vector from ``e_i`` to ``e_j``
    (0 where j = i or k = i)."""
    diff = e[None, :, :] - e[:, None, :]  # diff[i, j] = e_j - e_i
    u = F.normalize(diff, p=2, dim=2)
    return u @ u.transpose(1, 2)


@fp32_loss
def rkd_angle_loss(f_s: Tensor, f_t: Tensor) -> Tensor:
    """RKD-A (Park et al., 2019): Huber loss between the student's and teacher's angle cosines of
    all triplets, mean over the N^3 entries. ``f_t`` is detached."""
    return F.smooth_l1_loss(angle_matrix(f_s.flatten(1)), angle_matrix(f_t.detach().flatten(1)))


@fp32_loss
def rkd_loss(
    f_s: Tensor,
    f_t: Tensor,
    distance_weight: float = 25.0,
    angle_weight: float = 50.0,
    eps: float = 1e-12,
) -> Tensor:
    """RKD-DA (Park et al., 2019): ``distance_weight * RKD-D + angle_weight * RKD-A``; 25 and 50
    are the paper's weights (and the MCMI paper's A.8.2)."""
    if f_s.shape[0] != f_t.shape[0]:
        raise ValueError(f"batch sizes differ: {f_s.shape[0]} vs {f_t.shape[0]}")
    return distance_weight * rkd_distance_loss(f_s, f_t, eps) + angle_weight * rkd_angle_loss(
        f_s, f_t
    )
