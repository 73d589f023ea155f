"""Few-shot KD (paper Sec. 6.3: Table 3, Table 12).

The teacher (MLL, and its MCMI fine-tune) sees the whole training set; each student distils from a
fraction alpha of it (``data.train_fraction``), the same images for every teacher kind and seed.
Defaults follow the paper's code: the first alpha * N images in file order (``fraction_mode:
first``; the paper's text says alpha of the samples of each class, which is ``stratified``) and
epochs that keep the full data set's length (``epoch_length: full``: the code reads image
``i mod alpha*N`` for i over all N). The report gives the students' test top-1 (best epoch and
last epoch, mean ± std over seeds) per method, teacher kind and alpha, with the MCMI - MLL gain
(of the means, and paired by seed), and draws top-1 against alpha.

One difference from the paper's code: its CRD memory bank keeps all N entries (indices modulo
alpha*N never reach most of them); here CRD's bank holds the alpha*N images the student sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mcmi.experiments.shots import Cell, ShotGridConfig
from mcmi.experiments.table1 import PlannedRun

#: Paper Tables 3 and 12 (CIFAR-100, ResNet-56 -> ResNet-20): method -> alpha -> (MLL, MCMI) top-1 %.
PAPER_TABLE3: dict[str, dict[float, tuple[float, float]]] = {
    "kd": {0.05: (52.30, 58.02), 0.10: (60.13, 63.75), 0.15: (63.52, 66.20), 0.25: (66.78, 68.10),
           0.35: (68.28, 69.34), 0.50: (69.52, 70.28), 0.75: (70.44, 70.59)},
    "crd": {0.05: (47.60, 51.40), 0.10: (54.60, 56.80), 0.15: (58.90, 60.02), 0.25: (63.82, 64.70),
            0.35: (66.70, 67.22), 0.50: (68.84, 69.15), 0.75: (70.35, 70.40)},
}


@dataclass
class FewShotConfig(ShotGridConfig):
    """The few-shot grid: ``fractions`` x methods x teacher kinds x seeds (see the module notes)."""

    fractions: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.25, 0.35, 0.50, 0.75])
    fraction_mode: str = "first"  # "first" (the paper's code) | "stratified" (its text)
    epoch_length: str = "full"

    def __post_init__(self) -> None:
        self.name = self.name or "few_shot"
        super().__post_init__()
        if not self.fractions or any(not 0 < a <= 1 for a in self.fractions) or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions must list distinct values in (0, 1], got {self.fractions}")
        if self.fraction_mode not in ("first", "stratified"):
            raise ValueError(f"fraction_mode must be 'first' or 'stratified', got {self.fraction_mode!r}")
        if self.epoch_length not in ("subset", "full"):
            raise ValueError(f"epoch_length must be 'subset' or 'full', got {self.epoch_length!r}")

    def cells(self) -> list[Cell]:
        def data_for(a: float):
            return lambda seed: {"train_fraction": float(a), "fraction_mode": self.fraction_mode,
                                 "epoch_length": self.epoch_length}

        return [Cell(f"frac{a:g}", f"α = {100 * a:g}%", data_for(a), float(a)) for a in sorted(self.fractions)]


def write_report(cfg: FewShotConfig, runs: Sequence[PlannedRun], command: str = "", outcomes=None) -> Path:
    """``out/<name>/README.md``, ``results.json`` and ``few_shot.png/pdf`` in Table 3's layout: rows
    method x teacher kind (+ the MCMI - MLL gain of the means and paired by seed), columns alpha,
    cells mean ± std over seeds; best and last epoch."""
    from mcmi.config import to_dict
    from mcmi.experiments.shots import (
        cell_stats,
        format_cell,
        paired_differences,
        plot_cell_curves,
        report_header,
        student_rows,
        teacher_section,
    )
    from mcmi.io import write_json, write_text
    from mcmi.reports.tables import fmt_mean_std, markdown_table, mean_std

    out = Path(cfg.out) / cfg.name
    rows = student_rows(runs)
    cells = cfg.cells()
    n = len(cfg.seeds)
    paper = cfg.data.name == "cifar100" and (cfg.teacher, cfg.student) == ("resnet56", "resnet20")
    lines = report_header(f"Few-shot KD: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", cfg, command, runs, outcomes)
    lines += [f"The student sees a fraction α of the training set: {'the first α·N images in file order' if cfg.fraction_mode == 'first' else 'α of every class (stratified)'} "
              f"(`fraction_mode: {cfg.fraction_mode}`), the same images for every teacher and seed; "
              f"epochs {'keep the full set’s length (the subset is cycled)' if cfg.epoch_length == 'full' else 'are one pass over the subset'} "
              f"(`epoch_length: {cfg.epoch_length}`). Test top-1 (%), mean ± std over seeds"
              + (" (paper Table 3 values in parentheses)." if paper else "."), ""]
    header = ["method", "teacher"] + [c.label for c in cells]
    results = {}
    for which in ("best", "last"):
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
                paired = [method, "MCMI - MLL, paired"]
                for c in cells:
                    d = paired_differences(rows, f"{which}_acc", cell=c.key, method=method)
                    paired.append(fmt_mean_std(d, signed=True) if d else "–")
                body.append(paired)
        lines += [f"## Student top-1, {which} epoch", "", markdown_table(header, body), ""]
    figures = plot_cell_curves(cfg, rows, [("best_acc", {"method": m}, f"{m.upper()}, best epoch") for m in cfg.methods],
                               "α: % of the training set the student sees",
                               f"Few-shot KD: {cfg.teacher} -> {cfg.student}, {cfg.data.name}", out / "few_shot",
                               x=lambda c: 100 * c.value)
    if figures:
        lines += ["![student top-1 vs the fraction of training data](few_shot.png)", ""]
    section, teachers = teacher_section(cfg)
    lines += section
    write_json(out / "results.json", {"experiment": "few-shot KD (paper Sec. 6.3, Tables 3 and 12)", "command": command,
                                      "config": to_dict(cfg), "teachers": teachers, "students": rows,
                                      "cells": results})
    return write_text(out / "README.md", "\n".join(lines))


def run_few_shot(cfg: FewShotConfig, only: str | Sequence[str] | None = None, command: str = "",
                 report_only: bool = False, workers: int | None = None,
                 cohort: bool = False):
    """Train the grid (finished runs skipped) and write the report. Returns (runs, outcomes, path)."""
    from mcmi.experiments.shots import expand, run_shot_grid

    if report_only:
        runs, outcomes = expand(cfg, cfg.cells()), []
    else:
        runs, outcomes = run_shot_grid(cfg, cfg.cells(), only, workers=workers, cohort=cohort)
    return runs, outcomes, write_report(cfg, runs, command, outcomes)


def main(argv: list[str] | None = None) -> int:
    from mcmi.experiments.shots import grid_main

    return grid_main(argv, prog="mcmi few-shot", config_cls=FewShotConfig, default_config="few_shot_cifar100",
                     only_example="cell=frac0.05,method=kd,seed=0", run=run_few_shot, description=__doc__.split("\n\n")[0])
