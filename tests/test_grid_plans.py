"""Every shipped grid config plans the same runs with the same recipes as the code before the
grid engine (commit 77e9d09): run keys and order, stages, the folders each run reads
(dependencies), the teacher evaluation view, ``--only`` labels and the whole resolved
``RunConfig`` of every run (lr, epochs, method arguments with the per-pair defaults, data
reductions, ...). ``tests/test_grid_golden.py`` checks the listings and reports; this checks what
each run would train.

The files in ``tests/golden_plans/`` were dumped from 77e9d09 with its own planning functions
(``expand_grid``, ``shots.expand``, ``binary.plan``, ``semi_supervised.plan``,
``teacher_variants.expand``), dependencies resolved to folders under ``out`` and ``out``
written as ``<OUT>``. Since then the engine only added labels (``task`` on binary runs), which
:data:`ADDED_LABELS` lists. ``python tests/test_grid_plans.py --write`` rewrites them from the
current code, for a reviewed change of what the grids train.
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import logging
from importlib import import_module
from pathlib import Path

import pytest

from mcmi.config import flatten, load_config
from mcmi.engine.state import jsonable
from mcmi.grid.command import GRID_COMMANDS
from mcmi.recipes import find_recipe

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden_plans"
OUT = "/nonexistent/grid-plans"  # never created: planning writes nothing
#: labels the grid engine added to runs after the golden files were dumped
ADDED_LABELS = {"task"}
#: grid config -> its command
GRIDS = {
    "table1_tinyimagenet_cpu": "table1", "table1_cifar100": "table1",
    "zero_shot_cifar10_cpu": "zero-shot", "zero_shot_tinyimagenet_cpu": "zero-shot",
    "zero_shot_cifar100": "zero-shot", "zero_shot_cifar10": "zero-shot",
    "few_shot_tinyimagenet_cpu": "few-shot", "few_shot_cifar100": "few-shot",
    "binary_cpu": "binary", "binary_cifar10_partial_cpu": "binary", "binary_cifar": "binary",
    "semi_supervised_cifar10_cpu": "semi-supervised", "semi_supervised_cifar10": "semi-supervised",
    "teacher_variants_tinyimagenet_cpu": "teacher-variants", "teacher_size_tinyimagenet_cpu": "teacher-variants",
    "mcmi_lr_tinyimagenet_cpu": "teacher-variants", "teacher_variants_cifar100": "teacher-variants",
}


def plan_records(name: str) -> list[dict]:
    """The planned runs of grid config ``name`` (current code) as the golden files hold them."""
    exp = import_module(GRID_COMMANDS[GRIDS[name]][0]).EXPERIMENT
    cfg = load_config(exp.config_cls, find_recipe(name), [f"out={OUT}"])
    records = []
    for run in exp.plan(cfg):
        rec = {"key": run.key, "stage": run.stage, "deps": list(run.deps),
               "labels": {k: list(v) for k, v in run.labels.items()},
               "eval": [run.eval_view, run.eval_seed], "config": jsonable(dataclasses.asdict(run.config))}
        records.append(json.loads(json.dumps(rec, sort_keys=True).replace(OUT, "<OUT>")))
    return records


def golden(name: str) -> list[dict]:
    return json.loads(gzip.decompress((GOLDEN / f"{name}.json.gz").read_bytes()))


def _without_added_labels(records: list[dict]) -> list[dict]:
    return [{**r, "labels": {k: v for k, v in r["labels"].items() if k not in ADDED_LABELS}} for r in records]


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_grid_plans_what_it_planned_before(name):
    logging.getLogger("mcmi").setLevel(logging.WARNING)  # the student-defaults summary line
    now, want = _without_added_labels(plan_records(name)), golden(name)
    assert [r["key"] for r in now] == [r["key"] for r in want], "run keys or their order changed"
    for a, b in zip(now, want):
        for field in ("stage", "deps", "eval", "labels"):
            assert a[field] == b[field], f"{a['key']}: {field} {a[field]} != {b[field]}"
        x, y = flatten(a["config"]), flatten(b["config"])
        changed = {k: (y.get(k), x.get(k)) for k in sorted(x.keys() | y.keys()) if x.get(k) != y.get(k)}
        assert not changed, f"{a['key']}: the recipe changed (key: (before, now)): {changed}"


def test_golden_plans_are_those_of_the_grids():
    assert sorted(p.name.removesuffix(".json.gz") for p in GOLDEN.glob("*.json.gz")) == sorted(GRIDS)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help="rewrite tests/golden_plans/ from the current code")
    if not p.parse_args().write:
        p.error("nothing to do: pass --write (pytest runs the comparison)")
    GOLDEN.mkdir(exist_ok=True)
    for name in sorted(GRIDS):
        text = json.dumps(plan_records(name), indent=1, sort_keys=True) + "\n"
        (GOLDEN / f"{name}.json.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
        print(f"wrote {GOLDEN / name}.json.gz")


if __name__ == "__main__":
    main()
