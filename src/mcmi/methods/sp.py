"""Similarity-preserving distillation (Tung & Mori, ICCV 2019) on the last stage map."""

from __future__ import annotations

from dataclasses import dataclass

from mcmi.losses.sp import sp_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import classification_terms


@dataclass
class SPConfig:
    """``sp_weight`` = 3000: the MCMI paper's A.8.2, RepDistiller's ``-a 0 -b 3000`` and
    mdistiller's ``CFG.SP``; CE weight 1."""

    ce_weight: float = 1.0
    sp_weight: float = 3000.0
    kd_weight: float = 0.0
    temperature: float = 4.0


@register_method("sp")
class SP(Distiller):
    """SP distiller (Tung & Mori, ICCV 2019): ``ce_weight CE + sp_weight SP(stages_s[-1],
    stages_t[-1])`` on the last stage maps (RepDistiller's ``feat[-2]``)."""

    options = SPConfig
    display_name = "SP"

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        losses["sp"] = cfg.sp_weight * sp_loss(fs.stages[-1], ft.stages[-1])
        return StepOutput(fs.logits, losses)
