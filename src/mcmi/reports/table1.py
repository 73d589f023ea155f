"""Report of paper Table 1 (and Tables 10-11): student top-1 with MLL vs MCMI teachers, pair by method.

:func:`write_report` reads every run folder of a Table 1 grid and writes ``out/README.md``
(atomically) in the layout of the paper's Table 1 -- rows are methods, columns are teacher-student
pairs, each with an MLL and an MCMI column; the MCMI cell adds the gain over MLL -- once for the
best-epoch and once for the last-epoch top-1, with teacher accuracy, LL and CMI rows, and
``out/results.json`` with every number. When the data set is CIFAR-100 each cell also carries the
paper's value (Table 1 means, Tables 10-11 MCMI spreads; :mod:`mcmi.reports.paper`).

Cells whose per-pair method weights (DKD's beta, ReviewKD's loss weight) are not the authors'
config for that pair are marked: ``†`` the value of the nearest pair the authors give (named in a
footnote with its source), ``‡`` the method's class default (the pair table does not list the
pair, or ``use_pair_defaults`` is off). The teacher rows name the view of the training set their
LL and CMI were measured in (:mod:`mcmi.metrics.train_view`).

Reads: each run's ``summary.json`` (and ``error.txt`` of unfinished ones), the teachers'
``teacher_eval.json``, and the recipes (for their epochs). Config fields read: ``pairs`` (with
``teacher``, ``student``, ``name``), ``methods``, ``teacher_kinds``, ``seeds``, ``data``, the four
recipes, ``mcmi_lambda``, ``mcmi_lambda_default``, ``method_args``, ``pair_method_args``,
``use_pair_defaults``, ``student_baseline``, ``teacher_checkpoint``, ``out``.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mcmi.engine.rundir import read_summary
from mcmi.reports.common import (
    config_yaml,
    counts_text,
    git_commit,
    header_block,
    outcome_counts,
    run_failures,
    status_counts,
    teacher_dir,
    teacher_figures,
    teacher_views_line,
)
from mcmi.reports.numbers import paired_by_seed, pct, stats
from mcmi.reports.paper import (
    PAPER_GAINS,
    PAPER_MCMI_MEAN_STD,
    PAPER_REPRODUCED,
    PAPER_STUDENT_BASELINE,
    PAPER_TABLE1,
    PAPER_TABLE6_LAMBDA,
    PAPER_TEACHERS,
)
from mcmi.reports.table1_tables import (
    arch_family,
    fallback_mark,
    fallback_notes,
    has_top5,
    pair_groups,
    paired_section,
    top1_table,
    top5_sections,
)
from mcmi.reports.tables import fmt_mean_std


# ------------------------------------------------------------------------------------ collect
def grid_method_args(cfg: Any, pair: Any, method: str) -> dict[str, Any]:
    """The arguments of ``method`` for ``pair`` the grid sets itself: ``method_args`` <
    ``pair_method_args`` (explicit settings, never marked as a fallback)."""
    args: dict[str, Any] = dict((cfg.method_args or {}).get(method, {}) or {})
    per_pair = (getattr(cfg, "pair_method_args", None) or {}).get(pair.name, {}) or {}
    args.update(per_pair.get(method, {}) or {})
    return args


def method_weight_status(cfg: Any, pair: Any, method: str):
    """How ``method``'s per-pair weights are set for ``pair`` in grid ``cfg``
    (:func:`mcmi.methods.pair_defaults.pair_default_status`), or None for methods without them."""
    from mcmi.methods.pair_defaults import pair_default_status

    return pair_default_status(method, pair.teacher, pair.student, explicit=grid_method_args(cfg, pair, method),
                               use_table=cfg.use_pair_defaults)


def _top5_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``best_top5`` / ``last_top5``: statistics of the runs' top-5 (None where none has one)."""
    return {f"{which}_top5": stats([r[f"{which}_top5"] for r in rows if r.get(f"{which}_top5") is not None])
            for which in ("best", "last")}


