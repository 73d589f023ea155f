"""Variational information distillation (Ahn et al., CVPR 2019) on every stage after the stem."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import VIDRegressor, classification_terms, make_config


@dataclass
class VIDConfig:
    """``vid_weight`` = 1: the MCMI paper's A.8.2, RepDistiller's ``-a 0 -b 1`` and mdistiller's
    ``CFG.VID``; ``init_var`` 5.0 and ``eps`` 1e-5 from the VID authors' code (as shipped in
    RepDistiller); CE weight 1."""

    ce_weight: float = 1.0
    vid_weight: float = 1.0
    init_var: float = 5.0
    eps: float = 1e-5
    kd_weight: float = 0.0
    temperature: float = 4.0


@register_method("vid")
class VID(Distiller):
    """VID distiller (Ahn et al., CVPR 2019): ``ce_weight CE + vid_weight sum_j NLL_j`` with one
    :class:`~mcmi.methods.modules.VIDRegressor` per pair of
    ``stages[1:]`` (RepDistiller's ``feat[1:-1]``); middle width = the teacher's channels."""

    def __init__(self, student, teacher, **weights) -> None:
        super().__init__(student, teacher)
        self.cfg = make_config(VIDConfig, weights, "vid")
        pairs = list(zip(student.stage_channels[1:], teacher.stage_channels[1:]))
        if not pairs:
            raise ValueError("VID needs at least one stage after the stem in both models")
        self.regressors = nn.ModuleList(
            VIDRegressor(s, t, t, self.cfg.init_var, self.cfg.eps) for s, t in pairs
        )

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        total = fs.logits.new_zeros(())
        for reg, s, t in zip(self.regressors, fs.stages[1:], ft.stages[1:]):
            total = total + reg(s, t)
        losses["vid"] = cfg.vid_weight * total
        return StepOutput(fs.logits, losses)
