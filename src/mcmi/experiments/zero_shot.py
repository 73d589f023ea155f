"""Zero-shot KD (paper Sec. 6.2, A.11.4: Table 9, Figs. 4 and 14-19).

The teacher (MLL, and its MCMI fine-tune) sees the whole training set; each student distils with
every sample of ``k`` classes removed from its training set (``data.drop_classes``), keeps the
full classifier head, and is tested on all classes. The report gives, per number of dropped
classes, the student's accuracy on the dropped classes and on the kept ones (Table 9's
"dropped / kept"), and with at most 20 classes the confusion matrices of Fig. 4 / Figs. 14-19.

Which classes are dropped: with ``drop_order`` (the paper's CIFAR-10 scripts drop 9, 7, 5, 3, 1, 0
in that order), dropping ``k`` drops its first ``k``; otherwise ``k`` classes are drawn from a seed
(:func:`~mcmi.experiments.train.pick_classes`): the run's seed when ``vary_classes_with_seed``
(Table 9 averages over 5 seeds), else ``drop_seed`` for every run. Draws for the same seed are
nested (the 10 classes dropped include the 5). Accuracies are those of the last epoch's
checkpoint on the test set, from ``class_eval.json`` written beside each student run.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcmi.experiments.shots import Cell, ShotGridConfig
from mcmi.experiments.table1 import PlannedRun

log = logging.getLogger(__name__)

#: The paper's CIFAR-10 scripts (ZeroShot/scripts): classes dropped in this order.
PAPER_CIFAR10_DROP_ORDER = [9, 7, 5, 3, 1, 0]
#: Table 9 (CIFAR-100, WRN-40-2 -> WRN-16-2, KD, 5 seeds): dropped classes -> (dropped %, kept %).
PAPER_TABLE9: dict[str, dict[int, tuple[float, float]]] = {
    "mll": {5: (0.16, 75.02), 10: (2.70, 75.82), 20: (1.63, 76.28), 30: (1.11, 80.15), 40: (1.74, 80.42),
            50: (0.87, 82.38)},
    "mcmi": {5: (25.64, 75.08), 10: (32.78, 75.78), 20: (30.61, 76.22), 30: (21.72, 80.27), 40: (23.74, 80.79),
             50: (22.26, 82.46)},
}


@dataclass
class ZeroShotConfig(ShotGridConfig):
    """The zero-shot grid: ``drop_counts`` x methods x teacher kinds x seeds (see the module notes)."""

    drop_counts: list[int] = field(default_factory=lambda: [5])
    drop_order: list[int] | None = None
    vary_classes_with_seed: bool = True
    drop_seed: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or "zero_shot"
        super().__post_init__()
        if not self.drop_counts or any(k < 1 for k in self.drop_counts) or len(set(self.drop_counts)) != len(self.drop_counts):
            raise ValueError(f"drop_counts must list distinct numbers >= 1, got {self.drop_counts}")
        if self.drop_order is not None:
            if len(set(self.drop_order)) != len(self.drop_order):
                raise ValueError(f"drop_order lists a class twice: {self.drop_order}")
            if max(self.drop_counts) > len(self.drop_order):
                raise ValueError(f"drop_counts go up to {max(self.drop_counts)} but drop_order has "
                                 f"{len(self.drop_order)} classes")

    def cells(self) -> list[Cell]:
        def data_for(k: int):
            if self.drop_order is not None:
                return lambda seed: {"drop_classes": sorted(self.drop_order[:k])}
            return lambda seed: {"drop_num_classes": k,
                                 "drop_seed": seed if self.vary_classes_with_seed else self.drop_seed}

        return [Cell(f"drop{k}", f"{k} dropped", data_for(k), float(k)) for k in sorted(self.drop_counts)]


# ------------------------------------------------------------------------------ evaluation
def evaluate_student(run: PlannedRun, checkpoint: str = "last") -> dict[str, Any]:
    """Test accuracy of a student checkpoint on all classes, on its dropped classes and on the
    kept ones, per-class accuracy and the confusion matrix."""
    import torch

    from mcmi.data import TensorLoader, dataset_stats
    from mcmi.experiments.train import load_datasets, resolve_device
    from mcmi.metrics import evaluate
    from mcmi.models.io import load_model

    spec = run.config.data
    dev = resolve_device(run.config.device)
    train, test = load_datasets(spec)
    dropped = spec.dropped_classes(train.num_classes)
    kept = [c for c in range(train.num_classes) if c not in set(dropped)]
    stats = dataset_stats(train, root=spec.root)
    model = load_model(run.out_dir / f"{checkpoint}.pt", num_classes=train.num_classes,
                       normalization=(stats.mean, stats.std)).to(dev)
    loader = TensorLoader(test, spec.eval_batch_size, augment=False, device=dev, stats=(stats.mean, stats.std))
    with torch.no_grad():
        res = evaluate(model, loader, train.num_classes, dev)
    return {"checkpoint": checkpoint, "dropped": dropped, "accuracy": res.accuracy,
            "accuracy_dropped": res.accuracy_on(dropped), "accuracy_kept": res.accuracy_on(kept),
            "per_class_accuracy": res.per_class_accuracy, "confusion": res.confusion.tolist(),
            "log_likelihood": res.log_likelihood, "cmi": res.cmi, "classes": list(train.classes)}


def ensure_class_eval(run: PlannedRun) -> dict[str, Any]:
    """``class_eval.json`` of a finished student, computed once (a rerun of the run removes it)."""
    from mcmi.io import write_json

    path = run.out_dir / "class_eval.json"
    summary = run.out_dir / "summary.json"
    if path.is_file() and path.stat().st_mtime_ns >= summary.stat().st_mtime_ns:
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    res = evaluate_student(run)
    write_json(path, res)
    return res


def _class_eval(run: PlannedRun) -> dict[str, Any] | None:
    path = run.out_dir / "class_eval.json"
    if not path.is_file():
        return None
    try:
        ev = json.loads(path.read_text())
    except ValueError:
        return None
    pct = lambda x: None if x is None or x != x else 100 * x  # noqa: E731 (NaN -> None)
    return {"acc": pct(ev["accuracy"]), "acc_dropped": pct(ev["accuracy_dropped"]),
            "acc_kept": pct(ev["accuracy_kept"]), "dropped": ev["dropped"], "confusion": ev.get("confusion"),
            "classes": ev.get("classes")}


# ------------------------------------------------------------------------------ report
def plot_confusions(matrices: dict[str, Any], classes: Sequence[str], dropped: Sequence[int], out_stem: Path,
                    title: str) -> list[Path]:
    """Fig. 4 layout: one row-normalized confusion matrix per teacher kind, dropped classes'
    tick labels in red."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mcmi.reports.plots import save_figure

    n = len(classes)
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices) + 0.8, 4.4), squeeze=False)
    im = None
    for ax, (name, m) in zip(axes[0], matrices.items()):
        m = np.asarray(m, dtype=float)
        rows = m.sum(1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        im = ax.imshow(norm, cmap="YlGnBu", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                if n <= 12:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=5.5,
                            color="white" if norm[i, j] > 0.6 else "black")
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            for c, lab in enumerate(labels):
                if c in set(dropped):
                    lab.set_color("red")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"student of the {name.upper()} teacher", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="fraction of the true class")
    fig.suptitle(title, fontsize=10)
    fig.set_layout_engine("constrained")
    return save_figure(fig, out_stem)


