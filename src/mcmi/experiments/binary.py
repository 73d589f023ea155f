"""Binary classification KD (paper A.13, Table 13).

Each *task* is a two-class problem cut from a multi-class data set with ``data.class_groups``:
CIFAR-2x5 (CIFAR-10's first five classes against the last five, the "sub-class" structure of
Müller et al. 2020), CIFAR-26-45 (crab / lobster) and CIFAR-50-74 (mouse / shrew) of CIFAR-100.
Every task is its own Table 1 grid (:func:`mcmi.grid.builder.pair_grid`): a teacher trained on the
task, its MCMI fine-tune, the student alone, and students of each method, teacher kind and seed,
stored under ``out/<name>/<task>/``. The paper: VGG-13 -> MobileNetV2-0.1 (``mobilenetv2_x0_1``),
KD / AT / CC / VID, 5 runs. The report puts the tasks side by side in Table 13's layout.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mcmi.experiments.shots import ShotGridConfig
from mcmi.grid.builder import RunBuilder, pair_grid
from mcmi.grid.experiment import Experiment
from mcmi.grid.plan import PlannedRun


@dataclass
class BinaryTask:
    """A two-class task: ``name`` (its folder and column), the data set it is cut from, and the
    original classes of each of its two classes."""

    name: str
    data: str
    class_groups: list[list[int]]
    root: str | None = None

    def __post_init__(self) -> None:
        if len(self.class_groups) != 2:
            raise ValueError(f"task {self.name!r}: class_groups must hold two groups (a binary task), "
                             f"got {len(self.class_groups)}")


@dataclass
class BinaryConfig(ShotGridConfig):
    """Tasks x methods x teacher kinds x seeds for one teacher -> student pair.

    ``data`` holds what the tasks share (batch sizes, augmentation, subsets); each task sets the
    data set name, root and ``class_groups``. The other fields are those of every one-pair grid
    (:class:`~mcmi.experiments.shots.ShotGridConfig`).
    """

    tasks: list[BinaryTask] = field(default_factory=list)
    teacher: str = "vgg13"
    student: str = "mobilenetv2_x0_1"
    methods: list[str] = field(default_factory=lambda: ["kd", "at", "cc", "vid"])
    student_baseline: bool = True  # Table 13's "Student Acc." row
    out: str = "runs/binary"
    name: str = "binary"

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks must list at least one {name, data, class_groups}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: a name is used twice: {names}")
        if self.data.class_groups is not None:
            raise ValueError("data.class_groups is set per task; leave it out of data")
        super().__post_init__()

    def task_data(self, task: BinaryTask):
        """The data of one task: the grid's, on the task's data set and class groups."""
        return dataclasses.replace(self.data, name=task.data, root=task.root or self.data.root,
                                   class_groups=[list(g) for g in task.class_groups])


def plan(cfg: BinaryConfig) -> list[PlannedRun]:
    """Every task's Table 1 grid (:func:`mcmi.grid.builder.pair_grid`) under ``<name>/<task>``,
    task after task; each run is labelled ``task`` (``--only task=cifar-2x5``)."""
    builder = RunBuilder(cfg, "binary")
    runs: list[PlannedRun] = []
    for task in cfg.tasks:
        data = cfg.task_data(task)
        runs += pair_grid(builder, [cfg.pair], methods=cfg.methods, kinds=cfg.teacher_kinds, seeds=cfg.seeds,
                          lam=lambda arch, d=data: cfg.lambda_for(arch, d), baseline=cfg.student_baseline,
                          prefix=f"{cfg.name}/{task.name}", labels={"task": (task.name,)}, teacher_data=data,
                          student_data=data)
    builder.finish()
    return runs


EXPERIMENT = Experiment(
    command="binary", config_cls=BinaryConfig, default_config="binary_cifar", plan=plan,
    report="mcmi.reports.binary", listing_root=lambda cfg: cfg.name)

__all__ = ["EXPERIMENT", "BinaryConfig", "BinaryTask", "plan"]


