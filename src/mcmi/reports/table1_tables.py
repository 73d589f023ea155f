"""The tables of the Table 1 report (:mod:`mcmi.reports.table1`) from its results dict.

Top-1 tables in the paper's layout (rows: teacher figures, the student alone, one row per method;
columns: each pair's MLL and MCMI teachers; the MCMI cell adds the gain of the means), the top-5
tables of the same runs when they recorded top-5, the MCMI - MLL differences paired by seed, and
the marks of cells whose per-pair method weights are a fallback: ``†`` the value of the nearest
pair the methods' authors give (footnoted with its source), ``‡`` the method's class default.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from mcmi.reports.common import method_name
from mcmi.reports.numbers import fmt_num, format_stats
from mcmi.reports.paper import (
    PAPER_MCMI_MEAN_STD,
    PAPER_REPRODUCED,
    PAPER_STUDENT_BASELINE,
    PAPER_TABLE1,
    PAPER_TEACHERS,
)
from mcmi.reports.tables import fmt_mean_std, markdown_table

FALLBACK_MARKS = {"nearest-pair": "†", "class-default": "‡"}


def arch_family(name: str) -> str:
    """``resnet56`` -> ``resnet``, ``wrn_40_2`` -> ``wrn``, ``mobilenetv2`` -> ``mobilenetv``."""
    m = re.match(r"[a-z]+", name)
    return m.group(0) if m else name


def pair_groups(pairs: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """Table 1's two halves: pairs within one architecture family, then across families."""
    return [("Teacher and student of the same architecture family",
             [p for p in pairs if arch_family(p.teacher) == arch_family(p.student)]),
            ("Teacher and student of different architectures",
             [p for p in pairs if arch_family(p.teacher) != arch_family(p.student)])]


# ------------------------------------------------------------------------------ fallback marks
def fallback_mark(cell: Mapping[str, Any]) -> str:
    """``†`` / ``‡`` for a cell whose per-pair weights are a fallback (see the module notes)."""
    return FALLBACK_MARKS.get(((cell.get("weights") or {}).get("status")) or "", "")


def _value_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def fallback_notes(cfg: Any, res: Mapping[str, Any], pairs: Sequence[Any]) -> list[str]:
    """Footnotes of the marked cells of ``pairs``: the values, the source pair and file."""
    notes = []
    for p in pairs:
        for method in cfg.methods:
            w = (res["cells"][p.name][method].get("weights") or {})
            mark = FALLBACK_MARKS.get(w.get("status") or "")
            if not mark:
                continue
            name = method_name(method)
            if w["status"] == "nearest-pair":
                t, st = w["source_pair"]
                notes.append(f"{mark} {name}, {p.teacher}→{p.student}: {_value_text(w['values'])}. The authors give no "
                             f"config for this pair; the value of the nearest pair {t}→{st}, {w['source']}. Why that "
                             f"pair: {w['reason']}.")
            else:
                notes.append(f"{mark} {name}, {p.teacher}→{p.student}: {_value_text(w['values'])}. No per-pair value "
                             f"{'(use_pair_defaults is off)' if not cfg.use_pair_defaults else 'for this pair'}; "
                             f"the method's default: {w['source']}.")
    return notes


# ------------------------------------------------------------------------------ top-1
def _header(pairs: Sequence[Any], kinds: Sequence[str]) -> list[str]:
    return [""] + [f"{p.teacher}→{p.student} {k.upper()}" for p in pairs for k in kinds]


def top1_table(cfg: Any, res: Mapping[str, Any], pairs: Sequence[Any], which: str, paper: bool) -> str:
    """Top-1 at the ``best`` or ``last`` epoch; ``paper`` appends the paper's values after `` / ``."""
    n_full = len(cfg.seeds)
    kinds = list(cfg.teacher_kinds)
    rows: list[list[str]] = []
    for label, field_name, digits, idx in (("Teacher top-1", f"{which}_acc", 2, 0),
                                           ("Teacher LL (train)", "train_ll", 3, 1),
                                           ("Teacher CMI (train)", "train_cmi", 4, 2)):
        row = [label]
        for p in pairs:
            for k in kinds:
                text = fmt_num(res["teachers"][p.teacher][k][field_name], digits)
                if paper and p.teacher in PAPER_TEACHERS:
                    text += f" / {PAPER_TEACHERS[p.teacher][k][idx]:.{digits}f}"
                row.append(text)
        rows.append(row)
    if cfg.student_baseline:
        row = ["Student alone"]
        for p in pairs:
            text = format_stats(res["baselines"][p.student][which], n_full)
            if paper and p.student in PAPER_STUDENT_BASELINE:
                text += f" / {PAPER_STUDENT_BASELINE[p.student]:.2f}"
            row += [text] * len(kinds)
        rows.append(row)
    for method in cfg.methods:
        row = [method_name(method)]
        for p in pairs:
            cell = res["cells"][p.name][method]
            ref = PAPER_TABLE1.get(p.name, {}).get(method) if paper else None
            star = "*" if (p.name, method) in PAPER_REPRODUCED else ""
            mark = fallback_mark(cell)
            for k in kinds:
                text = format_stats(cell[k][which], n_full) + (f" {mark}" if mark else "")
                gain = cell.get(f"gain_{which}")
                if k == "mcmi" and gain is not None:
                    text += f" ({gain:+.2f})"
                if ref is not None:
                    if k == "mll":
                        text += f" / {ref[0]:.2f}{star}"
                    else:
                        spread = PAPER_MCMI_MEAN_STD[p.name][method][1]
                        text += f" / {ref[1]:.2f} ± {spread:.2f} ({ref[1] - ref[0]:+.2f})"
                row.append(text)
        rows.append(row)
    return markdown_table(_header(pairs, kinds), rows)


