"""The CMI term of the MCMI objective (paper eq. 12-14)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mcmi.losses._precision import fp32_loss


@fp32_loss
def kl_to_centroids(logits: Tensor, labels: Tensor, log_centroids: Tensor) -> Tensor:
    """Batch mean of KL(P_x || Q^{y_x}), with P_x = softmax(logits) and ``log_centroids`` = log Q (C, C).

    This is the batch estimate of eq. 12 with the centroids held fixed; MCMI *maximizes* it.
    """
    logp = F.log_softmax(logits, dim=1)
    return (logp.exp() * (logp - log_centroids[labels])).sum(1).mean()
