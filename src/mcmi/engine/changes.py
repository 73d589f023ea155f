"""What a resumed run may change: the recipe of a checkpoint against the recipe of the rerun.

A run folder is one experiment: its checkpoint, ``config.json`` and ``summary.json`` describe one
recipe. A rerun that resumes from ``last.pt`` with another recipe would train on under the old
optimizer state while the files record the new values (a changed ``train.lr`` would even be
ignored: the learning rate comes back from the checkpoint). So :meth:`Trainer._resume` compares
the two configurations key by key (``train.lr``, ``model.name``, ``method_args.beta``, ...):

- ``train.epochs`` may change (train on, or stop earlier), and so may the settings that change
  only what is displayed or where it is logged (:data:`FREE_KEYS`) and ``out`` (a moved folder);
- any other difference is refused (:class:`ConfigChangedError`, listing every differing key with
  its old and new value), unless the caller allows the key (``mcmi ... --allow-changes KEY``;
  a section such as ``data`` allows all its keys). An allowed optimizer setting takes effect:
  a changed ``train.lr`` rescales the schedule's base learning rate, ``momentum``,
  ``weight_decay``, ``nesterov``, ``betas``, ``eps`` are written into the optimizer.

Every resume with differences appends one line to ``OUT/changes.jsonl``: time, checkpoint,
epoch, each changed key with old and new value, and which keys were allowed.

Keys that only one of the two configurations has (a setting added to mcmi after the checkpoint
was written) are not compared.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mcmi.checkpoint import CheckpointError
from mcmi.config import flatten

logger = logging.getLogger(__name__)

#: Keys that may differ on resume without being allowed: the length of the run, the output
#: folder's own name, and display / logging settings.
FREE_KEYS = frozenset({
    "train.epochs", "out", "train.progress", "train.log_tensorboard", "train.loggers",
    "train.log_every_steps", "train.tracking_project",
})

CHANGES_FILE = "changes.jsonl"


class ConfigChangedError(CheckpointError):
    """A resume whose configuration differs from the checkpoint's in keys not allowed to change."""

    def __init__(self, path: str | Path, changes: Mapping[str, tuple[Any, Any]], refused: list[str]) -> None:
        self.changes, self.refused = dict(changes), list(refused)
        listed = ", ".join(f"{k} {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in refused)
        flags = " ".join(f"--allow-changes {k}" for k in refused)
        super().__init__(path, f"the recipe changed since this checkpoint: {listed}; rerun with the "
                               f"checkpoint's settings, --fresh to start over, or {flags} to continue with "
                               "the new values")


def _show(v: Any) -> str:
    return json.dumps(v) if not isinstance(v, str) else repr(v)


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trainer's ``config_dict()`` (``{"train": ..., "run": ...}``) as dotted keys: the engine's
    settings as ``train.*``, the caller's configuration (a RunConfig: ``model.name``,
    ``train.lr``, ``out``...) as its own keys."""
    keys = flatten(_plain(config.get("train") or {}), "train.")
    keys.update(flatten(_plain(config.get("run") or {})))
    return keys


def config_changes(saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys whose values differ between two ``config_dict()`` s, with ``(old, new)``."""
    if not saved:
        return {}
    old, new = config_keys(saved), config_keys(current)
    return {k: (old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]}


def is_allowed(key: str, allowed: Iterable[str]) -> bool:
    """``key`` is free (:data:`FREE_KEYS`) or named by ``allowed`` (itself or a section above it)."""
    if key in FREE_KEYS:
        return True
    return any(key == a or key.startswith(a.rstrip(".") + ".") for a in allowed)


def check_allowed_names(allowed: Iterable[str], config: Mapping[str, Any]) -> None:
    """Raise :class:`~mcmi.config.ConfigError` for an ``--allow-changes`` name that is neither a
    key of ``config`` (a recipe as a mapping, e.g. ``asdict(RunConfig)``) nor a section above one:
    a typo there would otherwise allow nothing and be noticed only when the resume is refused."""
    from mcmi.config import ConfigError, did_you_mean

    keys = set(flatten(_plain(config))) | FREE_KEYS
    names = keys | {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    for a in allowed:
        if a.rstrip(".") not in names and not any(k.startswith(a.rstrip(".") + ".") for k in keys):
            raise ConfigError(f"--allow-changes {a!r}: no such recipe key{did_you_mean(a, sorted(names))}")


def check_changes(path: str | Path, changes: Mapping[str, tuple[Any, Any]], allowed: Iterable[str]) -> None:
    """Raise :class:`ConfigChangedError` for the changed keys that are neither free nor allowed."""
    allowed = list(allowed)
    refused = [k for k in changes if not is_allowed(k, allowed)]
    if refused:
        raise ConfigChangedError(path, changes, refused)


def record_changes(out_dir: str | Path, checkpoint: str | Path, epoch: int,
                   changes: Mapping[str, tuple[Any, Any]], allowed: Iterable[str]) -> Path:
    """Append one line for a resume with ``changes`` to ``out_dir/changes.jsonl``."""
    from mcmi.io import write_text

    path = Path(out_dir) / CHANGES_FILE
    line = json.dumps({
        "time": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "checkpoint": str(checkpoint),
        "resumed_at_epoch": int(epoch),
        "changes": {k: {"old": o, "new": n} for k, (o, n) in changes.items()},
        "allowed": sorted(set(allowed)),
    }, default=str)
    before = path.read_text() if path.is_file() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    write_text(path, before + line + "\n")  # atomic: the file never holds half a line
    return path


#: Optimizer settings copied into every param group when changed (the name in the group).
_GROUP_KEYS = {"train.momentum": "momentum", "train.weight_decay": "weight_decay",
               "train.nesterov": "nesterov", "train.betas": "betas", "train.eps": "eps"}


def apply_optimizer_changes(optimizer: Any, scheduler: Any, changes: Mapping[str, tuple[Any, Any]]) -> list[str]:
    """Make allowed optimizer changes take effect after the checkpoint's optimizer and schedule
    state were loaded (which bring back the old values); returns the keys applied."""
    applied = []
    if "train.lr" in changes:
        old, new = (float(v) for v in changes["train.lr"])
        if old > 0 and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [b * new / old for b in scheduler.base_lrs]
            for g, b in zip(optimizer.param_groups, scheduler.base_lrs):
                g["initial_lr"] = b
            scheduler.set_position(scheduler.epoch, scheduler.step)
            applied.append("train.lr")
    for key, name in _GROUP_KEYS.items():
        if key in changes:
            value = changes[key][1]
            groups = [g for g in optimizer.param_groups if name in g]
            for g in groups:
                g[name] = tuple(value) if isinstance(value, list) else value
            if groups:
                applied.append(key)
    return applied


__all__ = ["CHANGES_FILE", "FREE_KEYS", "ConfigChangedError", "apply_optimizer_changes", "check_changes",
           "config_changes", "config_keys", "is_allowed", "record_changes"]