# ------------------------------------------------------------------------------ top-5
def has_top5(res: Mapping[str, Any]) -> bool:
    """Whether any run of the results recorded a top-5 accuracy (older results have none)."""
    cells = [c.get(k) or {} for per in (res.get("cells") or {}).values() for c in per.values() for k in ("mll", "mcmi")]
    cells += list((res.get("baselines") or {}).values())
    teachers = [t for per in (res.get("teachers") or {}).values() for t in per.values()]
    return any(c.get(f"{w}_top5") for c in cells for w in ("best", "last")) or any(
        t.get(f"{w}_top5") is not None for t in teachers for w in ("best", "last"))


def top5_table(cfg: Any, res: Mapping[str, Any], pairs: Sequence[Any], which: str) -> str:
    """Table 1's layout with test top-5 (%): teacher row, student alone, one row per method (the
    MCMI cell adds the gain of the means). The paper reports no top-5, so there is no reference."""
    n_full = len(cfg.seeds)
    kinds = list(cfg.teacher_kinds)
    key = f"{which}_top5"
    rows = [["Teacher top-5"] + [fmt_num(res["teachers"][p.teacher][k].get(key), 2) for p in pairs for k in kinds]]
    if cfg.student_baseline:
        rows.append(["Student alone"] + [format_stats((res["baselines"].get(p.student) or {}).get(key), n_full)
                                         for p in pairs for _ in kinds])
    for method in cfg.methods:
        row = [method_name(method)]
        for p in pairs:
            cell = res["cells"][p.name][method]
            for k in kinds:
                text = format_stats((cell.get(k) or {}).get(key), n_full)
                a, b = ((cell.get(kk) or {}).get(key) for kk in ("mll", "mcmi"))
                if k == "mcmi" and a and b:
                    text += f" ({b['mean'] - a['mean']:+.2f})"
                row.append(text)
        rows.append(row)
    return markdown_table(_header(pairs, kinds), rows)


def top5_sections(cfg: Any, res: Mapping[str, Any], groups: Sequence[tuple[str, Sequence[Any]]]) -> list[str]:
    """The top-5 tables, when the runs recorded top-5 (none for results of older runs)."""
    if not has_top5(res):
        return []
    lines = ["", "Top-5 tables: test top-5 accuracy (%) of the same runs (at the best top-1 epoch, and at the "
             "last epoch), mean ± sample std over seeds; `–` for runs that recorded none (older runs, or fewer "
             "than 5 classes)."]
    for which, title in (("best", "Top-5 at the best epoch"), ("last", "Top-5 at the last epoch")):
        lines += ["", f"## {title} (%)"]
        for group_title, pairs in groups:
            if pairs:
                lines += ["", f"### {group_title}", "", top5_table(cfg, res, pairs, which)]
    return lines


# ------------------------------------------------------------------------------ paired
def paired_section(cfg: Any, res: Mapping[str, Any]) -> list[str]:
    """MCMI - MLL paired by seed per pair and method, best and last epoch (needs both kinds)."""
    if not {"mll", "mcmi"} <= set(cfg.teacher_kinds):
        return []
    rows = []
    for pair in cfg.pairs:
        for method in cfg.methods:
            mark = fallback_mark(res["cells"][pair.name][method])
            row = [f"{pair.teacher}→{pair.student}", method_name(method) + (f" {mark}" if mark else "")]
            for which in ("best", "last"):
                pg = res["cells"][pair.name][method].get(f"paired_{which}")
                row.append("–" if not pg else f"{fmt_mean_std(pg['diffs'], signed=True)} "
                           f"({sum(d > 0 for d in pg['diffs'])}/{len(pg['diffs'])} seeds gained; "
                           + ", ".join(f"{d:+.2f}" for d in pg["diffs"]) + ")")
            rows.append(row)
    return ["", "## MCMI - MLL, paired by seed (points of top-1)", "",
            "Each seed's MCMI student minus its MLL student (same initialization and data order); mean ± "
            "sample std over the seeds where both finished, and how many of them gained.", "",
            markdown_table(["pair", "method", "best epoch", "last epoch"], rows)]


__all__ = ["FALLBACK_MARKS", "arch_family", "fallback_mark", "fallback_notes", "has_top5", "pair_groups",
           "paired_section", "top1_table", "top5_sections", "top5_table"]
