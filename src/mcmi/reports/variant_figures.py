"""Figures and the teacher-size view of the teacher-variants report (paper Figs. 1, 5 and 7).

Rows are those of :func:`mcmi.reports.teacher_variants.collect`: per variant its ``arch``,
``method``, ``init``, the teacher's train ``train_cmi`` / ``train_ll`` / ``train_entropy`` and its
students per method as ``[{"seed", "best", "last"}]``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.reports.common import teacher_views_line
from mcmi.reports.numbers import format_cell, signed_cell
from mcmi.reports.tables import markdown_table, mean_std


def view_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """Which view of the training set the rows' teacher figures were measured in."""
    return teacher_views_line(rows, "Teacher train accuracy, LL, CMI and entropy")


def size_pairs(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(MLL row, MCMI row) per teacher architecture, in the order listed: an MCMI variant fine-tuned
    from an MLL variant trained from scratch. Only when at least two architectures have such a pair
    (the teacher-size study of paper A.2, Fig. 5); the first pair of each architecture is used."""
    by_name = {r["variant"]: r for r in rows}
    pairs, seen = [], set()
    for r in rows:
        base = by_name.get(r["init"] or "")
        if (r["method"] == "mcmi" and base is not None and base["method"] == "mll" and base["init"] is None
                and base["arch"] == r["arch"] and r["arch"] not in seen):
            pairs.append((base, r))
            seen.add(r["arch"])
    return pairs if len(pairs) >= 2 else []


def size_section(cfg: Any, rows: Sequence[Mapping[str, Any]], stem: Path, n: int) -> list[str]:
    """Fig. 5's view: per teacher architecture, the MLL and MCMI teachers' train CMI and LL and their
    students, the gain paired by seed against the MLL teacher of the *same* architecture. Writes
    ``stem.{png,pdf}``; ``[]`` without :func:`size_pairs`."""
    from mcmi.reports.plots import plt, save_figure

    pairs = size_pairs(rows)
    if not pairs:
        return []
    method = cfg.methods[0]
    f = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"  # noqa: E731

    def best(r: Mapping[str, Any]) -> dict[int, float]:
        return {e["seed"]: e["best"] for e in r["students"][method] if e["best"] is not None}

    body = []
    for mll, mcmi in pairs:
        a, b = best(mll), best(mcmi)
        diffs = [b[k] - a[k] for k in sorted(set(a) & set(b))]
        body.append([mll["arch"], f(mll["train_cmi"], 4), f(mcmi["train_cmi"], 4), f(mll["train_ll"]),
                     f(mcmi["train_ll"]), format_cell(list(a.values()), n), format_cell(list(b.values()), n),
                     signed_cell(diffs)])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = list(range(len(pairs)))
    for k, (label, style) in enumerate((("MLL", "o--"), ("MCMI", "s-"))):
        side = [p[k] for p in pairs]
        st = [mean_std(list(best(r).values())) for r in side]
        axes[0].errorbar(x, [m for m, _ in st], yerr=[sd for _, sd in st], fmt=style, capsize=3,
                         label=f"{label} teachers")
        axes[1].plot(x, [r["train_cmi"] for r in side], style, label=f"{label} teachers")
        axes[2].plot(x, [r["train_ll"] for r in side], style, label=f"{label} teachers")
    for ax, ylabel, title in ((axes[0], "student top-1 (%)", f"{method.upper()} student {cfg.student}"),
                              (axes[1], "CMI (nats)", "teacher CMI (train)"),
                              (axes[2], "log-likelihood (nats)", "teacher LL (train)")):
        ax.set_xticks(x, [p[0]["arch"] for p in pairs])
        ax.set_xlabel("teacher")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Teacher size: {cfg.data.name}", fontsize=11)
    png = save_figure(fig, stem)[0]
    return ["## Teacher size (Fig. 5 layout)", "",
            markdown_table(["teacher", "CMI MLL", "CMI MCMI", "LL MLL", "LL MCMI", "student of MLL (best)",
                            "student of MCMI (best)", "MCMI - MLL (paired by seed)"], body), "",
            f"![student accuracy, teacher CMI and LL vs teacher size]({png.name})", "",
            view_line([r for p in pairs for r in p]) + " The gain compares the students of the MCMI "
            "and MLL teachers of the same architecture, seed by seed. PDF beside the PNG.", ""]


def variants_figure(cfg: Any, rows: Sequence[Mapping[str, Any]], stem: Path) -> Path | None:
    """Student accuracy bars with the teacher's CMI and entropy on a second axis (as Figs. 1, 5, 7);
    None when no student of the first method has finished."""
    import numpy as np

    from mcmi.reports.plots import plt, save_figure

    method = cfg.methods[0]
    stats = [mean_std([e["best"] for e in r["students"][method] if e["best"] is not None]) for r in rows]
    if all(np.isnan(m) for m, _ in stats):
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.4))
    x = np.arange(len(rows))
    means = [0.0 if np.isnan(m) else m for m, _ in stats]
    ax.bar(x, means, 0.6, yerr=[0.0 if np.isnan(s) else s for _, s in stats], capsize=3, color="tab:blue",
           alpha=0.8, label=f"student top-1 ({method.upper()}, best epoch)")
    finite = [m for m, _ in stats if not np.isnan(m)]
    ax.set_ylim(min(finite) - 2 - max(1.0, 0.2 * (max(finite) - min(finite))), max(finite) + 1.5)
    ax.set_ylabel("student top-1 (%)")
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_xlabel("teacher variant")
    ax2 = ax.twinx()
    cmi = [np.nan if r["train_cmi"] is None else r["train_cmi"] for r in rows]
    ent = [np.nan if r["train_entropy"] is None else r["train_entropy"] for r in rows]
    ax2.plot(x, cmi, "o-", color="tab:red", label="teacher CMI (train, nats)")
    ax2.plot(x, ent, "s--", color="tab:gray", label="teacher entropy (train, nats)")
    ax2.set_ylabel("nats")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    # below the axes: inside, it would hide bars and the entropy line
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=3, frameon=False)
    ax.set_title(f"Teacher variants: {cfg.teacher} -> {cfg.student}, {cfg.data.name}")
    return save_figure(fig, stem)[0]


__all__ = ["size_pairs", "size_section", "variants_figure", "view_line"]
