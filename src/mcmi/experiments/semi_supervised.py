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
import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcmi.experiments.shots import ShotGridConfig
from mcmi.experiments.table1 import PairSpec, PlannedRun, RunOutcome, Table1Config
from mcmi.experiments.train import DataSpec

log = logging.getLogger(__name__)


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

    def cell_grid(self, fraction: float) -> Table1Config:
        return self.table1(student_baseline=self.student_baseline,
                           out=str(Path(self.out) / self.name / self.cell_key(fraction)))

    def labeled_data(self, fraction: float) -> DataSpec:
        return dataclasses.replace(self.data, train_fraction=float(fraction), fraction_mode=self.labeled_mode,
                                   epoch_length=self.labeled_epoch_length)


def expand_cell(cfg: SemiSupervisedConfig, fraction: float) -> list[PlannedRun]:
    """The cell's Table 1 runs, teachers and baseline on the labeled images only."""
    from mcmi.experiments.table1 import expand_grid

    labeled = cfg.labeled_data(fraction)
    runs = []
    for run in expand_grid(cfg.cell_grid(fraction)):
        if run.stage in ("teacher", "mcmi", "baseline"):
            run = dataclasses.replace(run, config=dataclasses.replace(run.config, data=labeled))
        runs.append(dataclasses.replace(run, labels={**run.labels, "cell": (cfg.cell_key(fraction),)}))
    return runs


def plan(cfg: SemiSupervisedConfig, only: Mapping[str, set[str]] | None = None):
    """Per cell (``only["cell"]`` picks cells; other keys as Table 1's ``--only``): fraction, grid, runs."""
    from mcmi.experiments.table1 import select_runs

    only = dict(only or {})
    cells = only.pop("cell", None)
    keys = {cfg.cell_key(a) for a in cfg.labeled_fractions}
    if cells and cells - keys:
        raise ValueError(f"--only cell={sorted(cells - keys)[0]}: no such cell; cells: {', '.join(sorted(keys))}")
    return [(a, cfg.cell_grid(a), select_runs(expand_cell(cfg, a), only))
            for a in sorted(cfg.labeled_fractions) if not cells or cfg.cell_key(a) in cells]


def run_semi_supervised(cfg: SemiSupervisedConfig, only: str | Sequence[str] | None = None, command: str = "",
                        report_only: bool = False, workers: int | None = None,
                        cohort: bool = False):
    """Train every cell (finished runs skipped), then write the report. Returns (runs, outcomes, path)."""
    from mcmi.experiments.shots import parse_only
    from mcmi.experiments.table1 import train_runs

    runs: list[PlannedRun] = []
    outcomes: list[RunOutcome] = []
    for fraction, grid, selected in plan(cfg, parse_only(only)):
        runs += selected
        if not report_only:
            log.info("semi-supervised: %g labeled (%d runs)", fraction, len(selected))
            outcomes += train_runs(grid, selected, workers, cohort=cohort)
    return runs, outcomes, write_report(cfg, command, outcomes)


