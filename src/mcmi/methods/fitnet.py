"""FitNets (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015), single-stage as in
RepDistiller: the student's hint-layer map, through a conv regressor, matches the teacher's."""

from __future__ import annotations

from dataclasses import dataclass

from mcmi.losses.fitnet import hint_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.modules import ConvRegressor, classification_terms
from mcmi.models.base import probe_features


@dataclass
class FitNetConfig:
    """Defaults of RepDistiller's ``scripts/run_cifar_distill.sh`` (``--distill hint -a 0 -b 100``,
    CE weight ``-r`` 1, ``--hint_layer 2``), identical to mdistiller's ``CFG.FITNET``. FitNet is
    not among the methods of the MCMI paper's A.8.2, which is therefore silent on it.

    ``hint_layer`` indexes ``Features.stages`` (0 = stem), as RepDistiller's feature list does.
    ``kd_weight`` > 0 adds Hinton's KD term (RepDistiller's ``-a``); 0 by default.
    ``image_shape``: the input's shape, for the one probe forward that sizes the regressor (the
    training run passes its data set's).
    """

    ce_weight: float = 1.0
    hint_weight: float = 100.0
    hint_layer: int = 2
    kd_weight: float = 0.0
    temperature: float = 4.0
    image_shape: tuple[int, ...] = (3, 32, 32)


@register_method("fitnet")
class FitNet(Distiller):
    """FitNets distiller (Romero et al., ICLR 2015): ``ce_weight CE + hint_weight MSE(r(s_h), t_h)``
    on stage ``hint_layer``, ``r`` a :class:`~mcmi.methods.modules.ConvRegressor`."""

    options = FitNetConfig
    display_name = "FitNet"

    def __init__(self, student, teacher, **options) -> None:
        super().__init__(student, teacher, **options)
        shape = self.cfg.image_shape
        fs, ft = probe_features(student, shape), probe_features(teacher, shape)
        h = self.cfg.hint_layer
        n = min(len(fs.stages), len(ft.stages))
        if not -n <= h < n:
            raise ValueError(
                f"hint_layer {h} out of range for models with "
                f"{len(fs.stages)}/{len(ft.stages)} stages"
            )
        s_map, t_map = fs.stages[h], ft.stages[h]
        self.regressor = ConvRegressor(
            s_map.shape[1], t_map.shape[1], tuple(s_map.shape[-2:]), tuple(t_map.shape[-2:])
        )

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature
        )
        h = cfg.hint_layer
        losses["fitnet"] = cfg.hint_weight * hint_loss(self.regressor(fs.stages[h]), ft.stages[h])
        return StepOutput(fs.logits, losses)
