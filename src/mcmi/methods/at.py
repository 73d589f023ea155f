"""Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017)
on every stage after the stem, as in RepDistiller and mdistiller."""

from __future__ import annotations

from dataclasses import dataclass

from mcmi.losses.at import at_loss_multi
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import classification_terms


@dataclass
class ATConfig:
    """``at_weight`` = 1000: the MCMI paper's A.8.2 (gamma = 1000), RepDistiller's
    ``-a 0 -b 1000`` and mdistiller's ``CFG.AT``; CE weight 1 (eq. 21 of the paper); p = 2
    (Zagoruyko & Komodakis)."""

    ce_weight: float = 1.0
    at_weight: float = 1000.0
    p: float = 2.0
    kd_weight: float = 0.0
    temperature: float = 4.0


@register_method("at")
class AT(Distiller):
    """Attention-transfer distiller (Zagoruyko & Komodakis, ICLR 2017):
    ``ce_weight CE + at_weight sum_j AT(s_j, t_j)`` over ``stages[1:]`` of both models.

    Stages are paired in order; if the two models have different numbers of stages, the extra
    deepest ones are ignored (RepDistiller's ``zip``). Feature methods need (N, C, H, W) stages.
    """

    options = ATConfig
    display_name = "AT"

    def __init__(self, student, teacher, **options) -> None:
        super().__init__(student, teacher, **options)
        if min(len(student.stage_channels), len(teacher.stage_channels)) < 2:
            raise ValueError("AT needs at least one stage after the stem in both models")

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        pairs = list(zip(fs.stages[1:], ft.stages[1:]))
        losses["at"] = cfg.at_weight * at_loss_multi(
            [s for s, _ in pairs], [t for _, t in pairs], cfg.p
        )
        return StepOutput(fs.logits, losses)
