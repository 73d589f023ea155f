"""What the zero-shot and few-shot reports share (paper Sec. 6.2-6.3): one teacher -> student pair,
students per *cell* (a reduction of the student's training set), the teachers on the whole set.

The config gives ``teacher``, ``student``, ``methods``, ``teacher_kinds``, ``seeds``, ``data`` and
``cells()`` (objects with ``key``, the runs' ``cell`` label, ``label`` for the report and ``value``);
the runs give the folders: students carry the labels ``cell``, ``method``, ``kind``, ``seed``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import read_summary
from mcmi.reports.common import header_list, teacher_dir, teacher_figures, teacher_views_line
from mcmi.reports.numbers import cell_stats, fmt_num
from mcmi.reports.tables import markdown_table, mean_std


def shot_header(title: str, cfg: Any, command: str, runs: Sequence[Any], outcomes: Any) -> list[str]:
    """The list header of a shot grid: commit, date, run status, failures, then the pair, methods,
    seeds and data set."""
    data = cfg.data
    return header_list(title, command, runs, outcomes, [
        f"teacher {cfg.teacher} -> student {cfg.student}; methods: {', '.join(cfg.methods)}; "
        f"seeds: {', '.join(map(str, cfg.seeds))}",
        f"data: `{data.name}`" + (f", train_subset {data.train_subset} ({data.subset_mode})" if data.train_subset
                                  else "")])


def student_rows(runs: Sequence[Any], extra: Callable[[Any], Mapping[str, Any] | None] | None = None
                 ) -> list[dict[str, Any]]:
    """One dict per finished student: run key, cell, method, kind, seed, best/last accuracy (%),
    best epoch, epochs, and whatever ``extra(run)`` adds (None: the run is left out)."""
    rows = []
    for run in runs:
        if run.stage != "student":
            continue
        s = read_summary(run.out_dir)
        if s is None:
            continue
        row = {"run": run.key, "cell": run.label("cell"), "method": run.label("method"), "kind": run.label("kind"),
               "seed": int(run.label("seed")),
               "best_acc": None if s.get("best_acc") is None else 100 * float(s["best_acc"]),
               "last_acc": None if s.get("last_acc") is None else 100 * float(s["last_acc"]),
               "best_epoch": s.get("best_epoch"), "epochs": s.get("epochs")}
        if extra is not None:
            more = extra(run)
            if more is None:
                continue
            row.update(more)
        rows.append(row)
    return rows


def teacher_rows(cfg: Any, runs: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per teacher kind: test top-1 (best, last; %) and, once evaluated, train-set LL and CMI with
    the view they were measured in."""
    keys = ("best_acc", "last_acc", "train_ll", "train_cmi", "train_view", "train_view_seed")
    out = {}
    for kind in cfg.teacher_kinds:
        t = teacher_figures(teacher_dir(runs, cfg.teacher, kind))
        out[kind] = {k: t[k] for k in keys}
    return out


def teacher_section(cfg: Any, runs: Sequence[Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The report's teacher table (Markdown lines) and its numbers."""
    teachers = teacher_rows(cfg, runs)
    table = markdown_table(["teacher", "test top-1 best / last (%)", "train LL", "train CMI"],
                           [[k.upper(), f"{fmt_num(t['best_acc'])} / {fmt_num(t['last_acc'])}",
                             fmt_num(t["train_ll"], 4), fmt_num(t["train_cmi"], 4)] for k, t in teachers.items()])
    return [f"## Teachers ({cfg.teacher}, whole training set)", "", table, "", teacher_views_line(teachers.values()),
            ""], teachers


def plot_cell_curves(cfg: Any, rows: Sequence[Mapping[str, Any]],
                     panels: Sequence[tuple[str, Mapping[str, Any], str]], xlabel: str, title: str, out_stem: Path,
                     x: Callable[[Any], float] = lambda c: c.value) -> list[Path]:
    """Students' accuracy against the cells' value: one panel per ``(row value, match, panel
    title)``, one line per teacher kind, mean ± std over the seeds that have it (Fig. 4's view of
    the zero-shot grid, Table 3's of the few-shot one). Writes PNG and PDF; ``[]`` when no row
    has a value to draw."""
    from mcmi.reports.plots import plt, save_figure

    cells = cfg.cells()
    if not any(cell_stats(rows, value, **match) for value, match, _ in panels):
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (value, match, panel_title) in zip(axes[0], panels):
        drawn = False
        for kind, style in zip(cfg.teacher_kinds, ("o--", "s-", "^:", "d-.")):
            xs, ms, ss = [], [], []
            for c in cells:
                vals = cell_stats(rows, value, cell=c.key, kind=kind, **match)
                if vals:
                    m, sd = mean_std(vals)
                    xs.append(x(c))
                    ms.append(m)
                    ss.append(0.0 if sd != sd else sd)  # one seed: no error bar
            if xs:
                ax.errorbar(xs, ms, yerr=ss, fmt=style, capsize=3, label=f"{kind.upper()} teacher")
                drawn = True
        ax.set_xlabel(xlabel)
        ax.set_ylabel("student top-1 (%)")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{title} (mean ± std over seeds)", fontsize=11)
    return save_figure(fig, out_stem)


__all__ = ["plot_cell_curves", "shot_header", "student_rows", "teacher_rows", "teacher_section"]
