"""Maximum log-likelihood (cross-entropy) training: the ordinary teacher (paper eq. 4-5)."""
from __future__ import annotations

import torch.nn.functional as F

from mcmi.methods.base import Batch, Method, StepOutput, register_method


@register_method("mll")
class MLL(Method):
    """Minimizes cross-entropy, i.e. maximizes the empirical log-likelihood of eq. 5."""

    def __init__(self, model, label_smoothing: float = 0.0) -> None:
        super().__init__(model)
        self.label_smoothing = label_smoothing

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        logits = self.model(batch["image"])
        ce = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        return StepOutput(logits, {"ce": ce})
