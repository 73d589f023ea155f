"""Cohorts in a grid: the planned students that can share a teacher pass, trained as one unit of
work (one job), with outcomes per member (:mod:`mcmi.experiments.cohort` trains a cohort)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import read_summary
from mcmi.experiments.cohort import COHORT_STAGES, CohortFailed, shared_settings, train_cohort
from mcmi.grid.plan import PlannedRun, RunOutcome


@dataclass(frozen=True)
class CohortUnit:
    """Planned runs trained as one cohort: one unit of work for the grid runners and the sweep
    scheduler (one job); outcomes stay per member."""

    members: tuple[PlannedRun, ...]

    stage = "cohort"

    @property
    def key(self) -> str:
        return f"{self.members[0].key} (+{len(self.members) - 1} in its cohort)"

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for r in self.members for d in r.deps))

    @property
    def out_dir(self) -> Path:
        return self.members[0].out_dir

    @property
    def config(self) -> Any:
        return self.members[0].config

    def status(self) -> str:
        """``done`` when every member is, ``partial`` when one has a checkpoint, else ``todo``."""
        states = [r.status() for r in self.members]
        if all(s == "done" for s in states):
            return "done"
        return "partial" if any(s != "todo" for s in states) else "todo"

    def holder(self) -> dict[str, Any] | None:
        """The lock holder of a member folder another live process trains, if any."""
        from mcmi.engine.lock import lock_holder

        for r in self.members:
            h = lock_holder(r.out_dir)
            if h is not None:
                return h
        return None

    def finished(self) -> bool:
        return all(read_summary(r.out_dir) is not None for r in self.members)


def cohort_key(run: PlannedRun) -> str | None:
    """The grouping key of a planned run (runs with equal keys form one cohort), or None for a
    run that trains alone: teachers, baselines, runs without a teacher, cached teacher logits.
    The key holds the shared settings and the run's dependencies, so a cohort waits for one set
    of runs (HSAKD students, which also need the teacher's heads, form their own cohorts)."""
    cfg = run.config
    if run.stage not in COHORT_STAGES or cfg.teacher is None or cfg.train.teacher_cache_views:
        return None
    from mcmi.engine.state import jsonable

    return json.dumps(jsonable({"shared": shared_settings(cfg), "deps": sorted(run.deps)}), sort_keys=True)


def group_cohorts(runs: Sequence[PlannedRun]) -> list[PlannedRun | CohortUnit]:
    """``runs`` with every group of two or more runs of one :func:`cohort_key` replaced by a
    :class:`CohortUnit` at its first member's place (order otherwise kept)."""
    groups: dict[str, list[PlannedRun]] = {}
    for run in runs:
        key = cohort_key(run)
        if key is not None:
            groups.setdefault(key, []).append(run)
    units: list[PlannedRun | CohortUnit] = []
    placed: set[str] = set()
    for run in runs:
        key = cohort_key(run)
        if key is None or len(groups[key]) == 1:
            units.append(run)
        elif key not in placed:
            placed.add(key)
            units.append(CohortUnit(tuple(groups[key])))
    return units


def unit_job(unit: CohortUnit) -> dict[str, Any]:
    """What a sweep job does with a cohort: train its unfinished members together; raise
    :class:`CohortFailed` (after the others finished) when some failed."""
    todo = [r for r in unit.members if read_summary(r.out_dir) is None]
    if not todo:
        return {}
    results = train_cohort([r.config for r in todo], names=[r.key for r in todo])
    bad = {k: v for k, v in results.items() if isinstance(v, BaseException)}
    if bad:
        raise CohortFailed("; ".join(f"{k}: {type(v).__name__}: {v}" for k, v in bad.items()))
    return {k: {f: v.get(f) for f in ("best_acc", "last_acc", "epochs")} for k, v in results.items()}  # type: ignore[union-attr]


def member_outcomes(unit: CohortUnit, unit_outcome: RunOutcome, before: Mapping[str, str]) -> list[RunOutcome]:
    """The per-member outcomes of a cohort the sweep scheduler ran as one unit: members done
    before are skipped, the others done or failed by their own files, all blocked if it was."""
    out = []
    for run in unit.members:
        if before.get(run.key) == "done":
            out.append(RunOutcome(run.key, "done", "skipped"))
        elif unit_outcome.result == "blocked":
            out.append(RunOutcome(run.key, before.get(run.key, ""), "blocked", unit_outcome.message))
        elif read_summary(run.out_dir) is not None:
            result = "skipped" if unit_outcome.result == "skipped" else "done"
            out.append(RunOutcome(run.key, before.get(run.key, ""), result, unit_outcome.message if result ==
                                  "skipped" else "", unit_outcome.wall_s))
        else:
            err = run.out_dir / "error.txt"
            lines = err.read_text(errors="replace").strip().splitlines() if err.is_file() else []
            out.append(RunOutcome(run.key, before.get(run.key, ""), "failed",
                                  lines[0] if lines else unit_outcome.message, unit_outcome.wall_s))
    return out


__all__ = ["CohortUnit", "cohort_key", "group_cohorts", "member_outcomes", "unit_job"]
