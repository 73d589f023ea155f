"""Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


def _binary_log_probs(logits: Tensor, target: Tensor) -> Tensor:
    """log [p_target, 1 - p_target] of softmax(logits), stably via log-sum-exp."""
    lse_all = torch.logsumexp(logits, dim=1)
    z_target = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    lse_others = torch.logsumexp(others, dim=1)
    return torch.stack([z_target - lse_all, lse_others - lse_all], dim=1)


def _non_target_logits(logits: Tensor, target: Tensor) -> Tensor:
    keep = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
    return logits[keep].view(logits.shape[0], logits.shape[1] - 1)


@fp32_loss
def dkd_terms(
    student_logits: Tensor, teacher_logits: Tensor, target: Tensor, temperature: float = 4.0
) -> tuple[Tensor, Tensor]:
    """TCKD and NCKD of Zhao et al. (2022), each multiplied by T^2 and averaged over the batch:

    - TCKD = KL(b^T || b^S) of the binary distributions [p_target, 1 - p_target] at temperature T;
    - NCKD = KL(p^T || p^S) of the softmax over the non-target classes only, at temperature T.

    ``teacher_logits`` is detached.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"logit shapes differ: {tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape[1] < 2:
        raise ValueError("DKD needs at least two classes")
    target = target.long()
    s = student_logits / temperature
    t = teacher_logits.detach() / temperature
    log_bs, log_bt = _binary_log_probs(s, target), _binary_log_probs(t, target)
    tckd = (log_bt.exp() * (log_bt - log_bs)).sum(1).mean()
    log_ns = F.log_softmax(_non_target_logits(s, target), dim=1)
    log_nt = F.log_softmax(_non_target_logits(t, target), dim=1)
    nckd = (log_nt.exp() * (log_nt - log_ns)).sum(1).mean()
    return tckd * temperature**2, nckd * temperature**2


@fp32_loss
def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> Tensor:
    """DKD (Zhao et al., 2022): ``alpha * TCKD + beta * NCKD``, both with the T^2 factor.

    Zhao et al. show that classical KD equals ``TCKD + (1 - p^T_target) NCKD``; DKD replaces the
    coupled, teacher-confidence-dependent weight by the constants alpha and beta. The linear
    warm-up of the DKD term is applied by the distiller, not here."""
    tckd, nckd = dkd_terms(student_logits, teacher_logits, target, temperature)
    return alpha * tckd + beta * nckd
