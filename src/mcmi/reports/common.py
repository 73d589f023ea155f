"""What every experiment report shares: its header, run counts, teachers' folders and figures.

Reports read run folders (:mod:`mcmi.engine.rundir`) and results files only. A report gets the
experiment's config object (read by attribute) and its planned runs: objects with ``key``,
``stage`` (``teacher`` | ``mcmi`` | ``prep`` | ``baseline`` | ``student``), ``out_dir``,
``labels`` (label -> tuple of values) and ``label(name)`` (the single value or ``""``). A teacher's
folder is that of the run of stage ``teacher`` or ``mcmi`` labelled with its architecture and kind
(:func:`teacher_dir`), never a layout recomputed here.

Headers come in two layouts, each kept as its reports have always printed it: a block (``Command:``
with the command indented, ``Commit:``, ``Written:``; Table 1, binary tasks, semi-supervised,
teacher variants: :func:`header_block`) and a list (``- code:``, ``- written:``, ``- runs:``; the
zero- and few-shot grids: :func:`header_list`).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import RUN_STATES, error_line, read_summary, read_teacher_eval, run_status
from mcmi.reports.numbers import pct


# ------------------------------------------------------------------------------ provenance
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the source tree (marked when it has uncommitted changes); None
    outside a checkout (:func:`mcmi.engine.provenance.git_commit`)."""
    from mcmi.engine.provenance import git_commit as commit

    return commit()


def written_now() -> str:
    """The local time, to the second, with its UTC offset: a report's ``Written`` line."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def config_yaml(cfg: Any) -> str:
    """A config object (a dataclass) or mapping as the YAML of the report's Configuration section."""
    import yaml

    from mcmi.config import to_dict

    data = cfg if isinstance(cfg, Mapping) else to_dict(cfg)
    return yaml.safe_dump(data, sort_keys=False).rstrip()


def method_name(method: str) -> str:
    """A method's display name (the class attribute ``display_name``; a name that is not a
    registered method is shown as given)."""
    from mcmi.methods import display_name

    return display_name(method)


# ------------------------------------------------------------------------------ runs
def status_counts(runs: Iterable[Any]) -> dict[str, int]:
    """``{"done": .., "partial": .., "todo": ..}`` over the runs' folders (zeros included)."""
    counts = dict.fromkeys(RUN_STATES, 0)
    for run in runs:
        counts[run_status(run.out_dir)] += 1
    return counts


def run_failures(runs: Iterable[Any]) -> list[dict[str, str]]:
    """``{"run": key, "error": first line of error.txt}`` of every unfinished run that left one."""
    failures = []
    for run in runs:
        if run_status(run.out_dir) == "done":
            continue
        line = error_line(run.out_dir)
        if line is not None:
            failures.append({"run": run.key, "error": line})
    return failures


def outcome_counts(outcomes: Iterable[Any]) -> dict[str, int]:
    """How many outcomes of each ``result`` (``skipped``, ``done``, ``failed``, ``blocked``), in
    the order first seen."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


def counts_text(counts: Mapping[str, int], *, sort: bool = False, skip_zero: bool = False) -> str:
    """``"3 done, 1 todo"``: the counts in their order (``sort``: by name), zeros left out with
    ``skip_zero``."""
    items = sorted(counts.items()) if sort else list(counts.items())
    return ", ".join(f"{v} {k}" for k, v in items if v or not skip_zero)


def teacher_dir(runs: Iterable[Any], arch: str, kind: str) -> Path | None:
    """The folder of the teacher ``arch`` of kind ``kind`` (``mll``, ``mcmi``, a variant name)
    among ``runs``; None when the grid plans no such run."""
    for run in runs:
        if run.stage in ("teacher", "mcmi") and run.label("teacher") == arch and run.label("kind") == kind:
            return Path(run.out_dir)
    return None


def teacher_figures(run_dir: Path | None) -> dict[str, Any]:
    """A teacher's test accuracy (best / last epoch, top-1 and top-5, %) from ``summary.json`` and
    its train-set accuracy, LL, CMI (and the view they were measured in) from
    ``teacher_eval.json``; None where a file or a number is missing."""
    s = (read_summary(run_dir) if run_dir is not None else None) or {}
    ev = (read_teacher_eval(run_dir) if run_dir is not None else None) or {}
    train = ev.get("train") or {}
    return {
        "done": bool(s), "best_acc": pct(s.get("best_acc")), "last_acc": pct(s.get("last_acc")),
        "best_epoch": s.get("best_epoch"), "train_acc": pct(train.get("accuracy")),
        "train_ll": train.get("log_likelihood"), "train_cmi": train.get("cmi"),
        # test top-5 (summaries written before mcmi recorded it have none)
        "best_top5": pct(s.get("best_top5")), "last_top5": pct(s.get("last_top5")),
        # teacher_eval.json files without a view were computed unaugmented
        "train_view": (ev.get("view") or "train-plain") if train else None,
        "train_view_seed": ev.get("view_seed") if train else None,
    }


def teacher_views_line(teachers: Iterable[Mapping[str, Any]], what: str = "Teacher train LL and CMI") -> str:
    """The sentence naming the view of the training set the teachers' train figures were
    measured in (rows with ``train_view`` / ``train_view_seed``; :mod:`mcmi.metrics.train_view`)."""
    from mcmi.metrics.train_view import views_sentence

    return views_sentence(({"view": t.get("train_view"), "view_seed": t.get("train_view_seed")}
                           for t in teachers if t.get("train_view")), what)


# ------------------------------------------------------------------------------ headers
def header_block(title: str, command: str, commit: str | None, unknown_commit: str = "unknown") -> list[str]:
    """``# title``, the command (or, for a call without one, the library function every grid goes
    through), the commit and the time written, each followed by a blank line."""
    return [f"# {title}", "", "Command:", "", f"    {command or '(library call: mcmi.grid.experiment.run_experiment)'}", "",
            f"Commit: `{commit or unknown_commit}`  ", f"Written: {written_now()}", ""]


def header_list(title: str, command: str, runs: Sequence[Any], outcomes: Iterable[Any],
                items: Sequence[str]) -> list[str]:
    """``# title``, the command, then a list: code commit, time written, the runs by status with
    each failed or blocked outcome and its message, then ``items``; a blank line after."""
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"- code: {git_commit() or 'unknown'}", f"- written: {written_now()}",
              f"- runs: {len(runs)} ({counts_text(status_counts(runs), skip_zero=True)})"]
    lines += [f"  - {o.result}: `{o.key}`: {o.message}" for o in outcomes or () if o.result in ("failed", "blocked")]
    return lines + [f"- {item}" for item in items] + [""]


__all__ = ["config_yaml", "counts_text", "git_commit", "header_block", "header_list",
           "method_name", "outcome_counts", "run_failures", "status_counts", "teacher_dir", "teacher_figures",
           "teacher_views_line", "written_now"]
