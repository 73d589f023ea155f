"""Soft-target losses: Hinton's KD and the target-distribution cross-entropy of paper eq. 20."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def soft_target_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Eq. 20: ``-(1/N) sum_n P_tar(x_n) . log P_s(x_n)``; one-hot targets give plain cross-entropy."""
    if logits.shape != target_probs.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target_probs.shape)} differ")
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


@fp32_loss
def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 4.0,
    student_temperature: float | None = None,
) -> Tensor:
    """Hinton et al. (2015): ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures. With a
    ``student_temperature`` T_s different from the teacher's T_t (the post-hoc smoothing grid of
    paper A.7, Fig. 8) the loss is ``T_t * T_s * KL(softmax(t/T_t) || softmax(s/T_s))``: the
    product reduces to T^2 when both are equal (the paper does not state its factor).
    """
    t_s = temperature if student_temperature is None else student_temperature
    if temperature <= 0 or t_s <= 0:
        raise ValueError(f"temperatures must be > 0, got teacher {temperature}, student {t_s}")
    log_ps = F.log_softmax(student_logits / t_s, dim=1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(1).mean()
    return kl * (temperature * t_s)
