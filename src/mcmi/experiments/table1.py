"""Paper Table 1: students of MLL vs MCMI teachers over teacher-student pairs x KD methods x
teacher kinds x seeds, declared on the grid engine (:mod:`mcmi.grid`).

Run folders under ``out`` (:mod:`mcmi.grid.builder`): ``teachers/<arch>/{mll,mcmi}``, a method's
teacher preparation ``teachers/<arch>/<kind>+<prep>`` (HSAKD's heads), the student alone
``students/<student>/baseline/seed<k>`` (``student_baseline``) and
``students/<teacher>-<student>/<method>/<kind>/seed<k>``. A run whose ``summary.json`` exists is
done and skipped; one with a ``last.pt`` resumes; a failing run leaves ``error.txt`` and blocks
only the runs that need its checkpoint. Teachers also get ``teacher_eval.json``: accuracy, LL and
CMI of the checkpoint the students read on the training set (the paper's Table 1 rows), in the
view ``teacher_eval_view`` names (:mod:`mcmi.metrics.train_view`). The report:
:mod:`mcmi.reports.table1`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mcmi.experiments.train import DataSpec
from mcmi.grid.builder import TEACHER_KINDS, PairSpec, RunBuilder, pair_grid, table6_lambdas
from mcmi.grid.checks import check_grid
from mcmi.grid.experiment import Experiment
from mcmi.grid.plan import PlannedRun


@dataclass
class Table1Config:
    """The grid of paper Table 1 and how each of its runs is trained.

    Recipes (``teacher_recipe``, ``mcmi_recipe``, ``student_recipe``, ``heads_recipe``) are
    :class:`~mcmi.experiments.train.RunConfig` YAML files or inline mappings: a string is a recipe
    path, a mapping holds RunConfig keys and may name base files under ``_base_`` (merged first).
    Paths are taken as given when they exist, else among the recipes shipped with mcmi. The grid
    then sets what it decides: ``model``, ``teacher``, ``method`` (and ``method_args`` of
    students), ``data`` (this config's, replacing the recipe's), ``train.seed``, ``device``, ``out``.

    ``mcmi_lambda`` is merged over its defaults (Table 6), so a config lists only what it changes.
    ``student_lr`` lists the students whose lr the grid sets; the others get the student defaults
    (:mod:`mcmi.experiments.student_defaults`: 0.01 for MobileNetV2/ShuffleNets) unless the student
    recipe sets ``train.lr`` itself.
    """

    pairs: list[PairSpec] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["kd"])
    teacher_kinds: list[str] = field(default_factory=lambda: list(TEACHER_KINDS))
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    heads_recipe: str | dict[str, Any] = "_base_/cifar_hsakd_heads.yaml"
    mcmi_lambda: dict[str, float] = field(default_factory=dict)
    mcmi_lambda_default: float = 0.15  # teachers Table 6 does not list
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    pair_method_args: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    use_pair_defaults: bool = True  # the methods' pair_defaults (DKD beta, ReviewKD weight)
    student_baseline: bool = False  # also train each student without a teacher (Table 1's student row)
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"  # which teacher file students read: "last" or "best"
    teacher_eval_view: str = "train-plain"  # teachers' train LL/CMI: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0  # the augmentation draws of the train-augmented view
    device: str = "auto"
    out: str = "runs/table1"

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("pairs must list at least one {teacher: ..., student: ...}")
        names = [p.name for p in self.pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"pairs lists a pair twice: {names}")
        check_grid(self)
        for pair, per_method in self.pair_method_args.items():
            if "-" not in pair or not isinstance(per_method, Mapping):
                raise ValueError(f"pair_method_args: keys are '<teacher>-<student>' with a mapping of "
                                 f"method -> args, got {pair!r}")
        self.mcmi_lambda = table6_lambdas(self.data.name, self.mcmi_lambda)

    def lambda_for(self, arch: str) -> float:
        return float(self.mcmi_lambda.get(arch, self.mcmi_lambda_default))


def plan(cfg: Table1Config) -> list[PlannedRun]:
    """Every run of the grid in execution order (:func:`mcmi.grid.builder.pair_grid`)."""
    builder = RunBuilder(cfg, "table1")
    runs = pair_grid(builder, cfg.pairs, methods=cfg.methods, kinds=cfg.teacher_kinds, seeds=cfg.seeds,
                     lam=cfg.lambda_for, baseline=cfg.student_baseline)
    builder.finish()
    return runs


EXPERIMENT = Experiment(
    command="table1", config_cls=Table1Config, default_config="table1_cifar100", plan=plan,
    report="mcmi.reports.table1")

__all__ = ["EXPERIMENT", "PairSpec", "Table1Config", "plan"]
