"""Reading a run folder the trainer wrote: its summary, status, last error and teacher evaluation.

A run folder holds, once finished, ``summary.json`` (final and best accuracies, the config, the
provenance); while training, ``last.pt`` (and ``last.prev.pt``, the checkpoint before it) to resume
from; after a failure, ``error.txt`` (message, then traceback). Teachers of the experiment grids
also get ``teacher_eval.json`` (accuracy, LL and CMI on the training set). Reading never raises
for a missing or unreadable file: the caller gets None (or ``""``) and shows the run as missing.
"""
from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: A run's states, in the order reports count them.
RUN_STATES = ("done", "partial", "todo")


def read_json(path: str | Path) -> Any | None:
    """The JSON content of ``path``; None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """``summary.json`` of a finished run; None while it has none (or it is unreadable)."""
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        return None
    return read_json(p)


def read_teacher_eval(run_dir: str | Path) -> dict[str, Any] | None:
    """``teacher_eval.json`` of a teacher run (its train-set figures); None when absent."""
    return read_json(Path(run_dir) / "teacher_eval.json")


def run_status(run_dir: str | Path) -> str:
    """``done`` (summary.json), ``partial`` (a checkpoint to resume from) or ``todo``."""
    d = Path(run_dir)
    if (d / "summary.json").is_file():
        return "done"
    if (d / "last.pt").is_file() or (d / "last.prev.pt").is_file():
        return "partial"
    return "todo"


def error_line(run_dir: str | Path) -> str | None:
    """The first line of the run's ``error.txt`` (``""`` for an empty file); None without one."""
    p = Path(run_dir) / "error.txt"
    if not p.is_file():
        return None
    lines = p.read_text(errors="replace").strip().splitlines()
    return lines[0] if lines else ""


def error_note(run_dir: str | Path) -> str:
    """``last attempt failed: <first line of error.txt>`` (cut at 160 characters); ``""`` when
    the run left no error."""
    first = error_line(run_dir)
    if first is None:
        return ""
    return f"last attempt failed: {first[:160]}" if first else "last attempt failed"


def write_error(run_dir: str | Path, err: BaseException) -> str:
    """``run_dir/error.txt``: the message and traceback of ``err`` (written atomically); returns the
    one-line message. A folder that cannot be written is logged: the caller still reports the
    failure."""
    from mcmi.io import write_text

    msg = f"{type(err).__name__}: {err}"
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        write_text(Path(run_dir) / "error.txt", f"{msg}\n\n{tb}")
    except OSError:
        log.exception("cannot write %s", Path(run_dir) / "error.txt")
    return msg


__all__ = ["RUN_STATES", "error_line", "error_note", "read_json", "read_summary", "read_teacher_eval", "run_status",
           "write_error"]
