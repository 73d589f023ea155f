"""Semi-supervised distillation (paper A.9, Fig. 9; the setting of Chen et al. 2020b).

All training images are available but only a fraction carries labels. Per labeled fraction
(a *cell*): the teacher is trained on the labeled images only (MLL, then its MCMI fine-tune on the
same images), and the student distils from it on **every** training image with the teacher's
soft labels alone: KD with ``ce_weight: 0``, so no label of the unlabeled part is ever in the loss
(:class:`mcmi.methods.kd.KD` does not read labels then). The student alone, trained on the labeled
images, is the supervised baseline. The paper: CIFAR-10, 1 / 2 / 4 / 8% labeled (500 to 4,000
images), ResNet-18 student, 3 runs; it does not give its teacher. Defaults here follow Chen et al.'s
distillation loss (temperature 1, teacher term only).

Every cell is a Table 1 grid under ``out/<name>/<cell>/`` whose teacher and baseline runs see the
labeled subset (``data.train_fraction``, the same images for every run of the cell, epochs kept at
the full set's length by default so a teacher on 1% is not trained for 1% of the steps) and whose
students see the whole training set. Normalization statistics come from the whole training set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mcmi.experiments.shots import ShotGridConfig
from mcmi.experiments.train import DataSpec
from mcmi.grid.builder import RunBuilder, pair_grid
from mcmi.grid.experiment import Experiment
from mcmi.grid.plan import PlannedRun


@dataclass
class SemiSupervisedConfig(ShotGridConfig):
    """Labeled fractions x teacher kinds x seeds for one teacher -> student pair (module notes);
    the other fields are those of every one-pair grid (:class:`~mcmi.experiments.shots.ShotGridConfig`)."""

    student: str = "resnet18"
    labeled_fractions: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.04, 0.08])
    labeled_mode: str = "stratified"  # which images keep labels: "stratified" (each class alike) | "first"
    labeled_epoch_length: str = "full"  # teacher / baseline epochs: "full" set's length | one pass ("subset")
    method_args: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"kd": {"ce_weight": 0.0, "kd_weight": 1.0, "temperature": 1.0}})
    data: DataSpec = field(default_factory=lambda: DataSpec(name="cifar10"))
    student_baseline: bool = True
    out: str = "runs/semi_supervised"
    name: str = "semi_supervised"

    def __post_init__(self) -> None:
        fr = self.labeled_fractions
        if not fr or any(not 0 < a < 1 for a in fr) or len(set(fr)) != len(fr):
            raise ValueError(f"labeled_fractions must list distinct values in (0, 1), got {fr}")
        if self.labeled_mode not in ("first", "stratified"):
            raise ValueError(f"labeled_mode must be 'first' or 'stratified', got {self.labeled_mode!r}")
        if self.labeled_epoch_length not in ("full", "subset"):
            raise ValueError(f"labeled_epoch_length must be 'full' or 'subset', got {self.labeled_epoch_length!r}")
        super().__post_init__()  # data must leave the reductions to the cells; lambda; the grid

    def cell_key(self, fraction: float) -> str:
        return f"labeled{fraction:g}"

    def labeled_data(self, fraction: float) -> DataSpec:
        return dataclasses.replace(self.data, train_fraction=float(fraction), fraction_mode=self.labeled_mode,
                                   epoch_length=self.labeled_epoch_length)


def plan(cfg: SemiSupervisedConfig) -> list[PlannedRun]:
    """Every cell's Table 1 grid (:func:`mcmi.grid.builder.pair_grid`) under ``<name>/<cell>``, in
    order of the labeled fraction: teachers and the baseline on the labeled images, students on
    all of them; each run is labelled ``cell`` (``--only cell=labeled0.01``)."""
    builder = RunBuilder(cfg, "semi-supervised")
    runs: list[PlannedRun] = []
    for fraction in sorted(cfg.labeled_fractions):
        cell = cfg.cell_key(fraction)
        runs += pair_grid(builder, [cfg.pair], methods=cfg.methods, kinds=cfg.teacher_kinds, seeds=cfg.seeds,
                          lam=cfg.lambda_for, baseline=cfg.student_baseline, prefix=f"{cfg.name}/{cell}",
                          labels={"cell": (cell,)}, teacher_data=cfg.labeled_data(fraction))
    builder.finish()
    return runs


EXPERIMENT = Experiment(
    command="semi-supervised", config_cls=SemiSupervisedConfig, default_config="semi_supervised_cifar10",
    plan=plan, report="mcmi.reports.semi_supervised", listing_root=lambda cfg: cfg.name)

__all__ = ["EXPERIMENT", "SemiSupervisedConfig", "plan"]
