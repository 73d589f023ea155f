"""Report of semi-supervised distillation (paper A.9, Fig. 9): one Table 1 grid per labeled fraction.

Each cell's runs (those labelled ``cell = cfg.cell_key(fraction)``) are collected as a Table 1
grid (:func:`mcmi.reports.table1.collect_results`); the report writes ``<out>/<name>/README.md``
(rows: the student alone on the labeled images, then each method x teacher kind, and MCMI - MLL
paired by seed; columns: labeled fractions, with the number of labeled images when the data set
can be read; cells: test top-1 mean ± std over seeds, best and last epoch), the teachers of each
cell, ``results.json`` and ``accuracy_vs_labeled.{png,pdf}`` (as Fig. 9).

Config fields read: ``teacher``, ``student``, ``methods``, ``method_args``, ``teacher_kinds``,
``seeds``, ``data`` (its size, read from :mod:`mcmi.data`), ``labeled_fractions``,
``labeled_mode``, ``labeled_epoch_length``, ``out``, ``name``, ``cell_key(fraction)`` (the
runs' ``cell`` label; their folders are under ``<out>/<name>/<cell>``) and what
:func:`~mcmi.reports.table1.one_pair_grid` reads.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.reports.common import (
    counts_text,
    git_commit,
    header_block,
    outcome_counts,
    teacher_views_line,
)
from mcmi.reports.numbers import fmt_num, format_cell, paired_differences, seed_values, signed_cell
from mcmi.reports.table1 import collect_results, one_pair_grid
from mcmi.reports.tables import markdown_table


def training_set_size(data: Any) -> int | None:
    """Images in the training set of ``data`` (after ``train_subset``); None when it cannot be read."""
    from mcmi.data import load_dataset

    try:
        n = len(load_dataset(data.name, "train", root=data.root))
    except Exception:  # noqa: BLE001 -- the report does without the counts
        return None
    return min(n, data.train_subset) if data.train_subset else n


def collect_cell(cfg: Any, cell: str, runs: Sequence[Any]) -> dict[str, Any]:
    """The numbers of one labeled fraction (the runs labelled ``cell``) as its Table 1 grid's
    (:func:`mcmi.reports.table1.collect_results`), run keys relative to ``<out>/<name>/<cell>``."""
    root = Path(cfg.out) / cfg.name / cell
    grid, config = one_pair_grid(cfg, data=cfg.data, out=root)
    return collect_results(grid, [r for r in runs if r.label("cell") == cell], config=config, root=root)


def _kind_rows(r: Mapping[str, Any], method: str, kind: str) -> list[Mapping[str, Any]]:
    return [s for s in r["students"] if s["method"] == method and s["kind"] == kind]


def _table(cfg: Any, res: Mapping[str, Any], fractions: Sequence[float], label: Callable[[float], str],
           which: str) -> str:
    n = len(cfg.seeds)
    pair = f"{cfg.teacher}-{cfg.student}"
    body = [["labeled images alone"] + [format_cell(seed_values(res[cfg.cell_key(a)]["baseline_runs"], which), n)
                                        for a in fractions]]
    for method in cfg.methods:
        for kind in cfg.teacher_kinds:
            row = [f"{method.upper()}, {kind.upper()} teacher"]
            for a in fractions:
                r = res[cfg.cell_key(a)]
                text = format_cell(seed_values(_kind_rows(r, method, kind), which), n)
                gain = r["cells"].get(pair, {}).get(method, {}).get(f"gain_{which}")
                if kind == "mcmi" and gain is not None:
                    text += f" ({gain:+.2f})"
                row.append(text)
            body.append(row)
        if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
            body.append([f"{method.upper()}, MCMI - MLL paired by seed"] + [
                signed_cell(paired_differences(res[cfg.cell_key(a)]["students"], f"{which}_acc", method=method))
                for a in fractions])
    return markdown_table(["student of"] + [label(a) for a in fractions], body)


def _teacher_section(cfg: Any, res: Mapping[str, Any], fractions: Sequence[float],
                     label: Callable[[float], str]) -> list[str]:
    teachers = [(a, k, t) for a in fractions for k, t in res[cfg.cell_key(a)]["teachers"].get(cfg.teacher, {}).items()]
    rows = [[label(a), k.upper(), f"{fmt_num(t['best_acc'])} / {fmt_num(t['last_acc'])}", fmt_num(t["train_ll"], 3),
             fmt_num(t["train_cmi"], 4)] for a, k, t in teachers]
    return [f"## Teachers ({cfg.teacher}, trained on the labeled images)", "",
            markdown_table(["labeled", "teacher", "test top-1 best / last (%)", "train LL", "train CMI"], rows), "",
            "LL and CMI: over all training images, the images the students distil on; the teacher saw the "
            "labels of the labeled part only. " + teacher_views_line(t for _, _, t in teachers), ""]


def _figure(cfg: Any, res: Mapping[str, Any], fractions: Sequence[float], n_train: int | None,
            stem: Path) -> Path | None:
    """Student top-1 (best epoch; mean ± std over seeds) against the number of labeled images."""
    import numpy as np

    from mcmi.reports.plots import plt, save_figure
    from mcmi.reports.tables import mean_std

    x = np.array([a * n_train if n_train else 100 * a for a in fractions])
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    drawn = False
    series: list[tuple[str, Callable[[Mapping[str, Any]], Any], str]] = [
        ("student alone (labeled images)", lambda r: r["baseline_runs"], "k:")]
    series += [(f"{m.upper()} from {k.upper()} teacher", lambda r, m=m, k=k: _kind_rows(r, m, k),
                "o-" if k == "mcmi" else "s--") for m in cfg.methods for k in cfg.teacher_kinds]
    for name, pick, style in series:
        st = [mean_std(seed_values(pick(res[cfg.cell_key(a)]), "best")) for a in fractions]
        means, stds = np.array([s[0] for s in st]), np.array([s[1] for s in st])
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


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """``<out>/<name>/README.md``, ``results.json`` and ``accuracy_vs_labeled.{png,pdf}`` (see the
    module notes) from the planned runs of every cell; returns the README's path."""
    from mcmi.config import to_dict
    from mcmi.io import write_json, write_text

    out = Path(cfg.out) / cfg.name
    fractions = sorted(cfg.labeled_fractions)
    n_train = training_set_size(cfg.data)
    res = {cfg.cell_key(a): collect_cell(cfg, cfg.cell_key(a), runs) for a in fractions}
    counts = outcome_counts(outcomes)
    status = {k: sum(r["status"][k] for r in res.values()) for k in ("done", "partial", "todo")}
    label = lambda a: f"{100 * a:g}%" + (f" ({round(a * n_train)})" if n_train else "")  # noqa: E731
    epochs = "of the full set’s length" if cfg.labeled_epoch_length == "full" else "one pass over them"
    lines = header_block(f"Semi-supervised distillation (paper A.9, Fig. 9): {cfg.teacher} -> {cfg.student} on "
                         f"{cfg.data.name}", command, git_commit())
    lines += [f"Runs: {sum(status.values())} ({counts_text(status)})"
              + (f"; this invocation: {counts_text(counts, sort=True)}" if counts else "") + ".",
              "", f"Teachers (and the student alone) see only the labeled images ({cfg.labeled_mode}; epochs "
              f"{epochs}); students distil on all {n_train or ''} training images from the teacher's outputs, no "
              "labels: " + ", ".join(f"{m} {cfg.method_args.get(m, {})}" for m in cfg.methods)
              + ". Cells: student test top-1 (%), mean ± sample std over seeds (n when fewer have finished); MCMI "
              "cells add the gain of the means.", ""]
    for which in ("best", "last"):
        lines += [f"## Student top-1, {which} epoch", "", _table(cfg, res, fractions, label, which), ""]
    lines += _teacher_section(cfg, res, fractions, label)
    fig = _figure(cfg, res, fractions, n_train, out / "accuracy_vs_labeled")
    if fig:
        lines += ["## Figure", "", f"![student top-1 against labeled images]({fig.name})", ""]
    write_json(out / "results.json", {"experiment": "semi-supervised distillation (paper A.9, Fig. 9)",
                                      "command": command, "config": to_dict(cfg), "cells": res})
    return write_text(out / "README.md", "\n".join(lines))


__all__ = ["collect_cell", "training_set_size", "write_report"]
