"""The grid engine's pieces without training: ``--only`` over labels, the in-process scheduler's
order, skips and blocking with a stand-in job, listings relative to a root, and the one command
line naming each experiment's declaration."""
from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path
from types import SimpleNamespace

import pytest

from mcmi.config import ConfigError
from mcmi.grid.command import GRID_COMMANDS
from mcmi.grid.executors import ExecutorSpec
from mcmi.grid.plan import PlannedRun, format_plan, parse_only, select_runs
from mcmi.grid.scheduler import run_plan
from mcmi.recipes import find_recipe


def run(root: Path, key: str, stage: str, deps=(), **labels) -> PlannedRun:
    return PlannedRun(key, stage, SimpleNamespace(out=str(root / key)), tuple(deps),
                      {k: (v,) for k, v in labels.items()})


@pytest.fixture
def grid(tmp_path):
    """Two tasks of a binary-like grid: a teacher per task and two students of each."""
    runs = []
    for task in ("a", "b"):
        t = f"g/{task}/teachers/r8/mll"
        runs.append(run(tmp_path, t, "teacher", task=task, kind="mll"))
        for method in ("kd", "dkd"):
            runs.append(run(tmp_path, f"g/{task}/students/{method}", "student", [t], task=task, method=method,
                            kind="mll", seed="0"))
    return runs


def test_only_selects_by_any_label_and_brings_dependencies(grid):
    keys = [r.key for r in select_runs(grid, parse_only("task=b,method=dkd"))]
    assert keys == ["g/b/teachers/r8/mll", "g/b/students/dkd"]
    assert [r.key for r in select_runs(grid, parse_only("stage=teacher"))] == ["g/a/teachers/r8/mll",
                                                                               "g/b/teachers/r8/mll"]
    assert len(select_runs(grid, parse_only(["method=kd|dkd", "method=kd"]))) == 6  # alternatives, repeats
    with pytest.raises(ConfigError, match="unknown key 'tsk'; keys: kind, method, seed, stage, task"):
        select_runs(grid, parse_only("tsk=a"))
    with pytest.raises(ConfigError, match="task=c matches nothing in this grid; known: a, b"):
        select_runs(grid, parse_only("task=c"))
    with pytest.raises(ConfigError, match="must look like key=value"):
        parse_only("kd")


class StandIn:
    """A job that 'trains' a run by writing its summary, and fails the runs in ``fail``."""

    def __init__(self, fail=()):
        self.fail, self.order = set(fail), []

    def __call__(self, r):
        self.order.append(r.key)
        if r.key in self.fail:
            raise RuntimeError(f"{r.key} broke")
        r.out_dir.mkdir(parents=True, exist_ok=True)
        (r.out_dir / "summary.json").write_text(json.dumps({"best_acc": 0.5}))
        return {}


def test_in_process_scheduler_keeps_plan_order_skips_done_and_blocks_dependents(grid):
    done = grid[1]
    done.out_dir.mkdir(parents=True)
    (done.out_dir / "summary.json").write_text("{}")
    job = StandIn(fail={"g/b/teachers/r8/mll"})
    outcomes = run_plan(grid, ExecutorSpec(executor="inprocess"), job=job)
    assert job.order == ["g/a/teachers/r8/mll", "g/a/students/dkd", "g/b/teachers/r8/mll"]
    result = {o.key: (o.result, o.message) for o in outcomes}
    assert [o.key for o in outcomes] == [r.key for r in grid]
    assert result["g/a/students/kd"] == ("skipped", "")
    assert result["g/b/teachers/r8/mll"] == ("failed", "RuntimeError: g/b/teachers/r8/mll broke")
    assert result["g/b/students/kd"] == ("blocked", "needs g/b/teachers/r8/mll, which did not finish")
    assert result["g/a/students/dkd"][0] == "done"
    # a rerun trains only what did not finish
    job = StandIn()
    outcomes = run_plan(grid, ExecutorSpec(executor="inprocess"), job=job)
    assert job.order == ["g/b/teachers/r8/mll", "g/b/students/kd", "g/b/students/dkd"]


def test_listing_is_relative_to_the_experiment_root(grid):
    text = format_plan(grid, root="g")
    assert "    1  todo     a/teachers/r8/mll" in text and "6 runs: 0 done, 0 partial, 6 todo" in text


@pytest.mark.parametrize("command", sorted(GRID_COMMANDS))
def test_every_grid_command_names_its_declaration(command):
    exp = import_module(GRID_COMMANDS[command][0]).EXPERIMENT
    assert exp.command == command
    assert find_recipe(exp.default_config).is_file()
    assert callable(import_module(exp.report).write_report)
