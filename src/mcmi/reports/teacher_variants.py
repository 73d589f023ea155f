"""Report of the teacher variants (paper Table 4, Table 7, Figs. 5 and 7): which teacher makes the
better student.

Per variant: its teacher's test top-1 (``summary.json``) and train-set accuracy, LL, CMI and mean
output entropy (``teacher_eval.json``, written by the experiment; missing until then), and its
students' top-1 per method and seed. Writes ``<out>/<name>/README.md`` (one table per method, the
gain paired by seed against the reference variant), ``results.json``, ``variants.{png,pdf}`` and,
when at least two architectures each have an MLL teacher and its MCMI fine-tune, the teacher-size
view of Fig. 5 (``teacher_size.{png,pdf}``).

A variant's teacher is the run of stage ``teacher`` / ``mcmi`` labelled ``teacher = <arch>``,
``kind = <variant>``; its students are those labelled ``kind = <variant>``. Config fields read:
``variants`` (``name``, ``group``, ``arch``, ``method``, ``method_args``, ``init``), ``teacher``,
``student``, ``methods``, ``seeds``, ``data``, ``reference``, ``teacher_checkpoint``, ``out``,
``name``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import read_summary, read_teacher_eval
from mcmi.reports.common import (
    config_yaml,
    counts_text,
    git_commit,
    header_block,
    outcome_counts,
    status_counts,
    teacher_dir,
)
from mcmi.reports.numbers import fmt_num, format_cell, pct, signed_cell
from mcmi.reports.tables import markdown_table
from mcmi.reports.variant_figures import size_pairs, size_section, variants_figure, view_line


def reference_name(cfg: Any) -> str:
    """The variant gains are measured against: ``reference``, default the first variant."""
    return cfg.reference or cfg.variants[0].name


def collect(cfg: Any, runs: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per variant: its teacher's numbers and its students' accuracies per method."""
    rows = []
    for v in cfg.variants:
        arch = v.arch or cfg.teacher
        d = teacher_dir(runs, arch, v.name)
        s = (read_summary(d) if d is not None else None) or {}
        ev = (read_teacher_eval(d) if d is not None else None) or {}
        train = ev.get("train") or {}
        row: dict[str, Any] = {
            "variant": v.name, "group": v.group, "arch": arch, "method": v.method,
            "method_args": v.method_args, "init": v.init, "epochs": s.get("epochs"),
            "teacher_acc": pct(s.get(f"{cfg.teacher_checkpoint}_acc")), "train_acc": pct(train.get("accuracy")),
            "train_ll": train.get("log_likelihood"), "train_cmi": train.get("cmi"), "train_entropy": train.get("entropy"),
            "train_view": (ev.get("view") or "train-plain") if train else None,
            "train_view_seed": ev.get("view_seed") if train else None, "students": {}}
        for method in cfg.methods:
            per_seed = []
            for r in runs:
                if r.stage == "student" and r.label("kind") == v.name and r.label("method") == method:
                    ss = read_summary(r.out_dir)
                    if ss is not None:
                        per_seed.append({"seed": int(r.label("seed")), "best": pct(ss.get("best_acc")),
                                         "last": pct(ss.get("last_acc"))})
            row["students"][method] = sorted(per_seed, key=lambda e: e["seed"])
        rows.append(row)
    return rows


def _method_table(cfg: Any, rows: Sequence[Mapping[str, Any]], method: str, ref: str) -> str:
    n = len(cfg.seeds)
    ref_row = next(r for r in rows if r["variant"] == ref)
    ref_best = {e["seed"]: e["best"] for e in ref_row["students"][method] if e["best"] is not None}
    body = []
    for r in rows:
        per = r["students"][method]
        best = [e["best"] for e in per if e["best"] is not None]
        last = [e["last"] for e in per if e["last"] is not None]
        diffs = [e["best"] - ref_best[e["seed"]] for e in per if e["best"] is not None and e["seed"] in ref_best]
        how = r["method"] + "".join(f" {k}={v}" for k, v in r["method_args"].items() if k != "centroids")
        how += f", from {r['init']}" if r["init"] else ", from scratch"
        body.append([f"`{r['variant']}`", r["group"] or "", how, fmt_num(r["epochs"], 0),
                     fmt_num(r["teacher_acc"]), fmt_num(r["train_acc"]), fmt_num(r["train_ll"], 3),
                     fmt_num(r["train_cmi"], 4), fmt_num(r["train_entropy"], 3), format_cell(best, n),
                     format_cell(last, n), "" if r["variant"] == ref or not diffs else signed_cell(diffs)])
    return markdown_table(["variant", "group", "teacher training", "epochs", "teacher top-1", "train acc", "train LL",
                           "train CMI", "train entropy", "student best", "student last",
                           f"gain vs {ref} (best, paired)"], body)


def write_report(cfg: Any, runs: Sequence[Any], *, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """``<out>/<name>/README.md``, ``results.json`` and the figures (see the module notes);
    returns the README's path."""
    from mcmi.config import to_dict
    from mcmi.io import write_json, write_text

    out = Path(cfg.out) / cfg.name
    rows = collect(cfg, runs)
    ref = reference_name(cfg)
    lines = header_block(f"Teacher variants: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", command, git_commit())
    lines += [f"Runs: {len(runs)} ({counts_text(status_counts(runs), skip_zero=True)})."
              + (f" This invocation: {counts_text(outcome_counts(outcomes))}." if outcomes else ""), "",
              "Teacher columns: test top-1 of the checkpoint the students read (`" + cfg.teacher_checkpoint + ".pt`); "
              "accuracy, LL, CMI and mean output entropy (nats) on the training set. Student columns: test "
              "top-1 (%), mean ± sample std over seeds (n when fewer have finished); the gain is paired by seed "
              f"against the `{ref}` variant's student of the same seed.", "", view_line(rows), ""]
    for method in cfg.methods:
        lines += [f"## {method.upper()} students", "", _method_table(cfg, rows, method, ref), ""]
    fig = variants_figure(cfg, rows, out / "variants")
    if fig:
        lines += ["## Figure", "", f"![student accuracy and teacher CMI per variant]({fig.name})", "",
                  "Bars: student top-1 at the best epoch (mean ± std over seeds; first method); line: the "
                  "teacher's train-set CMI; dashed line: its mean output entropy. PDF beside the PNG.", ""]
    lines += size_section(cfg, rows, out / "teacher_size", len(cfg.seeds))
    lines += ["## Configuration", "", "```yaml", config_yaml(cfg), "```", ""]
    write_json(out / "results.json", {"experiment": "teacher variants (paper Table 4, Table 7, Figs. 5 and 7)",
                                      "command": command, "config": to_dict(cfg), "variants": rows})
    return write_text(out / "README.md", "\n".join(lines))


__all__ = ["collect", "reference_name", "size_pairs", "write_report"]
