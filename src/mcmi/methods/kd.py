"""Vanilla knowledge distillation (Hinton et al., 2015) and the eq. 20 soft-target student."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from mcmi.losses.kd import kd_loss, soft_target_cross_entropy
from mcmi.methods.base import Batch, Distiller, Method, StepOutput, register_method


@dataclass
class KDConfig:
    """RepDistiller's defaults, used by the paper's code: 0.1 CE + 0.9 KD at T = 4.
    ``student_temperature`` (default: ``temperature``) softens the student's side on its own,
    for the (T_t, T_s) grid of paper A.7 / Fig. 8."""

    ce_weight: float = 0.1
    kd_weight: float = 0.9
    temperature: float = 4.0
    student_temperature: float | None = None


@register_method("kd")
class KD(Distiller):
    """Student learns from ``ce_weight * CE(y) + kd_weight * T^2 KL(P_t^T || P_s^T)``
    (``T_t T_s KL(P_t^{T_t} || P_s^{T_s})`` with a separate ``student_temperature``).

    With ``ce_weight = 0`` the labels are not read at all: distillation from the teacher alone,
    as on unlabeled data (the semi-supervised protocol of paper A.9, after Chen et al. 2020b).
    """

    options = KDConfig
    display_name = "KD"
    teacher_signal = "logits"

    def required_fields(self) -> tuple[str, ...]:
        return ("image", "label") if self.cfg.ce_weight else ("image",)

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        x = batch["image"]
        logits = self.student(x)
        t_logits = self.teacher_logits(batch)
        cfg = self.cfg
        losses = {"kd": cfg.kd_weight * kd_loss(logits, t_logits, cfg.temperature,
                                                 cfg.student_temperature)}
        if self.cfg.ce_weight:
            losses["ce"] = self.cfg.ce_weight * F.cross_entropy(logits, batch["label"])
        return StepOutput(logits, losses)


@dataclass
class SoftTargetConfig:
    """Eq. 20 has no weight to set: the soft-target student takes no options."""


@register_method("soft_target")
class SoftTarget(Method):
    """Eq. 20: cross-entropy against a per-sample target distribution given in ``batch["target"]``
    (ground-truth P*, a teacher's outputs, or one-hot), as in the paper's Table 5."""

    options = SoftTargetConfig
    display_name = "Soft target"
    batch_keys = ("image", "target")
    tuple_fields = ("image", "target")

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        logits = self.model(batch["image"])
        return StepOutput(logits, {"soft_ce": soft_target_cross_entropy(logits, batch["target"])})
