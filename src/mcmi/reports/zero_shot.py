"""Report of the zero-shot grid (paper Sec. 6.2, A.11.4: Table 9, Figs. 4 and 14-19).

Reads each finished student's ``summary.json`` and ``class_eval.json`` (test accuracy on all, the
dropped and the kept classes, confusion matrix; written beside the run by the experiment, never
computed here: a student without one is left out) and the teachers' folders. Writes
``<out>/<name>/README.md`` in Table 9's layout (rows: method x teacher kind, and MCMI - MLL paired
by seed; columns: number of dropped classes; cells: accuracy on dropped / kept classes, mean ± std
over seeds), ``results.json``, the accuracy-vs-dropped figure and, with at most 20 classes, the
confusion matrices of Fig. 4 / Figs. 14-19.

Config fields read: ``teacher``, ``student``, ``methods``, ``teacher_kinds``, ``seeds``, ``data``,
``drop_order``, ``vary_classes_with_seed``, ``drop_seed``, ``out``, ``name`` and ``cells()``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import read_json
from mcmi.reports.numbers import cell_stats, format_cell, paired_differences, signed_cell
from mcmi.reports.paper import PAPER_TABLE9
from mcmi.reports.shots import plot_cell_curves, shot_header, student_rows, teacher_section
from mcmi.reports.tables import fmt_mean_std, markdown_table


def class_eval_row(run: Any) -> dict[str, Any] | None:
    """A student's ``class_eval.json`` as report fields (accuracies in %, NaN as None); None when
    the file is missing or unreadable."""
    ev = read_json(run.out_dir / "class_eval.json")
    if not isinstance(ev, Mapping):
        return None
    pct = lambda x: None if x is None or x != x else 100 * x  # noqa: E731 (NaN -> None)
    return {"acc": pct(ev.get("accuracy")), "acc_dropped": pct(ev.get("accuracy_dropped")),
            "acc_kept": pct(ev.get("accuracy_kept")), "dropped": ev.get("dropped"), "confusion": ev.get("confusion"),
            "classes": ev.get("classes")}


def plot_confusions(matrices: dict[str, Any], classes: Sequence[str], dropped: Sequence[int], out_stem: Path,
                    title: str) -> list[Path]:
    """Fig. 4 layout: one row-normalized confusion matrix per teacher kind, dropped classes'
    tick labels in red."""
    import numpy as np

    from mcmi.reports.plots import plt, save_figure

    n = len(classes)
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.6 * len(matrices) + 0.8, 4.4), squeeze=False)
    im = None
    for ax, (name, m) in zip(axes[0], matrices.items()):
        m = np.asarray(m, dtype=float)
        rows = m.sum(1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        im = ax.imshow(norm, cmap="YlGnBu", vmin=0, vmax=1)
        if n <= 12:
            for i in range(n):
                for j in range(n):
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


def _tables(cfg: Any, rows: Sequence[Mapping[str, Any]], cells: Sequence[Any]) -> list[str]:
    """Accuracy on dropped / kept classes and on all classes: rows method x teacher kind and the
    paired MCMI - MLL row, columns the cells."""
    n = len(cfg.seeds)
    header = ["method", "teacher"] + [c.label for c in cells]
    paper = (cfg.data.name == "cifar100" and (cfg.teacher, cfg.student) == ("wrn_40_2", "wrn_16_2")
             and list(cfg.methods) == ["kd"])
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
                g1.append(f"{fmt_mean_std(d, signed=True)} / {fmt_mean_std(k, signed=True)}" if d else "–")
                g2.append(signed_cell(paired_differences(rows, "acc", cell=c.key, method=method)))
            body.append(g1)
            overall.append(g2)
    return ["## Accuracy on dropped / kept classes", "", markdown_table(header, body), "",
            "## Accuracy on all classes", "", markdown_table(header, overall), ""]


def _confusion_figures(cfg: Any, rows: Sequence[Mapping[str, Any]], cells: Sequence[Any], out: Path,
                       figures: list[Path]) -> list[str]:
    """Fig. 4 per cell (first method, lowest seed with a matrix), for up to 20 classes."""
    lines = []
    for c in cells:
        seed_rows = [r for r in rows if r["cell"] == c.key and r["method"] == cfg.methods[0] and r.get("confusion")]
        if not seed_rows or len(seed_rows[0]["classes"]) > 20:
            continue
        seed = min(r["seed"] for r in seed_rows)
        mats = {r["kind"]: r["confusion"] for r in seed_rows if r["seed"] == seed}
        first = next(r for r in seed_rows if r["seed"] == seed)
        stem = out / f"confusion_{c.key}"
        figures += plot_confusions({k: mats[k] for k in cfg.teacher_kinds if k in mats}, first["classes"],
                                   first["dropped"], stem, f"{cfg.methods[0]} students, {c.label} (red), seed {seed}")
        lines += [f"![confusion matrices, {c.label}]({stem.name}.png)", ""]
    return lines


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """``<out>/<name>/README.md``, ``results.json`` and the figures (see the module notes);
    returns the README's path."""
    from mcmi.config import to_dict
    from mcmi.io import write_json, write_text

    out = Path(cfg.out) / cfg.name
    rows = student_rows(runs, class_eval_row)
    cells = cfg.cells()
    lines = shot_header(f"Zero-shot KD: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", cfg, command, runs,
                        outcomes)
    how = (f"the first k of {cfg.drop_order}" if cfg.drop_order is not None else
           "k classes drawn from the run's seed (nested in k)" if cfg.vary_classes_with_seed else
           f"k classes drawn from seed {cfg.drop_seed} (nested in k)")
    lines += [f"Dropped classes: {how}. The student's training set loses every sample of those classes; "
              "its head keeps all classes; accuracies are on the test set, last epoch, in %. "
              "Cells: accuracy on the dropped classes / on the kept classes, mean ± std over seeds "
              "(paper Table 9's layout).", ""]
    lines += _tables(cfg, rows, cells)
    dropped_sets = sorted({(r["cell"], r["seed"], tuple(r["dropped"] or ())) for r in rows})
    if dropped_sets:
        lines += ["## Dropped classes per run", ""]
        lines += [f"- {cell}, seed {seed}: {list(d)}" for cell, seed, d in dropped_sets] + [""]
    section, teachers = teacher_section(cfg, runs)
    lines += section
    method = cfg.methods[0]
    figures = plot_cell_curves(cfg, rows, [("acc_dropped", {"method": method}, "accuracy on the dropped classes"),
                                           ("acc", {"method": method}, "accuracy on all classes")],
                               "classes dropped from the student's training set",
                               f"Zero-shot {method.upper()}: {cfg.teacher} -> {cfg.student}, {cfg.data.name}",
                               out / "zero_shot", x=lambda c: int(c.value))
    if figures:
        lines += ["![accuracy vs number of dropped classes](zero_shot.png)", ""]
    lines += _confusion_figures(cfg, rows, cells, out, figures)
    write_json(out / "results.json", {
        "experiment": "zero-shot KD (paper Sec. 6.2, A.11.4)", "command": command,
        "config": to_dict(cfg), "teachers": teachers,
        "students": [{k: v for k, v in r.items() if k != "confusion"} for r in rows],
        "figures": [str(p) for p in figures]})
    return write_text(out / "README.md", "\n".join(lines))


__all__ = ["class_eval_row", "plot_confusions", "write_report"]
