"""Contrastive representation distillation (Tian et al., "Contrastive Representation
Distillation", ICLR 2020): the NCE objective over a memory bank of negatives."""

from __future__ import annotations

import torch
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def contrast_scores(
    anchor: Tensor, candidates: Tensor, temperature: float, normalizer: Tensor | float
) -> Tensor:
    """CRD's non-parametric softmax numerators (Tian et al., 2020, Sec. 3 and the authors' code):
    ``exp(<anchor_n, c_{n,k}> / T) / Z``, computed in float32.

    Args:
        anchor: (N, D) L2-normalized embeddings of one network.
        candidates: (N, K+1, D) memory-bank rows of the *other* network; column 0 is the positive.
        temperature: T (0.07 in CRD).
        normalizer: Z, the constant that makes the scores approximate probabilities
            (CRD sets it once, from the first batch, to ``mean(exp(s/T)) * num_data``).
    Returns:
        (N, K+1) scores.
    """
    if (
        candidates.dim() != 3
        or candidates.shape[0] != anchor.shape[0]
        or candidates.shape[2] != anchor.shape[1]
    ):
        raise ValueError(
            f"candidates {tuple(candidates.shape)} do not match anchors {tuple(anchor.shape)}"
        )
    logits = torch.bmm(candidates.float(), anchor.float().unsqueeze(2)).squeeze(2)
    return torch.exp(logits / temperature) / normalizer


@fp32_loss
def nce_loss(scores: Tensor, num_data: int, eps: float = 1e-7) -> Tensor:
    """CRD's NCE loss (Tian et al., 2020, eq. 18 as implemented by the authors) for one anchor side.

    With K = ``scores.shape[1] - 1`` negatives, noise distribution ``P_n = 1 / num_data`` and
    ``h(x) = x / (x + K P_n)``:

        L = -(1/N) sum_n [ log h(s_{n,0}) + sum_{k >= 1} log(1 - h(s_{n,k})) ]

    (``eps`` is added to the denominators, as in the authors' code). Always >= 0.
    """
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (N, K+1) with K >= 1, got {tuple(scores.shape)}")
    k = scores.shape[1] - 1
    kpn = k / float(num_data)
    pos, neg = scores[:, 0], scores[:, 1:]
    log_d1 = torch.log(pos / (pos + kpn + eps))
    log_d0 = torch.log(kpn / (neg + kpn + eps))
    return -(log_d1.sum() + log_d0.sum()) / scores.shape[0]


@fp32_loss
def crd_loss(student_anchor_scores: Tensor, teacher_anchor_scores: Tensor, num_data: int) -> Tensor:
    """CRD's symmetric objective (Tian et al., 2020): NCE with the student embedding as anchor
    against the teacher memory, plus NCE with the teacher embedding as anchor against the student
    memory. Both embeddings are trainable, so nothing is detached here."""
    return nce_loss(student_anchor_scores, num_data) + nce_loss(teacher_anchor_scores, num_data)