def _acc_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out = {which: stats([r[f"{which}_acc"] for r in rows if r[f"{which}_acc"] is not None])
           for which in ("best", "last")}
    out.update(_top5_stats(rows))
    return out


def _run_rows(runs: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(students, baselines): one row per finished run, accuracies in %."""
    students, baselines = [], []
    for run in runs:
        if run.stage not in ("student", "baseline"):
            continue
        s = read_summary(run.out_dir)
        if s is None:
            continue
        row = {"run": run.key, "student": run.label("student"), "seed": int(run.label("seed")),
               "best_acc": pct(s.get("best_acc")), "last_acc": pct(s.get("last_acc")),
               "best_epoch": s.get("best_epoch"), "epochs": s.get("epochs"),
               "best_top5": pct(s.get("best_top5")), "last_top5": pct(s.get("last_top5"))}
        if run.stage == "baseline":
            baselines.append(row)
        else:
            students.append({"pair": run.label("pair"), "teacher": run.label("teacher"), "method": run.label("method"),
                             "kind": run.label("kind"), **row})
    return students, baselines


def _cell(cfg: Any, pair: Any, method: str, students: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = [r for r in students if r["pair"] == pair.name and r["method"] == method]
    cell: dict[str, Any] = {kind: _acc_stats([r for r in rows if r["kind"] == kind]) for kind in cfg.teacher_kinds}
    for which in ("best", "last"):
        a, b = (cell.get(k, {}).get(which) for k in ("mll", "mcmi"))
        cell[f"gain_{which}"] = b["mean"] - a["mean"] if a and b else None
        # paired by seed: the seed fixes the student's initialization and data order for both kinds
        seeds, diffs = paired_by_seed(rows, f"{which}_acc")
        cell[f"paired_{which}"] = {"seeds": seeds, "diffs": diffs, **(stats(diffs) or {})} if diffs else None
    w = method_weight_status(cfg, pair, method)
    cell["weights"] = None if w is None else {
        "status": w.status, "values": w.values, "source": w.source,
        "source_pair": list(w.source_pair) if w.source_pair else None, "reason": w.reason}
    return cell


def collect_results(cfg: Any, runs: Sequence[Any], *, config: Mapping[str, Any] | None = None,
                    root: str | Path | None = None) -> dict[str, Any]:
    """Every number of the grid from its run folders (accuracies in %). ``config``: the grid's
    config as results.json records it (default ``to_dict(cfg)``); ``root``: the folder run keys
    are given relative to (default: the runs' own keys)."""
    from mcmi.config import to_dict

    if root is not None:
        runs = [_Rooted(r, Path(root)) for r in runs]
    teachers: dict[str, dict[str, Any]] = {}
    for arch in dict.fromkeys(p.teacher for p in cfg.pairs):
        for kind in cfg.teacher_kinds:
            teachers.setdefault(arch, {})[kind] = teacher_figures(teacher_dir(runs, arch, kind))
    students, baselines = _run_rows(runs)
    cells = {pair.name: {method: _cell(cfg, pair, method, students) for method in cfg.methods} for pair in cfg.pairs}
    base_cells = {student: _acc_stats([r for r in baselines if r["student"] == student])
                  for student in dict.fromkeys(p.student for p in cfg.pairs)}
    return {
        "table": "paper Table 1 (student top-1 %, MLL vs MCMI teachers)",
        "data": to_dict(cfg.data), "status": status_counts(runs), "failures": run_failures(runs),
        "teachers": teachers, "baselines": base_cells, "cells": cells,
        "students": students, "baseline_runs": baselines, "config": to_dict(cfg) if config is None else dict(config),
    }


class _Rooted:
    """A run whose ``key`` is its folder relative to ``root`` (a binary task's, a cell's)."""

    def __init__(self, run: Any, root: Path) -> None:
        self._run = run
        out = Path(run.out_dir)
        self.key = str(out.relative_to(root)) if out.is_relative_to(root) else run.key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)


@dataclass(frozen=True)
class Pair:
    """A teacher -> student pair as a Table 1 grid names it."""

    teacher: str
    student: str

    @property
    def name(self) -> str:
        return f"{self.teacher}-{self.student}"


def one_pair_grid(cfg: Any, *, data: Any, out: str | Path) -> tuple[Any, dict[str, Any]]:
    """The Table 1 grid of a one-pair config (a binary task, a semi-supervised cell) on ``data``
    under ``out``: an object :func:`collect_results` reads, and its config as a Table 1 grid's
    results.json records it (lambda per teacher: Table 6's teachers, and the config's own teacher
    when it sets ``mcmi_lambda``, each as ``cfg.lambda_for(arch, data)`` decides)."""
    from mcmi.config import to_dict

    archs = [*PAPER_TABLE6_LAMBDA, *([cfg.teacher] if cfg.mcmi_lambda is not None else [])]
    config = {
        "pairs": [{"teacher": cfg.teacher, "student": cfg.student}], "methods": list(cfg.methods),
        "teacher_kinds": list(cfg.teacher_kinds), "seeds": list(cfg.seeds), "data": to_dict(data),
        **{f: copy.deepcopy(getattr(cfg, f)) for f in ("teacher_recipe", "mcmi_recipe", "student_recipe",
                                                         "heads_recipe")},
        "mcmi_lambda": {a: cfg.lambda_for(a, data) for a in dict.fromkeys(archs)}, "mcmi_lambda_default": 0.15,
        "student_lr": dict(cfg.student_lr), "method_args": copy.deepcopy(dict(cfg.method_args)),
        "pair_method_args": {}, "use_pair_defaults": cfg.use_pair_defaults,
        "student_baseline": getattr(cfg, "student_baseline", False),
        **{f: getattr(cfg, f) for f in ("teacher_seed", "teacher_checkpoint", "teacher_eval_view",
                                        "teacher_eval_seed", "device")},
        "out": str(out)}
    view = SimpleNamespace(pairs=[Pair(cfg.teacher, cfg.student)], methods=list(cfg.methods),
                           teacher_kinds=list(cfg.teacher_kinds), seeds=list(cfg.seeds), data=data,
                           method_args=dict(cfg.method_args), pair_method_args={},
                           use_pair_defaults=cfg.use_pair_defaults)
    return view, config


# ------------------------------------------------------------------------------------ render
def _lambda(cfg: Any, arch: str) -> float:
    return float(cfg.mcmi_lambda.get(arch, cfg.mcmi_lambda_default))


def _setting(cfg: Any) -> str:
    from mcmi.recipes import load_recipe

    epochs = {name: (load_recipe(getattr(cfg, name)).get("train") or {}).get("epochs")
              for name in ("teacher_recipe", "mcmi_recipe", "student_recipe")}
    data = cfg.data
    how = "the first in file order" if data.subset_mode == "first" else "the same number from every class"
    subset = f", {data.train_subset} training images ({how})" if data.train_subset else ""
    return (f"Setting: data `{data.name}`{subset}; epochs: teacher {epochs['teacher_recipe']}, "
            f"MCMI fine-tune {epochs['mcmi_recipe']}, students {epochs['student_recipe']}; "
            f"students read the teachers' `{cfg.teacher_checkpoint}.pt`; "
            "MCMI lambda per teacher: " + ", ".join(f"{a} {_lambda(cfg, a):g}" for a in dict.fromkeys(
                p.teacher for p in cfg.pairs)) + ".")


def render_report(cfg: Any, res: Mapping[str, Any], command: str = "", commit: str | None = None,
                  outcomes: Sequence[Any] = ()) -> str:
    """The Markdown of ``out/README.md`` from :func:`collect_results`' dict."""
    paper = cfg.data.name == "cifar100"
    st = res["status"]
    lines = header_block(f"Paper Table 1: students of MLL vs MCMI teachers ({cfg.data.name})", command, commit,
                         "unknown (not a git checkout)")
    lines += [f"Runs of the grid: {sum(st.values())} ({st['done']} done, {st['partial']} partial, {st['todo']} todo). "
              f"Grid: {len(cfg.pairs)} pairs x {len(cfg.methods)} methods x {len(cfg.teacher_kinds)} teacher kinds "
              f"x {len(cfg.seeds)} seeds (seeds {', '.join(map(str, cfg.seeds))})."]
    if outcomes:
        lines += ["", "This invocation: " + counts_text(outcome_counts(outcomes), sort=True) + "."]
    if res["failures"]:
        lines += ["", "Runs that failed (see `error.txt` in their folders):", ""]
        lines += [f"- `{f['run']}`: {f['error']}" for f in res["failures"]]
    lines += ["", _setting(cfg)]
    lines += ["", "Cells: top-1 accuracy (%) of the student, mean ± sample std over seeds (n when fewer seeds than "
              "the grid's have finished); the MCMI cell adds the gain of the means over the MLL cell. Teacher rows: "
              "test top-1 of the teacher at the same epoch choice; LL and CMI on the training set for the "
              "checkpoint the students read. " + teacher_views_line(
                  t for kinds in res["teachers"].values() for t in kinds.values())]
    if any(fallback_mark(c) for per in res["cells"].values() for c in per.values()):
        lines += ["", "DKD's beta and ReviewKD's loss weight are the methods' authors' values for each pair "
                  "(mdistiller's configs, ReviewKD's CIFAR-100 script) where they give one; † marks cells where they "
                  "give none and the value of the nearest pair they give is used, ‡ cells with the method's default "
                  "(footnotes under each table)."]
    if paper:
        lines += ["", "After ` / `: the paper's Table 1 (mean of 5 runs, 240 epochs; MCMI spread from Tables 10-11, "
                  "gain in parentheses; * marks values the paper reproduced locally). Compare with ours only when "
                  "the recipes are the paper's."]
    groups = pair_groups(cfg.pairs)
    for which, title in (("best", "Top-1 at the best epoch"), ("last", "Top-1 at the last epoch")):
        lines += ["", f"## {title} (%)"]
        for group_title, pairs in groups:
            if pairs:
                lines += ["", f"### {group_title}", "", top1_table(cfg, res, pairs, which, paper)]
                notes = fallback_notes(cfg, res, pairs)
                if notes:
                    lines += [""] + [f"{n}  " if i < len(notes) - 1 else n for i, n in enumerate(notes)]
    lines += top5_sections(cfg, res, groups)
    lines += paired_section(cfg, res)
    lines += ["", "## Configuration", "", "```yaml", config_yaml(cfg), "```",
              "", "All numbers, per run too: `results.json`.", ""]
    return "\n".join(lines)


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """Write ``out/README.md`` and ``out/results.json`` of the grid ``cfg`` from its planned
    ``runs`` (all of them, whatever an ``--only`` filter trained). Returns the README path."""
    from mcmi.io import write_json, write_text

    res = collect_results(cfg, runs)
    commit = git_commit()
    out = Path(cfg.out)
    res = {**res, "command": command, "commit": commit}
    if cfg.data.name == "cifar100":
        res["paper"] = {"teachers": PAPER_TEACHERS, "student_baseline": PAPER_STUDENT_BASELINE,
                        "table1": PAPER_TABLE1, "mcmi_mean_std_tables10_11": PAPER_MCMI_MEAN_STD,
                        "reproduced_by_the_paper": sorted(map(list, PAPER_REPRODUCED))}
    write_json(out / "results.json", res)
    return write_text(out / "README.md", render_report(cfg, res, command, commit, outcomes))


#: The Table 1 command's name for :func:`write_report`.
write_table1_report = write_report

__all__ = [
    "PAPER_GAINS", "PAPER_MCMI_MEAN_STD", "PAPER_REPRODUCED", "PAPER_STUDENT_BASELINE", "PAPER_TABLE1",
    "PAPER_TEACHERS", "Pair", "arch_family", "collect_results", "fmt_mean_std", "git_commit", "grid_method_args",
    "has_top5", "method_weight_status", "one_pair_grid", "render_report", "write_report", "write_table1_report",
]
