"""Relational knowledge distillation (Park et al., CVPR 2019), distance + angle, on the pooled
features."""

from __future__ import annotations

from dataclasses import dataclass

from mcmi.losses.rkd import rkd_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import classification_terms


@dataclass
class RKDConfig:
    """``distance_weight`` 25 and ``angle_weight`` 50: the MCMI paper's A.8.2 (gamma_1, gamma_2),
    Park et al. and RepDistiller's ``RKDLoss``; the outer ``rkd_weight`` 1 is RepDistiller's
    ``-a 0 -b 1`` (mdistiller ``CFG.RKD.LOSS.FEAT_WEIGHT``); CE weight 1."""

    ce_weight: float = 1.0
    rkd_weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    kd_weight: float = 0.0
    temperature: float = 4.0


@register_method("rkd")
class RKD(Distiller):
    """RKD distiller (Park et al., CVPR 2019): ``ce_weight CE + rkd_weight (25 RKD-D + 50 RKD-A)``
    on the pooled features."""

    options = RKDConfig
    display_name = "RKD"

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        losses["rkd"] = cfg.rkd_weight * rkd_loss(
            fs.pooled, ft.pooled, cfg.distance_weight, cfg.angle_weight
        )
        return StepOutput(fs.logits, losses)
