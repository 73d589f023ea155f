"""Soft-target losses: Hinton's KD and the target-distribution cross-entropy of paper eq. 20."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def soft_target_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Eq. 20: ``-(1/N) sum_n P_tar(x_n) . log P_s(x_n)``; one-hot targets give plain cross-entropy."""
    if logits.shape != target_probs.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target_probs.shape)} differ")
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton et al. (2015): ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()
    return kl * temperature**2
