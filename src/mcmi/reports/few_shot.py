"""Report of the few-shot grid (paper Sec. 6.3: Tables 3 and 12).

Reads each finished student's ``summary.json`` and the teachers' folders; writes
``<out>/<name>/README.md`` in Table 3's layout (rows: method x teacher kind, the MCMI - MLL gain of
the means and paired by seed; columns: the fraction alpha of the training set the student sees;
cells: test top-1 mean ± std over seeds, best and last epoch; the paper's values in parentheses for
its setting), ``results.json`` and ``few_shot.{png,pdf}`` (top-1 against alpha).

Config fields read: ``teacher``, ``student``, ``methods``, ``teacher_kinds``, ``seeds``, ``data``,
``fraction_mode``, ``epoch_length``, ``out``, ``name`` and ``cells()``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.reports.numbers import cell_stats, format_cell, paired_differences, signed_cell
from mcmi.reports.paper import PAPER_TABLE3
from mcmi.reports.shots import plot_cell_curves, shot_header, student_rows, teacher_section
from mcmi.reports.tables import markdown_table, mean_std


def _setting(cfg: Any, paper: bool) -> str:
    first = cfg.fraction_mode == "first"
    full = cfg.epoch_length == "full"
    return (f"The student sees a fraction α of the training set: "
            f"{'the first α·N images in file order' if first else 'α of every class (stratified)'} "
            f"(`fraction_mode: {cfg.fraction_mode}`), the same images for every teacher and seed; "
            f"epochs {'keep the full set’s length (the subset is cycled)' if full else 'are one pass over the subset'} "
            f"(`epoch_length: {cfg.epoch_length}`). Test top-1 (%), mean ± std over seeds"
            + (" (paper Table 3 values in parentheses)." if paper else "."))


def _table(cfg: Any, rows: Sequence[Mapping[str, Any]], cells: Sequence[Any], which: str, paper: bool,
           results: dict[str, Any]) -> str:
    """One epoch choice (``best`` / ``last``): rows method x teacher kind, then the gain of the
    means and the paired gain; fills ``results[which]`` with every cell's values."""
    n = len(cfg.seeds)
    body = []
    for method in cfg.methods:
        means = {}
        for kind in cfg.teacher_kinds:
            row = [method, kind.upper()]
            for c in cells:
                vals = cell_stats(rows, f"{which}_acc", cell=c.key, method=method, kind=kind)
                means[(kind, c.key)] = mean_std(vals)[0] if vals else None
                text = format_cell(vals, n)
                ref = PAPER_TABLE3.get(method, {}).get(round(c.value, 2)) if paper else None
                if ref is not None and kind in ("mll", "mcmi"):
                    text += f" ({ref[0 if kind == 'mll' else 1]:.2f})"
                row.append(text)
                results.setdefault(which, {}).setdefault(method, {}).setdefault(kind, {})[c.key] = vals
            body.append(row)
        if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
            gain = [method, "gain"]
            for c in cells:
                a, b = means.get(("mll", c.key)), means.get(("mcmi", c.key))
                gain.append("–" if a is None or b is None else f"{b - a:+.2f}")
            body.append(gain)
            body.append([method, "MCMI - MLL, paired"] + [
                signed_cell(paired_differences(rows, f"{which}_acc", cell=c.key, method=method)) for c in cells])
    return markdown_table(["method", "teacher"] + [c.label for c in cells], body)


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """``<out>/<name>/README.md``, ``results.json`` and ``few_shot.{png,pdf}`` (see the module
    notes); returns the README's path."""
    from mcmi.config import to_dict
    from mcmi.io import write_json, write_text

    out = Path(cfg.out) / cfg.name
    rows = student_rows(runs)
    cells = cfg.cells()
    paper = cfg.data.name == "cifar100" and (cfg.teacher, cfg.student) == ("resnet56", "resnet20")
    lines = shot_header(f"Few-shot KD: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", cfg, command, runs,
                        outcomes)
    lines += [_setting(cfg, paper), ""]
    results: dict[str, Any] = {}
    for which in ("best", "last"):
        lines += [f"## Student top-1, {which} epoch", "", _table(cfg, rows, cells, which, paper, results), ""]
    figures = plot_cell_curves(cfg, rows, [("best_acc", {"method": m}, f"{m.upper()}, best epoch") for m in cfg.methods],
                               "α: % of the training set the student sees",
                               f"Few-shot KD: {cfg.teacher} -> {cfg.student}, {cfg.data.name}", out / "few_shot",
                               x=lambda c: 100 * c.value)
    if figures:
        lines += ["![student top-1 vs the fraction of training data](few_shot.png)", ""]
    section, teachers = teacher_section(cfg, runs)
    lines += section
    write_json(out / "results.json", {"experiment": "few-shot KD (paper Sec. 6.3, Tables 3 and 12)", "command": command,
                                      "config": to_dict(cfg), "teachers": teachers, "students": rows,
                                      "cells": results})
    return write_text(out / "README.md", "\n".join(lines))


__all__ = ["write_report"]
