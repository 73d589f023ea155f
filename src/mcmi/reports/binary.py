"""Report of the binary tasks (paper A.13, Table 13): one Table 1 grid per two-class task.

Each task's runs are collected as a Table 1 grid (:func:`mcmi.reports.table1.collect_results`:
run folders' ``summary.json``, the teachers' ``teacher_eval.json``); the report writes
``<out>/<name>/README.md`` in Table 13's layout (rows: the student alone, then each method; per task
an MLL and an MCMI column with the gain of the means), best and last epoch, mean ± std over seeds;
MCMI - MLL paired by seed, per method and pooled; the paper's Table 13 for the tasks cut from its
data sets; each task's teachers. And ``results.json`` with every task's numbers.

A run belongs to the task whose ``task`` label it carries, or else to the task whose folder
(``<out>/<name>/<task>``) holds its folder; run keys are shown relative to that folder. Config
fields read: ``tasks`` (``name``, ``data``, ``class_groups``), ``teacher``, ``student``,
``methods``, ``teacher_kinds``, ``seeds``, ``out``, ``name``, what :func:`~mcmi.reports.table1.one_pair_grid`
reads, and ``task_data(task)`` (the task's data spec).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.reports.common import (
    counts_text,
    git_commit,
    header_block,
    outcome_counts,
    teacher_views_line,
)
from mcmi.reports.numbers import fmt_num, format_cell, gained_text, paired_differences, seed_values
from mcmi.reports.paper import PAPER_TABLE13
from mcmi.reports.table1 import collect_results, one_pair_grid
from mcmi.reports.tables import markdown_table


def task_folder(cfg: Any, task: Any) -> Path:
    """The folder of a task's runs (and of its grid): ``<out>/<name>/<task>``."""
    return Path(cfg.out) / cfg.name / task.name


def task_runs(cfg: Any, task: Any, runs: Sequence[Any]) -> list[Any]:
    """The runs of ``task``: labelled with it, or (runs without a ``task`` label) in its folder."""
    root = task_folder(cfg, task)

    def of_task(run: Any) -> bool:
        if run.labels.get("task"):
            return run.label("task") == task.name
        return Path(run.out_dir).is_relative_to(root)

    return [r for r in runs if of_task(r)]


def collect_task(cfg: Any, task: Any, runs: Sequence[Any]) -> dict[str, Any]:
    """The task's numbers as its Table 1 grid's (:func:`mcmi.reports.table1.collect_results`),
    run keys relative to the task's folder."""
    root = task_folder(cfg, task)
    grid, config = one_pair_grid(cfg, data=cfg.task_data(task), out=root)
    return collect_results(grid, task_runs(cfg, task, runs), config=config, root=root)


def paired_section(cfg: Any, results: Mapping[str, Any]) -> list[str]:
    """MCMI - MLL at the best epoch, paired by seed, per method and pooled over methods: with 100
    test images a seed's spread is several points, and pooling the pairs is the strongest reading
    a small grid gives."""
    body = []
    pooled: dict[str, list[float]] = {t.name: [] for t in cfg.tasks}
    for method in cfg.methods:
        row = [method]
        for t in cfg.tasks:
            diffs = paired_differences(results[t.name]["students"], "best_acc", method=method)
            pooled[t.name] += diffs
            row.append(gained_text(diffs))
        body.append(row)
    body.append(["all methods, pooled"] + [gained_text(pooled[t.name]) for t in cfg.tasks])
    return ["## MCMI - MLL, paired by seed (best epoch)", "",
            "Student of the MCMI teacher minus the student of the MLL teacher with the same method and seed; "
            "mean ± std over the pairs, and how many are positive.", "",
            markdown_table(["method"] + [t.name for t in cfg.tasks], body), ""]