def write_report(cfg: SemiSupervisedConfig, command: str = "", outcomes: Sequence[RunOutcome] = ()) -> Path:
    """``out/<name>/README.md``, ``results.json`` and ``accuracy_vs_labeled.{png,pdf}`` (as Fig. 9)."""
    from mcmi.config import to_dict
    from mcmi.data import load_dataset
    from mcmi.experiments.shots import format_cell, paired_differences, teacher_views_line
    from mcmi.io import write_json, write_text
    from mcmi.reports.table1 import collect_results, git_commit
    from mcmi.reports.tables import fmt_mean_std, markdown_table

    out = Path(cfg.out) / cfg.name
    pair = PairSpec(cfg.teacher, cfg.student).name
    fractions = sorted(cfg.labeled_fractions)
    try:
        n_train = len(load_dataset(cfg.data.name, "train", root=cfg.data.root))
        if cfg.data.train_subset:
            n_train = min(n_train, cfg.data.train_subset)
    except Exception:  # noqa: BLE001 -- the report does without the counts
        n_train = None
    res = {cfg.cell_key(a): collect_results(cfg.cell_grid(a), expand_cell(cfg, a)) for a in fractions}
    n = len(cfg.seeds)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    status = {k: sum(r["status"][k] for r in res.values()) for k in ("done", "partial", "todo")}
    label = lambda a: f"{100 * a:g}%" + (f" ({round(a * n_train)})" if n_train else "")  # noqa: E731
    lines = [f"# Semi-supervised distillation (paper A.9, Fig. 9): {cfg.teacher} -> {cfg.student} on {cfg.data.name}",
             "", "Command:", "", f"    {command or '(library call: mcmi.experiments.semi_supervised.run_semi_supervised)'}",
             "", f"Commit: `{git_commit() or 'unknown'}`  ",
             f"Written: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}", "",
             f"Runs: {sum(status.values())} ({', '.join(f'{v} {k}' for k, v in status.items())})"
             + (f"; this invocation: {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}" if counts else "") + ".",
             "", f"Teachers (and the student alone) see only the labeled images ({cfg.labeled_mode}; epochs "
             f"{'of the full set’s length' if cfg.labeled_epoch_length == 'full' else 'one pass over them'}); "
             f"students distil on all {n_train or ''} training images from the teacher's outputs, no labels: "
             + ", ".join(f"{m} {cfg.method_args.get(m, {})}" for m in cfg.methods)
             + ". Cells: student test top-1 (%), mean ± sample std over seeds (n when fewer have finished); MCMI "
             "cells add the gain of the means.", ""]
    for which in ("best", "last"):
        header = ["student of"] + [label(a) for a in fractions]
        body = [["labeled images alone"] + [format_cell(_vals(res[cfg.cell_key(a)]["baseline_runs"], which), n)
                                            for a in fractions]]
        for method in cfg.methods:
            for kind in cfg.teacher_kinds:
                row = [f"{method.upper()}, {kind.upper()} teacher"]
                for a in fractions:
                    r = res[cfg.cell_key(a)]
                    text = format_cell(_vals([s for s in r["students"] if s["method"] == method and s["kind"] == kind],
                                             which), n)
                    gain = r["cells"].get(pair, {}).get(method, {}).get(f"gain_{which}")
                    if kind == "mcmi" and gain is not None:
                        text += f" ({gain:+.2f})"
                    row.append(text)
                body.append(row)
            if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
                body.append([f"{method.upper()}, MCMI - MLL paired by seed"] + [
                    fmt_mean_std(d, signed=True) if (d := paired_differences(res[cfg.cell_key(a)]["students"],
                                                                            f"{which}_acc", method=method)) else "–"
                    for a in fractions])
        lines += [f"## Student top-1, {which} epoch", "", markdown_table(header, body), ""]
    f = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    rows = [[label(a), k.upper(), f"{f(t['best_acc'])} / {f(t['last_acc'])}", f(t["train_ll"], 3), f(t["train_cmi"], 4)]
            for a in fractions for k, t in res[cfg.cell_key(a)]["teachers"].get(cfg.teacher, {}).items()]
    lines += [f"## Teachers ({cfg.teacher}, trained on the labeled images)", "",
              markdown_table(["labeled", "teacher", "test top-1 best / last (%)", "train LL", "train CMI"], rows), "",
              "LL and CMI: over all training images, the images the students distil on; the teacher saw the "
              "labels of the labeled part only. " + teacher_views_line(
                  t for a in fractions for t in res[cfg.cell_key(a)]["teachers"].get(cfg.teacher, {}).values()), ""]
    fig = _figure(cfg, res, fractions, n_train, out / "accuracy_vs_labeled")
    if fig:
        lines += ["## Figure", "", f"![student top-1 against labeled images]({fig.name})", ""]
    write_json(out / "results.json", {"experiment": "semi-supervised distillation (paper A.9, Fig. 9)", "command": command,
                                      "config": to_dict(cfg), "cells": res})
    return write_text(out / "README.md", "\n".join(lines))


def _vals(rows: Sequence[Mapping[str, Any]], which: str) -> list[float]:
    return [r[f"{which}_acc"] for r in sorted(rows, key=lambda r: r["seed"]) if r.get(f"{which}_acc") is not None]


def _figure(cfg: SemiSupervisedConfig, res, fractions, n_train, stem: Path) -> Path | None:
    """Student top-1 (best epoch; mean ± std over seeds) against the number of labeled images."""
    import numpy as np

    from mcmi.reports.plots import plt, save_figure
    from mcmi.reports.tables import mean_std

    x = np.array([a * n_train if n_train else 100 * a for a in fractions])
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    drawn = False
    series = [("student alone (labeled images)", lambda r: r["baseline_runs"], "k:")]
    series += [(f"{m.upper()} from {k.upper()} teacher", lambda r, m=m, k=k: [s for s in r["students"]
               if s["method"] == m and s["kind"] == k], "o-" if k == "mcmi" else "s--")
               for m in cfg.methods for k in cfg.teacher_kinds]
    for name, pick, style in series:
        stats = [mean_std(_vals(pick(res[cfg.cell_key(a)]), "best")) for a in fractions]
        means, stds = np.array([s[0] for s in stats]), np.array([s[1] for s in stats])
        if np.all(np.isnan(means)):
            continue
        ax.errorbar(x, means, yerr=np.nan_to_num(stds), fmt=style, capsize=3, label=name)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.minorticks_off()  # the log axis' own labels (6x10^2, ...) would overprint the ticks at the fractions
    ax.set_xticks(x, [f"{v:.0f}" for v in x])
    ax.set_xlabel("labeled training images" if n_train else "labeled fraction (%)")
    ax.set_ylabel("student test top-1 (%)")
    ax.set_title(f"Semi-supervised KD: {cfg.teacher} -> {cfg.student}, {cfg.data.name}")
    ax.legend(fontsize=8)
    return save_figure(fig, stem)[0]


def main(argv: list[str] | None = None) -> int:
    from mcmi.experiments.shots import grid_main, parse_only

    return grid_main(argv, prog="mcmi semi-supervised", config_cls=SemiSupervisedConfig,
                     default_config="semi_supervised_cifar10", only_example="cell=labeled0.01,kind=mcmi,seed=0",
                     run=run_semi_supervised, description=__doc__.split("\n\n")[0],
                     plan=lambda cfg, only: [dataclasses.replace(r, key=f"{cfg.cell_key(a)}/{r.key}")
                                             for a, _, runs in plan(cfg, parse_only(only)) for r in runs])


__all__ = ["SemiSupervisedConfig", "expand_cell", "plan", "run_semi_supervised", "write_report"]
