"""Teacher variants: which teacher makes the better student (paper Table 4, Table 7, Figs. 5 and 7).

A grid of *variants* of a teacher, each distilled into the same student by the same methods over
the same seeds, reported side by side with the teacher's test accuracy and its train-set LL, CMI
and mean output entropy. One mechanism covers the paper's teacher studies:

- Table 7, the lambda of the MCMI fine-tune: variants ``method: mcmi`` with ``method_args: {lam: ...}``
  fine-tuned from the MLL teacher (``init: mll``); lambda = 0 is the same fine-tune with plain
  cross-entropy (``method: mll``), the control that separates the CMI term from the extra epochs;
- Fig. 7 (A.4.2), regularizers against CMI: ``method: mll`` with ``label_smoothing`` or
  ``confidence_penalty`` (entropy regularizer);
- Table 4 (A.3), early-stopped teachers: a from-scratch variant whose recipe stops early
  (``recipe_overrides: {train: {epochs: ...}}``);
- Fig. 5 (A.2), teacher size: variants with another ``arch``, each with its MCMI fine-tune.

A variant named like a Table 1 teacher kind (``mll``, ``mcmi``) with the same recipe is the same
run as Table 1's: teachers live at ``out/teachers/<arch>/<variant>`` and students at
``out/students/<arch>-<student>/<method>/<variant>/seed<k>``, the layout of
:mod:`mcmi.grid.builder` (Table 1's), so pointing ``out`` at a Table 1 grid reuses its finished runs.
The report goes to ``out/<name>/``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from mcmi.config import deep_merge
from mcmi.experiments.train import DataSpec
from mcmi.grid.builder import PairSpec, RunBuilder
from mcmi.grid.checks import check_grid
from mcmi.grid.experiment import Experiment
from mcmi.grid.jobs import teacher_eval_stale, write_teacher_eval
from mcmi.grid.plan import PlannedRun
from mcmi.recipes import load_recipe

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class TeacherVariant:
    """One teacher: trained from scratch (``init`` None, default recipe ``teacher_recipe``) or
    fine-tuned from the last checkpoint of the variant named ``init`` (default recipe
    ``mcmi_recipe``). ``recipe_overrides`` is deep-merged over the recipe; ``group`` labels the
    report's sections (e.g. ``lambda``, ``regularizer``)."""

    name: str
    method: str = "mll"  # "mll" | "mcmi"
    method_args: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    arch: str | None = None  # default: the grid's teacher
    recipe: str | dict[str, Any] | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    group: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or "+" in self.name:
            raise ValueError(f"variant name {self.name!r}: use letters, digits, '.', '_', '-' (it names folders)")
        if self.method not in ("mll", "mcmi"):
            raise ValueError(f"variant {self.name!r}: method must be 'mll' or 'mcmi', got {self.method!r}")
        if self.method == "mcmi" and self.init is None:
            raise ValueError(f"variant {self.name!r}: an MCMI teacher fine-tunes a pretrained one: set init")


@dataclass
class TeacherVariantsConfig:
    """Variants of ``teacher`` -> ``student`` x ``methods`` x ``seeds`` (see the module notes)."""

    variants: list[TeacherVariant] = field(default_factory=list)
    teacher: str = "resnet56"
    student: str = "resnet20"
    methods: list[str] = field(default_factory=lambda: ["kd"])
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: str | None = None  # the variant gains are measured against (default: the first)
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"
    teacher_eval_view: str = "train-plain"  # teachers' train figures: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0  # the augmentation draws of the train-augmented view
    device: str = "auto"
    out: str = "runs/teacher_variants"
    name: str = "teacher_variants"

    def __post_init__(self) -> None:
        from mcmi.grid.builder import teacher_prep

        names = [v.name for v in self.variants]
        if not names:
            raise ValueError("variants must list at least one teacher")
        if len(set(names)) != len(names):
            raise ValueError(f"variants: a name is used twice: {names}")
        for v in self.variants:
            if v.init is not None:
                if v.init not in names:
                    raise ValueError(f"variant {v.name!r}: init {v.init!r} is not a variant")
                if names.index(v.init) >= names.index(v.name):
                    raise ValueError(f"variant {v.name!r}: its init {v.init!r} must be listed before it")
                if self.arch_of(v) != self.arch_of(self.variant(v.init)):
                    raise ValueError(f"variant {v.name!r}: fine-tunes {v.init!r} of another architecture")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a variant")
        check_grid(self)
        needs_prep = [m for m in self.methods if teacher_prep(m) is not None]
        if needs_prep:
            raise ValueError(f"method {needs_prep[0]!r} needs a prepared teacher (auxiliary heads); "
                             "teacher variants support methods without one")

    def variant(self, name: str) -> TeacherVariant:
        return next(v for v in self.variants if v.name == name)

    def arch_of(self, v: TeacherVariant) -> str:
        return v.arch or self.teacher

    @property
    def reference_name(self) -> str:
        return self.reference or self.variants[0].name


def plan(cfg: TeacherVariantsConfig) -> list[PlannedRun]:
    """Teachers in list order (fine-tunes after what they start from), then students seed by
    seed; ``kind`` labels a run's variant (``--only kind=mcmi-lam0.05``)."""
    builder = RunBuilder(cfg, "teacher variants")
    runs: list[PlannedRun] = []
    for v in cfg.variants:
        arch = cfg.arch_of(v)
        recipe = load_recipe(v.recipe or (cfg.mcmi_recipe if v.init else cfg.teacher_recipe))
        recipe = deep_merge(recipe, v.recipe_overrides) if v.recipe_overrides else recipe
        # the recipe's method_args belong to its own method (the MCMI recipe's lam, centroids)
        base_args = (recipe.get("method_args") or {}) if recipe.get("method", v.method) == v.method else {}
        labels = {"stage": ("teacher",), "teacher": (arch,), "kind": (v.name,),
                  "pair": (PairSpec(arch, cfg.student).name,)}
        runs.append(builder.teacher(f"teachers/{arch}/{v.name}", arch, labels, method=v.method, recipe=recipe,
                                    recipe_name=f"variant {v.name}", method_args={**base_args, **v.method_args},
                                    init=f"teachers/{arch}/{v.init}" if v.init else None))
    for seed in cfg.seeds:
        for v in cfg.variants:
            for method in cfg.methods:
                runs.append(builder.student(PairSpec(cfg.arch_of(v), cfg.student), method, v.name, seed))
    builder.finish()
    return runs


def measure(cfg: TeacherVariantsConfig, runs: Sequence[PlannedRun]) -> None:
    """Train-set accuracy, LL, CMI and entropy of every finished teacher (``teacher_eval.json``) in
    the view ``cfg.teacher_eval_view`` (:mod:`mcmi.metrics.train_view`); evaluations of another
    view or checkpoint, or written before the entropy was measured, are redone."""
    for run in runs:
        if run.stage == "student" or not (run.out_dir / "summary.json").is_file():
            continue
        if teacher_eval_stale(run, need=("entropy",)):
            log.info("%s: evaluating the teacher on the training set (view %s)", run.key, run.eval_view)
            write_teacher_eval(run)


EXPERIMENT = Experiment(
    command="teacher-variants", config_cls=TeacherVariantsConfig, default_config="teacher_variants_cifar100",
    plan=plan, report="mcmi.reports.teacher_variants", measure=measure)

__all__ = ["EXPERIMENT", "TeacherVariant", "TeacherVariantsConfig", "measure", "plan"]
