"""Variational information distillation (Ahn et al., CVPR 2019) on every stage after the stem."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.losses.vid import vid_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import classification_terms


# ------------------------------------------------------------------ VID's variational regressor
class VIDRegressor(nn.Module):
    """VID's per-layer variational model (Ahn et al., 2019): a mean ``mu(s)`` from three 1x1
    convolutions with ReLUs in between, and a learned per-channel variance
    ``softplus(log_scale) + eps`` initialized to ``init_var`` (5.0 in the authors' code).

    ``forward(f_s, f_t)`` returns the VID loss of the pair; the larger map is average-pooled to
    the smaller one's size first.
    """

    def __init__(
        self,
        s_channels: int,
        t_channels: int,
        mid_channels: int | None = None,
        init_var: float = 5.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        mid = t_channels if mid_channels is None else mid_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(s_channels, mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid, t_channels, 1, bias=False),
        )
        if init_var <= eps:
            raise ValueError(f"init_var must exceed eps={eps}, got {init_var}")
        inv_softplus = math.log(math.expm1(init_var - eps))
        self.log_scale = nn.Parameter(torch.full((t_channels,), inv_softplus))
        self.eps = eps

    def forward(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        (hs, ws), (ht, wt) = f_s.shape[-2:], f_t.shape[-2:]
        if hs * ws > ht * wt:
            f_s = F.adaptive_avg_pool2d(f_s, (ht, wt))
        elif hs * ws < ht * wt:
            f_t = F.adaptive_avg_pool2d(f_t, (hs, ws))
        return vid_loss(self.regressor(f_s), f_t, self.log_scale, self.eps)


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
    :class:`~mcmi.methods.vid.VIDRegressor` per pair of
    ``stages[1:]`` (RepDistiller's ``feat[1:-1]``); middle width = the teacher's channels."""

    options = VIDConfig
    display_name = "VID"

    def __init__(self, student, teacher, **options) -> None:
        super().__init__(student, teacher, **options)
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