def _accuracy_table(cfg: Any, results: Mapping[str, Any], which: str) -> str:
    n = len(cfg.seeds)
    pair = f"{cfg.teacher}-{cfg.student}"
    header = ["method"] + [f"{t.name} {k.upper()}" for t in cfg.tasks for k in cfg.teacher_kinds]
    body = [["student alone"] + [format_cell(seed_values(results[t.name]["baseline_runs"], which), n)
                                 if k == cfg.teacher_kinds[0] else "" for t in cfg.tasks for k in cfg.teacher_kinds]]
    for method in cfg.methods:
        row = [method]
        for t in cfg.tasks:
            cell = results[t.name]["cells"].get(pair, {}).get(method, {})
            for kind in cfg.teacher_kinds:
                text = format_cell(seed_values([r for r in results[t.name]["students"]
                                                if r["method"] == method and r["kind"] == kind], which), n)
                gain = cell.get(f"gain_{which}")
                if kind == "mcmi" and gain is not None:
                    text += f" ({gain:+.2f})"
                row.append(text)
        body.append(row)
    return markdown_table(header, body)


def _paper_section(cfg: Any) -> list[str]:
    paper = [t for t in cfg.tasks if t.data in ("cifar10", "cifar100") and t.name in PAPER_TABLE13]
    if not paper:
        return []
    header = ["method"] + [f"{t.name} {k}" for t in paper for k in ("MLL", "MCMI")]
    body = [["student alone"] + [x for t in paper for x in (f"{PAPER_TABLE13[t.name]['student']:.2f}", "")]]
    body += [[m] + [f"{PAPER_TABLE13[t.name][m][i]:.2f}" for t in paper for i in (0, 1)]
             for m in cfg.methods if all(m in PAPER_TABLE13[t.name] for t in paper)]
    return ["## Paper Table 13", "", markdown_table(header, body), ""]


def _teacher_section(cfg: Any, results: Mapping[str, Any]) -> list[str]:
    teachers = [(t, kind, te) for t in cfg.tasks for kind, te in results[t.name]["teachers"].get(cfg.teacher, {}).items()]
    rows = [[t.name, kind.upper(), f"{fmt_num(te['best_acc'])} / {fmt_num(te['last_acc'])}", fmt_num(te["train_ll"], 4),
             fmt_num(te["train_cmi"], 4)] for t, kind, te in teachers]
    return [f"## Teachers ({cfg.teacher})", "",
            markdown_table(["task", "teacher", "test top-1 best / last (%)", "train LL", "train CMI"], rows), "",
            teacher_views_line(te for _, _, te in teachers), ""]


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """``<out>/<name>/README.md`` and ``results.json`` (see the module notes) from the planned
    runs of every task; returns the README's path."""
    from mcmi.config import to_dict
    from mcmi.io import write_json, write_text

    results = {t.name: collect_task(cfg, t, runs) for t in cfg.tasks}
    counts = outcome_counts(outcomes)
    lines = header_block(f"Binary tasks (paper A.13, Table 13): {cfg.teacher} -> {cfg.student}", command,
                         git_commit())
    status = {k: sum(r["status"][k] for r in results.values()) for k in ("done", "partial", "todo")}
    lines += [f"Runs: {sum(status.values())} ({counts_text(status)})"
              + (f"; this invocation: {counts_text(counts, sort=True)}" if counts else "") + ".", ""]
    lines += ["Tasks (each with its own teacher, trained on the task):", ""]
    lines += [f"- `{t.name}`: `{t.data}`, class 0 = original classes {t.class_groups[0]}, class 1 = "
              f"{t.class_groups[1]}" for t in cfg.tasks]
    lines += ["", "Cells: student test top-1 (%), mean ± sample std over seeds (n when fewer have finished); "
              "MCMI cells add the gain of the means over MLL. Paper values (Table 13, CIFAR data, VGG-13 -> "
              "MobileNetV2-0.1) are listed only for the tasks cut from the paper's data sets.", ""]
    for which in ("best", "last"):
        lines += [f"## Student top-1, {which} epoch", "", _accuracy_table(cfg, results, which), ""]
    if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
        lines += paired_section(cfg, results)
    lines += _paper_section(cfg)
    lines += _teacher_section(cfg, results)
    lines += ["Every run's numbers: `results.json`; the runs themselves: `<task>/`.", ""]
    out = Path(cfg.out) / cfg.name
    write_json(out / "results.json", {"experiment": "binary KD (paper A.13, Table 13)", "command": command,
                                      "config": to_dict(cfg), "tasks": results})
    return write_text(out / "README.md", "\n".join(lines))


__all__ = ["collect_task", "paired_section", "task_folder", "task_runs", "write_report"]
