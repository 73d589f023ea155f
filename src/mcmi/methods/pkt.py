"""Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018) on the pooled features."""

from __future__ import annotations

from dataclasses import dataclass

from mcmi.losses.pkt import pkt_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import classification_terms


@dataclass
class PKTConfig:
    """``pkt_weight`` = 30000: the MCMI paper's A.8.2, RepDistiller's ``-a 0 -b 30000`` and
    mdistiller's ``CFG.PKT``; CE weight 1."""

    ce_weight: float = 1.0
    pkt_weight: float = 30000.0
    kd_weight: float = 0.0
    temperature: float = 4.0


@register_method("pkt")
class PKT(Distiller):
    """PKT distiller (Passalis & Tefas, ECCV 2018): ``ce_weight CE + pkt_weight PKT(pooled_s,
    pooled_t)`` on the pooled features (RepDistiller's ``feat[-1]``)."""

    options = PKTConfig
    display_name = "PKT"

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        losses["pkt"] = cfg.pkt_weight * pkt_loss(fs.pooled, ft.pooled)
        return StepOutput(fs.logits, losses)
