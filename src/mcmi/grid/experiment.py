"""An experiment is a declaration on the grid engine: its config class, how a config becomes
planned runs, what is measured after training, and its report. :func:`run_experiment` is what
every grid command does (``mcmi table1``, ``zero-shot``, ``few-shot``, ``binary``,
``semi-supervised``, ``teacher-variants``); :mod:`mcmi.grid.command` is their one command line."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from mcmi.grid.executors import ExecutorSpec
from mcmi.grid.plan import PlannedRun, RunOutcome, parse_only, select_runs


@dataclass(frozen=True)
class Experiment:
    """What a grid experiment declares.

    - ``plan(cfg)``: every planned run, in execution order (keys relative to ``cfg.out``);
    - ``report``: the module of :mod:`mcmi.reports` whose ``write_report(cfg, runs, command=...,
      outcomes=...)`` writes the report from the run folders and returns its path;
    - ``measure(cfg, runs)``: measurements the report reads that training does not write (a
      student's per-class evaluation, a teacher figure added later), done for every finished
      run that lacks them, also with ``--report-only``; None when there are none;
    - ``listing_root(cfg)``: the folder under ``out`` that ``--dry-run`` shows keys relative to.
    """

    command: str
    config_cls: type
    default_config: str
    plan: Callable[[Any], list[PlannedRun]]
    report: str
    measure: Callable[[Any, Sequence[PlannedRun]], None] | None = None
    listing_root: Callable[[Any], str] | None = None

    def write_report(self, cfg: Any, runs: Sequence[PlannedRun], *, command: str = "",
                     outcomes: Sequence[RunOutcome] = ()) -> Path:
        from importlib import import_module

        return import_module(self.report).write_report(cfg, runs, command=command, outcomes=outcomes)


def train_runs(runs: Sequence[PlannedRun], spec: ExecutorSpec | None = None, *, out: str | Path,
               cohort: bool = False) -> list[RunOutcome]:
    """Train ``runs`` (finished ones are skipped) with the executor of ``spec`` (default: one
    after another in this process). With ``cohort`` the students of one teacher and seed train
    together, one teacher forward per batch (:mod:`mcmi.grid.cohorts`; one job per cohort), into
    the same run folders. Outcomes: one per run, in the order of ``runs``."""
    from mcmi.grid.scheduler import run_plan

    units: Sequence[Any] = runs
    if cohort:
        from mcmi.grid.cohorts import group_cohorts

        units = group_cohorts(runs)
    spec = spec or ExecutorSpec(executor="inprocess")
    outcomes = run_plan(units, spec, folder=spec.folder or Path(out) / ".submitit")
    order = {r.key: i for i, r in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order.get(o.key, len(order)))


def run_experiment(exp: Experiment, cfg: Any, only: str | Sequence[str] | None = None, *, command: str = "",
                   report_only: bool = False, spec: ExecutorSpec | None = None,
                   cohort: bool = False, runs: list[PlannedRun] | None = None,
                   ) -> tuple[list[PlannedRun], list[RunOutcome], Path]:
    """Plan (unless ``runs`` holds the plan), select (``--only``), train, measure and report.
    Returns (all runs, outcomes, report path)."""
    runs = exp.plan(cfg) if runs is None else runs
    selected = select_runs(runs, parse_only(only))
    outcomes: list[RunOutcome] = []
    if not report_only:
        outcomes = train_runs(selected, spec, out=cfg.out, cohort=cohort)
    if exp.measure is not None:
        exp.measure(cfg, runs)
    return runs, outcomes, exp.write_report(cfg, runs, command=command, outcomes=outcomes)


def workers_spec(workers: int | None) -> ExecutorSpec:
    """``--workers N``: N local jobs at a time (each with cores / N torch threads); none: in process."""
    return ExecutorSpec(workers=workers) if workers else ExecutorSpec(executor="inprocess")


__all__ = ["Experiment", "run_experiment", "train_runs", "workers_spec"]