def plot_accuracy_vs_dropped(cfg: ZeroShotConfig, rows: Sequence[Mapping[str, Any]], out_stem: Path) -> list[Path]:
    """Fig. 4's comparison as curves: the students' accuracy on the dropped classes and on all
    classes vs the number of dropped classes, one line per teacher kind (first method)."""
    from mcmi.experiments.shots import plot_cell_curves

    method = cfg.methods[0]
    return plot_cell_curves(cfg, rows, [("acc_dropped", {"method": method}, "accuracy on the dropped classes"),
                                        ("acc", {"method": method}, "accuracy on all classes")],
                            "classes dropped from the student's training set",
                            f"Zero-shot {method.upper()}: {cfg.teacher} -> {cfg.student}, {cfg.data.name}", out_stem,
                            x=lambda c: int(c.value))


def write_report(cfg: ZeroShotConfig, runs: Sequence[PlannedRun], command: str = "", outcomes=None) -> Path:
    """``out/<name>/README.md`` and ``results.json``: Table 9's layout (rows: method x teacher kind;
    columns: number of dropped classes; cells: accuracy on dropped / kept classes, mean ± std over
    seeds, and MCMI - MLL paired by seed), overall accuracy, the teachers, the accuracy-vs-dropped
    figure, and confusion matrices when there are <= 20 classes."""
    from mcmi.config import to_dict
    from mcmi.experiments.shots import (
        cell_stats,
        format_cell,
        paired_differences,
        report_header,
        student_rows,
        teacher_section,
    )
    from mcmi.io import write_json, write_text
    from mcmi.reports.tables import fmt_mean_std, markdown_table

    out = Path(cfg.out) / cfg.name
    rows = student_rows(runs, _class_eval)
    cells = cfg.cells()
    n = len(cfg.seeds)
    lines = report_header(f"Zero-shot KD: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", cfg, command, runs, outcomes)
    how = (f"the first k of {cfg.drop_order}" if cfg.drop_order is not None else
           "k classes drawn from the run's seed (nested in k)" if cfg.vary_classes_with_seed else
           f"k classes drawn from seed {cfg.drop_seed} (nested in k)")
    lines += [f"Dropped classes: {how}. The student's training set loses every sample of those classes; "
              "its head keeps all classes; accuracies are on the test set, last epoch, in %. "
              "Cells: accuracy on the dropped classes / on the kept classes, mean ± std over seeds "
              "(paper Table 9's layout).", ""]
    header = ["method", "teacher"] + [c.label for c in cells]
    paper = cfg.data.name == "cifar100" and (cfg.teacher, cfg.student) == ("wrn_40_2", "wrn_16_2") and cfg.methods == ["kd"]
    body, overall = [], []
    for method in cfg.methods:
        for kind in cfg.teacher_kinds:
            r1, r2 = [method, kind.upper()], [method, kind.upper()]
            for c in cells:
                d = cell_stats(rows, "acc_dropped", cell=c.key, method=method, kind=kind)
                k = cell_stats(rows, "acc_kept", cell=c.key, method=method, kind=kind)
                text = f"{format_cell(d, n)} / {format_cell(k, n)}"
                if paper and int(c.value) in PAPER_TABLE9.get(kind, {}):
                    text += " (paper {:.2f} / {:.2f})".format(*PAPER_TABLE9[kind][int(c.value)])
                r1.append(text)
                r2.append(format_cell(cell_stats(rows, "acc", cell=c.key, method=method, kind=kind), n))
            body.append(r1)
            overall.append(r2)
        if {"mll", "mcmi"} <= set(cfg.teacher_kinds):  # the paper's comparison, paired by seed
            g1, g2 = [method, "MCMI - MLL, paired"], [method, "MCMI - MLL, paired"]
            for c in cells:
                d = paired_differences(rows, "acc_dropped", cell=c.key, method=method)
                k = paired_differences(rows, "acc_kept", cell=c.key, method=method)
                a = paired_differences(rows, "acc", cell=c.key, method=method)
                g1.append(f"{fmt_mean_std(d, signed=True)} / {fmt_mean_std(k, signed=True)}" if d else "–")
                g2.append(fmt_mean_std(a, signed=True) if a else "–")
            body.append(g1)
            overall.append(g2)
    lines += ["## Accuracy on dropped / kept classes", "", markdown_table(header, body), "",
              "## Accuracy on all classes", "", markdown_table(header, overall), ""]
    dropped_sets = sorted({(r["cell"], r["seed"], tuple(r["dropped"])) for r in rows})
    if dropped_sets:
        lines += ["## Dropped classes per run", ""]
        lines += [f"- {cell}, seed {seed}: {list(d)}" for cell, seed, d in dropped_sets] + [""]
    section, teachers = teacher_section(cfg)
    lines += section
    figures = plot_accuracy_vs_dropped(cfg, rows, out / "zero_shot")
    if figures:
        lines += ["![accuracy vs number of dropped classes](zero_shot.png)", ""]
    for c in cells:
        seed_rows = [r for r in rows if r["cell"] == c.key and r["method"] == cfg.methods[0] and r.get("confusion")]
        if not seed_rows or len(seed_rows[0]["classes"]) > 20:
            continue
        seed = min(r["seed"] for r in seed_rows)
        mats = {r["kind"]: r["confusion"] for r in seed_rows if r["seed"] == seed}
        if len(mats) < 1:
            continue
        first = next(r for r in seed_rows if r["seed"] == seed)
        stem = out / f"confusion_{c.key}"
        figures += plot_confusions({k: mats[k] for k in cfg.teacher_kinds if k in mats}, first["classes"],
                                   first["dropped"], stem,
                                   f"{cfg.methods[0]} students, {c.label} (red), seed {seed}")
        lines += [f"![confusion matrices, {c.label}]({stem.name}.png)", ""]
    write_json(out / "results.json", {
        "experiment": "zero-shot KD (paper Sec. 6.2, A.11.4)", "command": command,
        "config": to_dict(cfg), "teachers": teachers,
        "students": [{k: v for k, v in r.items() if k != "confusion"} for r in rows],
        "figures": [str(p) for p in figures]})
    return write_text(out / "README.md", "\n".join(lines))


# ------------------------------------------------------------------------------ command
def run_zero_shot(cfg: ZeroShotConfig, only: str | Sequence[str] | None = None, command: str = "",
                  report_only: bool = False, workers: int | None = None,
                  cohort: bool = False):
    """Train the grid (finished runs skipped), evaluate each student per class, write the report.
    Returns (runs, outcomes, report path)."""
    from mcmi.experiments.shots import expand, run_shot_grid

    if report_only:
        runs, outcomes = expand(cfg, cfg.cells()), []
        for run in runs:
            if run.stage == "student" and (run.out_dir / "summary.json").is_file():
                ensure_class_eval(run)
    else:
        runs, outcomes = run_shot_grid(cfg, cfg.cells(), only, after=ensure_class_eval, workers=workers,
                                        cohort=cohort)
    return runs, outcomes, write_report(cfg, runs, command, outcomes)


def main(argv: list[str] | None = None) -> int:
    from mcmi.experiments.shots import grid_main

    return grid_main(argv, prog="mcmi zero-shot", config_cls=ZeroShotConfig, default_config="zero_shot_cifar100",
                     only_example="cell=drop5,kind=mcmi,seed=0", run=run_zero_shot, description=__doc__.split("\n\n")[0])
