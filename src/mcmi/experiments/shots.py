"""What the one-pair grids share (zero-shot, few-shot: paper Sec. 6.2-6.3, A.11, Tables 3, 9, 12;
binary tasks and semi-supervised extend the config).

A grid is one teacher -> student pair: the teacher is trained on the whole training set (MLL,
then its MCMI fine-tune), and students distil from each teacher kind under a reduced training set
(a *cell*: some classes dropped, or a fraction of the images), for every method and seed. The
teacher runs are those of Table 1 (:mod:`mcmi.grid.builder`) for the same pair and recipes, under
``out/teachers/``; pointing ``out`` at a Table 1 grid of the same teacher recipe and data shares
its teachers. Students and the report go under ``out/<name>/``::

    <out>/teachers/<arch>/{mll,mcmi}
    <out>/<name>/students/<cell>/<method>/<kind>/seed<k>
    <out>/<name>/README.md, results.json
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from mcmi.config import ConfigError
from mcmi.experiments.train import DataSpec
from mcmi.grid.builder import TEACHER_KINDS, PairSpec, RunBuilder, table6_lambdas
from mcmi.grid.checks import check_grid
from mcmi.grid.plan import PlannedRun

#: Data fields a grid sets per cell; the grid's ``data`` must leave them unset.
CELL_FIELDS = ("train_fraction", "fraction_mode", "drop_classes", "drop_num_classes")


@dataclass
class ShotGridConfig:
    """Fields of every one-pair grid. ``data`` is the teacher's (whole) training set; the grid
    sets the student's reductions per cell. Recipes, ``method_args``, ``student_lr`` and the
    lambda of the MCMI fine-tune work as in :class:`~mcmi.experiments.table1.Table1Config`."""

    teacher: str = "resnet56"
    student: str = "resnet20"
    methods: list[str] = field(default_factory=lambda: ["kd"])
    teacher_kinds: list[str] = field(default_factory=lambda: list(TEACHER_KINDS))
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    heads_recipe: str | dict[str, Any] = "_base_/cifar_hsakd_heads.yaml"
    mcmi_lambda: float | None = None  # default: Table 6's value for the teacher
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_pair_defaults: bool = True
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"
    teacher_eval_view: str = "train-plain"  # teachers' train LL/CMI: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0
    device: str = "auto"
    out: str = "runs/shots"
    name: str = ""  # subfolder of out for students and report; default: the experiment's name

    def __post_init__(self) -> None:
        set_fields = [f for f in CELL_FIELDS if getattr(self.data, f) is not None]
        if set_fields:
            raise ValueError(f"data.{set_fields[0]} is set by the grid for each cell; leave it out of data")
        if self.mcmi_lambda is not None and self.mcmi_lambda <= 0:
            raise ValueError(f"mcmi_lambda must be positive, got {self.mcmi_lambda}")
        check_grid(self)

    @property
    def pair(self) -> PairSpec:
        return PairSpec(self.teacher, self.student)

    def lambda_for(self, arch: str, data: DataSpec | None = None) -> float:
        """Lambda of the MCMI fine-tune: ``mcmi_lambda``, else Table 6's for the teacher on the
        data set (``data``, default the grid's), else 0.15."""
        overrides = {} if self.mcmi_lambda is None else {self.teacher: float(self.mcmi_lambda)}
        return float(table6_lambdas((data or self.data).name, overrides).get(arch, 0.15))


@dataclass(frozen=True)
class Cell:
    """One reduction of the student's training set: folder ``key``, report ``label``, and the
    data fields it sets for a run of a given seed."""

    key: str
    label: str
    data: Callable[[int], dict[str, Any]]
    value: float = 0.0  # the grid coordinate (fraction, number of classes) for sorting and reports


def plan_cells(cfg: ShotGridConfig, cells: list[Cell]) -> list[PlannedRun]:
    """Teacher runs (as Table 1 plans them) then students, seed by seed, cell by cell."""
    builder = RunBuilder(cfg, cfg.name)
    pair = cfg.pair
    labels = {"stage": ("teacher",), "teacher": (cfg.teacher,), "pair": (pair.name,)}
    runs = builder.teacher_chain(cfg.teacher, cfg.teacher_kinds, cfg.methods, cfg.lambda_for(cfg.teacher),
                                 labels=labels)
    for seed in cfg.seeds:
        for cell in cells:
            try:
                data = dataclasses.replace(cfg.data, **cell.data(seed))
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{cfg.name}: cell {cell.key}: {e}") from None
            for method in cfg.methods:
                for kind in cfg.teacher_kinds:
                    key = f"{cfg.name}/students/{cell.key}/{method}/{kind}/seed{seed}"
                    runs.append(builder.student(pair, method, kind, seed, key=key, labels={"cell": (cell.key,)},
                                                data=data))
    builder.finish()
    return runs


__all__ = ["CELL_FIELDS", "Cell", "ShotGridConfig", "plan_cells"]
