"""FitNets hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def hint_loss(student_hint: Tensor, teacher_hint: Tensor) -> Tensor:
    """FitNets (Romero et al., 2015) hint loss: mean squared error between the regressed student
    feature and the teacher's hint feature.

    The paper writes ``1/2 ||u_h - r(v_g)||^2``; RepDistiller and mdistiller average over every
    element instead (``F.mse_loss``), and their loss weight (100) is tuned for that scale, so that
    is the scale used here. ``teacher_hint`` is a fixed target (detached).

    Args:
        student_hint: (N, C, H, W) student feature after its regressor (same shape as the hint).
        teacher_hint: (N, C, H, W) teacher feature.
    """
    if student_hint.shape != teacher_hint.shape:
        raise ValueError(
            f"hint shapes differ: student {tuple(student_hint.shape)}, "
            f"teacher {tuple(teacher_hint.shape)}; a regressor must map one onto the other"
        )
    return F.mse_loss(student_hint, teacher_hint.detach())
