"""Binary classification KD (paper A.13, Table 13).

Each *task* is a two-class problem cut from a multi-class data set with ``data.class_groups``:
CIFAR-2x5 (CIFAR-10's first five classes against the last five, the "sub-class" structure of
Müller et al. 2020), CIFAR-26-45 (crab / lobster) and CIFAR-50-74 (mouse / shrew) of CIFAR-100.
Every task is its own Table 1 grid (:mod:`mcmi.experiments.table1`): a teacher trained on the
task, its MCMI fine-tune, the student alone, and students of each method, teacher kind and seed,
stored under ``out/<name>/<task>/``. The paper: VGG-13 -> MobileNetV2-0.1 (``mobilenetv2_x0_1``),
KD / AT / CC / VID, 5 runs. The report puts the tasks side by side in Table 13's layout.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcmi.experiments.shots import ShotGridConfig
from mcmi.experiments.table1 import PairSpec, PlannedRun, RunOutcome, Table1Config

log = logging.getLogger(__name__)

#: Paper Table 13 (student top-1 %, mean of five runs): task -> method -> (MLL, MCMI); "student": alone.
PAPER_TABLE13: dict[str, dict[str, Any]] = {
    "cifar-2x5": {"student": 76.94, "kd": (77.00, 77.41), "at": (67.39, 68.19), "cc": (77.19, 77.85),
                  "vid": (77.16, 77.34)},
    "cifar-26-45": {"student": 65.50, "kd": (69.70, 70.10), "at": (64.70, 65.43), "cc": (70.30, 70.75),
                    "vid": (69.25, 70.00)},
    "cifar-50-74": {"student": 66.30, "kd": (71.40, 71.20), "at": (67.10, 69.50), "cc": (69.70, 71.40),
                    "vid": (69.80, 69.80)},
}


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
        for task in self.tasks:
            self.task_grid(task)  # each task's data set and groups

    def task_grid(self, task: BinaryTask) -> Table1Config:
        """The Table 1 grid of one task, under ``out/<name>/<task>``."""
        data = dataclasses.replace(self.data, name=task.data, root=task.root or self.data.root,
                                   class_groups=[list(g) for g in task.class_groups])
        return self.table1(data=data, student_baseline=self.student_baseline,
                           out=str(Path(self.out) / self.name / task.name))


def plan(cfg: BinaryConfig, only: Mapping[str, set[str]] | None = None) -> list[tuple[BinaryTask, Table1Config, list[PlannedRun]]]:
    """Per task (``only["task"]`` picks tasks; the other keys filter runs as Table 1's ``--only``):
    the task, its grid and its selected runs."""
    from mcmi.experiments.table1 import expand_grid, select_runs

    only = dict(only or {})
    tasks = only.pop("task", None)
    if tasks:
        unknown = sorted(tasks - {t.name for t in cfg.tasks})
        if unknown:
            raise ValueError(f"--only task={unknown[0]}: no such task; tasks: {', '.join(t.name for t in cfg.tasks)}")
    out = []
    for task in cfg.tasks:
        if tasks and task.name not in tasks:
            continue
        grid = cfg.task_grid(task)
        out.append((task, grid, select_runs(expand_grid(grid), only)))
    return out


def run_binary(cfg: BinaryConfig, only: str | Sequence[str] | None = None, command: str = "",
               report_only: bool = False, workers: int | None = None,
               cohort: bool = False):
    """Train every task's grid (finished runs skipped; ``workers`` runs at a time through the sweep
    engine, else one after another), then write the report. Returns (runs, outcomes, report path)."""
    from mcmi.experiments.shots import parse_only
    from mcmi.experiments.table1 import train_runs

    runs: list[PlannedRun] = []
    outcomes: list[RunOutcome] = []
    for task, grid, selected in plan(cfg, parse_only(only, key="task")):
        runs += selected
        if report_only:
            continue
        log.info("binary: task %s (%d runs)", task.name, len(selected))
        outcomes += train_runs(grid, selected, workers, cohort=cohort)
    return runs, outcomes, write_report(cfg, command, outcomes)


def write_report(cfg: BinaryConfig, command: str = "", outcomes: Sequence[RunOutcome] = ()) -> Path:
    """``out/<name>/README.md`` and ``results.json``: Table 13's layout (rows: the student alone,
    then each method; per task an MLL and an MCMI column with the gain of the means), best and
    last epoch, mean ± std over seeds; MCMI - MLL paired by seed, per method and pooled; then each
    task's teachers."""
    from mcmi.config import to_dict
    from mcmi.experiments.shots import format_cell
    from mcmi.experiments.table1 import expand_grid
    from mcmi.io import write_json, write_text
    from mcmi.reports.table1 import collect_results, git_commit
    from mcmi.reports.tables import markdown_table

    n = len(cfg.seeds)
    pair = PairSpec(cfg.teacher, cfg.student).name
    results = {t.name: collect_results(cfg.task_grid(t), expand_grid(cfg.task_grid(t))) for t in cfg.tasks}
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    lines = [f"# Binary tasks (paper A.13, Table 13): {cfg.teacher} -> {cfg.student}", "",
             "Command:", "", f"    {command or '(library call: mcmi.experiments.binary.run_binary)'}", "",
             f"Commit: `{git_commit() or 'unknown'}`  ",
             f"Written: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}", ""]
    status = {k: sum(r["status"][k] for r in results.values()) for k in ("done", "partial", "todo")}
    lines += [f"Runs: {sum(status.values())} ({', '.join(f'{v} {k}' for k, v in status.items())})"
              + (f"; this invocation: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}" if counts else "") + ".", ""]
    lines += ["Tasks (each with its own teacher, trained on the task):", ""]
    lines += [f"- `{t.name}`: `{t.data}`, class 0 = original classes {t.class_groups[0]}, class 1 = "
              f"{t.class_groups[1]}" for t in cfg.tasks]
    lines += ["", "Cells: student test top-1 (%), mean ± sample std over seeds (n when fewer have finished); "
              "MCMI cells add the gain of the means over MLL. Paper values (Table 13, CIFAR data, VGG-13 -> "
              "MobileNetV2-0.1) are listed only for the tasks cut from the paper's data sets.", ""]
    for which in ("best", "last"):
        header = ["method"] + [f"{t.name} {k.upper()}" for t in cfg.tasks for k in cfg.teacher_kinds]
        body = [["student alone"] + [format_cell(_values(results[t.name]["baseline_runs"], which), n)
                                     if k == cfg.teacher_kinds[0] else "" for t in cfg.tasks for k in cfg.teacher_kinds]]
        for method in cfg.methods:
            row = [method]
            for t in cfg.tasks:
                cell = results[t.name]["cells"].get(pair, {}).get(method, {})
                for kind in cfg.teacher_kinds:
                    vals = _values([r for r in results[t.name]["students"]
                                    if r["method"] == method and r["kind"] == kind], which)
                    text = format_cell(vals, n)
                    gain = cell.get(f"gain_{which}")
                    if kind == "mcmi" and gain is not None:
                        text += f" ({gain:+.2f})"
                    row.append(text)
            body.append(row)
        lines += [f"## Student top-1, {which} epoch", "", markdown_table(header, body), ""]
    if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
        lines += _paired_section(cfg, results)
    paper = [t for t in cfg.tasks if t.data in ("cifar10", "cifar100") and t.name in PAPER_TABLE13]
    if paper:
        header = ["method"] + [f"{t.name} {k}" for t in paper for k in ("MLL", "MCMI")]
        body = [["student alone"] + [x for t in paper for x in (f"{PAPER_TABLE13[t.name]['student']:.2f}", "")]]
        body += [[m] + [f"{PAPER_TABLE13[t.name][m][i]:.2f}" for t in paper for i in (0, 1)]
                 for m in cfg.methods if all(m in PAPER_TABLE13[t.name] for t in paper)]
        lines += ["## Paper Table 13", "", markdown_table(header, body), ""]
    f = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    rows = [[t.name, kind.upper(), f"{f(te['best_acc'])} / {f(te['last_acc'])}", f(te["train_ll"], 4),
             f(te["train_cmi"], 4)]
            for t in cfg.tasks for kind, te in results[t.name]["teachers"].get(cfg.teacher, {}).items()]
    from mcmi.experiments.shots import teacher_views_line

    lines += [f"## Teachers ({cfg.teacher})", "",
              markdown_table(["task", "teacher", "test top-1 best / last (%)", "train LL", "train CMI"], rows), "",
              teacher_views_line(te for t in cfg.tasks for te in results[t.name]["teachers"].get(cfg.teacher, {}).values()),
              ""]
    lines += ["Every run's numbers: `results.json`; the runs themselves: `<task>/`.", ""]
    out = Path(cfg.out) / cfg.name
    write_json(out / "results.json", {"experiment": "binary KD (paper A.13, Table 13)", "command": command,
                                      "config": to_dict(cfg), "tasks": results})
    return write_text(out / "README.md", "\n".join(lines))


