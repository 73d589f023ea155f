"""Checks every grid config shares (run when a config is loaded, so a mistake is one line before
anything trains)."""
from __future__ import annotations

from typing import Any

from mcmi.grid.builder import TEACHER_KINDS


def check_grid(cfg: Any) -> None:
    """``methods`` (registered distillers), ``teacher_kinds`` (if the grid has them), ``seeds``:
    non-empty and without repeats; ``method_args`` names registered methods; the teacher
    checkpoint and evaluation view are valid. Raises ``ValueError``."""
    from mcmi.config import unknown_name
    from mcmi.methods import METHODS, Distiller
    from mcmi.metrics.train_view import check_view

    lists = [("methods", cfg.methods), ("seeds", cfg.seeds)]
    if hasattr(cfg, "teacher_kinds"):
        lists.insert(1, ("teacher_kinds", cfg.teacher_kinds))
    for label, values in lists:
        if not values:
            raise ValueError(f"{label} must not be empty")
        if len(set(values)) != len(values):
            raise ValueError(f"{label} lists a value twice: {values}")
    bad = [k for k in getattr(cfg, "teacher_kinds", ()) if k not in TEACHER_KINDS]
    if bad:
        raise ValueError(f"teacher_kinds must be among {list(TEACHER_KINDS)}, got {bad[0]!r}")
    for key, names in (("methods", cfg.methods), ("method_args", list(cfg.method_args))):
        for name in names:
            if name not in METHODS:
                raise ValueError(unknown_name(key, name, "method", METHODS.names()))
    for name in cfg.methods:
        cls = METHODS.get(name)
        if not (isinstance(cls, type) and issubclass(cls, Distiller)):
            raise ValueError(f"method {name!r} is not a distiller (the grids compare KD methods; "
                             "the student without a teacher is student_baseline: true)")
    if cfg.teacher_checkpoint not in ("last", "best"):
        raise ValueError(f"teacher_checkpoint must be 'last' or 'best', got {cfg.teacher_checkpoint!r}")
    check_view(cfg.teacher_eval_view, "teacher_eval_view")


__all__ = ["check_grid"]
