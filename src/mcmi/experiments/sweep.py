"""A sweep of one recipe: the cartesian product of some of its settings (``mcmi sweep --recipe R
--grid method_args.lam=0.05,0.1 --grid train.seed=0,1``), each point a run in ``OUT/<lam=0.1_seed=0>``,
trained by the grid engine (:mod:`mcmi.grid`) like any grid's runs, and a results table."""
from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcmi.config import ConfigError, load_config
from mcmi.engine.rundir import read_summary
from mcmi.experiments.train import RunConfig
from mcmi.grid.plan import PlannedRun


def split_values(text: str) -> list[str]:
    """``"0.05,0.1,[1,2]"`` -> ``["0.05", "0.1", "[1,2]"]``: commas inside brackets or braces
    belong to the value."""
    values, depth, cur = [], 0, []
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            values.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    values.append("".join(cur).strip())
    return values


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["method_args.lam=0.05,0.1", "train.seed=0,1,2"]`` -> ``[(key, values), ...]``."""
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r} must look like key=value1,value2,...")
        key, raw = (s.strip() for s in item.split("=", 1))
        values = split_values(raw)
        if not key or any(not v for v in values):
            raise ConfigError(f"--grid {item!r}: empty key or value")
        if key == "out" or key.startswith("out."):
            raise ConfigError("--grid cannot vary 'out': each run gets its own folder under --out")
        if key in (k for k, _ in grid):
            raise ConfigError(f"--grid names {key!r} twice")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key}: a value is listed twice: {values}")
        grid.append((key, values))
    return grid


def _folder_part(value: str) -> str:
    return re.sub(r"[\s/\\:]+", "_", value).strip("_") or "_"


def run_name(assignment: Sequence[tuple[str, str]], keys: Sequence[str]) -> str:
    """Folder name of one grid point: ``lam=0.1_seed=2`` (the last part of each key, or the full
    key where two keys of the grid share their last part)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    short = {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}
    return "_".join(f"{short[k]}={_folder_part(v)}" for k, v in assignment) or "run"


def expand_recipe_grid(recipe: str | os.PathLike | None, grid: Sequence[tuple[str, Sequence[str]]],
                       overrides: Sequence[str] = (), out: str | os.PathLike | None = None) -> list[PlannedRun]:
    """The cartesian product of ``grid`` over one recipe: one :class:`PlannedRun` per point, its
    ``RunConfig`` = recipe + ``overrides`` + the point's ``key=value``s, in ``out/<run_name>``
    (default ``out``: the recipe's ``out`` + ``-sweep``). Errors name the recipe and the key.
    A recipe that names a teacher gets the student defaults (lr by student, DKD/ReviewKD pair
    weights) where neither it, ``overrides`` nor the grid point set them
    (:mod:`mcmi.experiments.student_defaults`)."""
    from mcmi.experiments.student_defaults import load_run_config

    base = load_config(RunConfig, recipe, list(overrides))
    root = Path(out) if out is not None else Path(f"{str(base.out).rstrip('/')}-sweep")
    keys = [k for k, _ in grid]
    runs = []
    for values in itertools.product(*(v for _, v in grid)):
        point = list(zip(keys, values))
        name = run_name(point, keys)
        cfg = load_run_config(recipe, [*overrides, *(f"{k}={v}" for k, v in point), f"out={root / name}"])
        _check_method_args(cfg, f"{recipe} + {name}")
        runs.append(PlannedRun(name, "run", cfg, (), {k: (v,) for k, v in point}))
    names = [r.key for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"two grid points map to one folder name ({names}); make the values distinct")
    return runs


def _check_method_args(cfg: RunConfig, source: str) -> None:
    """Fail before submitting anything when the method is unknown or does not take an argument
    (the runs would all fail at their start)."""
    from mcmi.methods.options import check_method_args

    try:
        check_method_args(cfg.method, cfg.method_args)
    except (ConfigError, KeyError) as e:
        raise ConfigError(f"{source}: {e.args[0] if isinstance(e, KeyError) else e}") from None


def sweep_results(runs: Sequence[PlannedRun]) -> list[dict[str, Any]]:
    """One row per run: its grid values, status and final figures (from ``summary.json``)."""
    rows = []
    for run in runs:
        s = read_summary(run.out_dir) or {}
        err = run.out_dir / "error.txt"
        row: dict[str, Any] = {"run": run.key, **{k: v[0] for k, v in run.labels.items() if len(v) == 1},
                               "status": run.status()}
        row.update({k: s.get(k) for k in ("best_acc", "best_epoch", "last_acc", "last_ll", "last_cmi")})
        if row["status"] != "done" and err.is_file():
            lines = err.read_text(errors="replace").strip().splitlines()
            row["error"] = lines[0] if lines else ""
        rows.append(row)
    return rows


def format_results(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of :func:`sweep_results` rows."""
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))

    cols = ["run", "status", "best_acc", "last_acc", "last_ll", "last_cmi"]
    table = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    lines += [f"  {r['run']}: {r['error']}" for r in rows if r.get("error")]
    return "\n".join(lines)


__all__ = ["expand_recipe_grid", "format_results", "parse_grid", "run_name", "split_values", "sweep_results"]