def _paired_section(cfg: BinaryConfig, results: dict[str, Any]) -> list[str]:
    """MCMI - MLL at the best epoch, paired by seed, per method and pooled over methods: with 100
    test images a seed's spread is several points, and pooling the pairs is the strongest reading
    a small grid gives."""
    from mcmi.experiments.shots import paired_differences
    from mcmi.reports.tables import fmt_mean_std, markdown_table

    def cell(diffs: list[float]) -> str:
        return f"{fmt_mean_std(diffs, signed=True)} ({sum(d > 0 for d in diffs)} of {len(diffs)} > 0)" if diffs else "–"

    body = []
    pooled: dict[str, list[float]] = {t.name: [] for t in cfg.tasks}
    for method in cfg.methods:
        row = [method]
        for t in cfg.tasks:
            diffs = paired_differences(results[t.name]["students"], "best_acc", method=method)
            pooled[t.name] += diffs
            row.append(cell(diffs))
        body.append(row)
    body.append(["all methods, pooled"] + [cell(pooled[t.name]) for t in cfg.tasks])
    return ["## MCMI - MLL, paired by seed (best epoch)", "",
            "Student of the MCMI teacher minus the student of the MLL teacher with the same method and seed; "
            "mean ± std over the pairs, and how many are positive.", "",
            markdown_table(["method"] + [t.name for t in cfg.tasks], body), ""]


def _values(rows: Sequence[dict[str, Any]], which: str) -> list[float]:
    return [r[f"{which}_acc"] for r in sorted(rows, key=lambda r: r["seed"]) if r.get(f"{which}_acc") is not None]


def main(argv: list[str] | None = None) -> int:
    from mcmi.experiments.shots import grid_main, parse_only

    return grid_main(argv, prog="mcmi binary", config_cls=BinaryConfig, default_config="binary_cifar",
                     only_example="task=cifar-2x5,method=kd,seed=0", run=run_binary,
                     description=__doc__.split("\n\n")[0], only_key="task",
                     plan=lambda cfg, only: [dataclasses.replace(r, key=f"{task.name}/{r.key}")  # task in the listing
                                             for task, _, runs in plan(cfg, parse_only(only, key="task")) for r in runs])


__all__ = ["BinaryConfig", "BinaryTask", "PAPER_TABLE13", "plan", "run_binary", "write_report"]
