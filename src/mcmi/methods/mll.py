"""Maximum log-likelihood (cross-entropy) training: the ordinary teacher (paper eq. 4-5), with the
two output regularizers that paper Fig. 7 compares with CMI (A.4.2)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from mcmi.config import FieldError
from mcmi.methods.base import Batch, Method, StepOutput, register_method


@dataclass
class MLLConfig:
    """``label_smoothing``: epsilon of label smoothing (Szegedy et al. 2016): the target puts
    ``1 - eps + eps / C`` on the label and ``eps / C`` elsewhere. ``confidence_penalty``: beta of
    the entropy regularizer (Pereyra et al. 2017): the loss is ``CE - beta * H(P_x)`` averaged over
    the batch, so it raises the output entropy. Both 0: plain cross-entropy (eq. 5)."""

    label_smoothing: float = 0.0
    confidence_penalty: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise FieldError("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if self.confidence_penalty < 0:
            raise FieldError("confidence_penalty", f"must be >= 0 (it rewards entropy), got {self.confidence_penalty}")


@register_method("mll")
class MLL(Method):
    """Minimizes cross-entropy, i.e. maximizes the empirical log-likelihood of eq. 5; options:
    :class:`MLLConfig`. The confidence penalty's term is logged as ``entropy`` (its signed
    contribution to the loss)."""

    options = MLLConfig
    display_name = "MLL"

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        logits = self.model(batch["image"])
        losses = {"ce": F.cross_entropy(logits, batch["label"], label_smoothing=self.cfg.label_smoothing)}
        if self.cfg.confidence_penalty:
            logp = F.log_softmax(logits.float(), dim=1)
            entropy = -(logp.exp() * logp).sum(1).mean()
            losses["entropy"] = -self.cfg.confidence_penalty * entropy
        return StepOutput(logits, losses)
