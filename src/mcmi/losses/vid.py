"""Variational information distillation (Ahn et al., "Variational Information Distillation for
Knowledge Transfer", CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def vid_variance(log_scale: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-channel variance ``softplus(log_scale) + eps`` of VID's heteroscedastic Gaussian."""
    return F.softplus(log_scale) + eps


@fp32_loss
def vid_loss(pred_mean: Tensor, target: Tensor, log_scale: Tensor, eps: float = 1e-5) -> Tensor:
    """VID (Ahn et al., 2019), up to the constant 0.5 log 2 pi: the Gaussian negative
    log-likelihood of the teacher feature ``t`` under ``N(mu(s), sigma^2)``,

        mean over (n, c, h, w) of 0.5 * ((t - mu)^2 / sigma_c^2 + log sigma_c^2),

    with ``sigma_c^2 = softplus(log_scale[c]) + eps`` learned per channel (shared over space).
    Not zero when ``mu = t`` (the log-variance term remains, and can be negative): its minimum
    over sigma is at ``sigma_c^2 = mean squared error of channel c``. ``target`` is detached.

    Args:
        pred_mean: (N, C, H, W) or (N, C): the regressor's prediction of the teacher feature.
        target: the teacher feature, same shape.
        log_scale: (C,) unconstrained variance parameter.
    """
    if pred_mean.shape != target.shape:
        raise ValueError(
            f"shapes differ: mean {tuple(pred_mean.shape)}, target {tuple(target.shape)}"
        )
    if log_scale.dim() != 1 or log_scale.numel() != pred_mean.shape[1]:
        raise ValueError(
            f"log_scale must have one entry per channel ({pred_mean.shape[1]}), "
            f"got {tuple(log_scale.shape)}"
        )
    var = vid_variance(log_scale, eps).view(1, -1, *([1] * (pred_mean.dim() - 2)))
    nll = 0.5 * ((pred_mean - target.detach()).pow(2) / var + torch.log(var))
    return nll.mean()
