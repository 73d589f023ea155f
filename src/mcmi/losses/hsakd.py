"""Hierarchical self-supervised augmented KD (Yang et al., "Hierarchical Self-supervised
Augmented Knowledge Distillation", IJCAI 2021): rotation-augmented joint labels and the losses
of the teacher's auxiliary heads and of the student."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss
from mcmi.losses.kd import kd_loss

NUM_ROTATIONS = 4


def rotate_batch(images: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """HSAKD's self-supervised augmentation (Yang et al., 2021): every image rotated by 0, 90,
    180 and 270 degrees, interleaved (rows ``4n .. 4n+3`` are the rotations of image ``n``, so
    ``[0::4]`` are the originals). Joint labels are ``4 y + r`` for rotation ``r`` (the
    "self-supervised augmented" label space of size 4 C).

    Returns ``(images (4N, C, H, W), joint_labels (4N,) or None)``.
    """
    if images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"rotation needs square (N, C, H, W) images, got {tuple(images.shape)}")
    rotated = torch.stack(
        [torch.rot90(images, r, dims=(2, 3)) for r in range(NUM_ROTATIONS)], dim=1
    )
    rotated = rotated.flatten(0, 1)
    if labels is None:
        return rotated, None
    joint = (
        labels.long()[:, None] * NUM_ROTATIONS + torch.arange(NUM_ROTATIONS, device=labels.device)
    ).flatten()
    return rotated, joint


@fp32_loss
def aux_ce_loss(aux_logits: Sequence[Tensor], joint_labels: Tensor) -> Tensor:
    """Teacher-side HSAKD loss (Yang et al., 2021): sum over auxiliary heads of the cross-entropy
    against the joint (class x rotation) labels."""
    if len(aux_logits) == 0:
        raise ValueError("no auxiliary logits")
    return sum(
        (F.cross_entropy(z, joint_labels) for z in aux_logits), start=aux_logits[0].new_zeros(())
    )


@fp32_loss
def hsakd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    student_aux: Sequence[Tensor],
    teacher_aux: Sequence[Tensor],
    temperature: float = 3.0,
) -> Tensor:
    """Student-side HSAKD distillation loss (Yang et al., 2021, as in the authors' CIFAR code):

        sum_l T^2 KL(q^t_l || q^s_l)  +  T^2 KL(p^t || p^s)

    where ``q_l`` are the softened joint (4C-way) distributions of the auxiliary heads attached
    after stage l and ``p`` the softened class distributions of the final classifiers, all over
    the 4N rotated inputs (batch mean), T = 3. The cross-entropy on the unrotated images is added
    by the distiller. Teacher inputs are detached.
    """
    if len(student_aux) != len(teacher_aux) or len(student_aux) == 0:
        raise ValueError(
            f"need the same non-zero number of heads, got {len(student_aux)} and {len(teacher_aux)}"
        )
    total = kd_loss(student_logits, teacher_logits.detach(), temperature)
    for zs, zt in zip(student_aux, teacher_aux):
        total = total + kd_loss(zs, zt.detach(), temperature)
    return total
