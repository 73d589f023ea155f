"""Planned runs of an experiment grid: what each run is, which runs it needs, how ``--only`` picks
runs, and what state their folders are in (done, partial, todo; a changed recipe).

A grid is a list of :class:`PlannedRun` in execution order, each an ordinary
:class:`~mcmi.experiments.train.RunConfig` trained into ``<out>/<key>``. ``labels`` name the run's
coordinates in the grid (pair, teacher, student, method, kind, seed, and an experiment's own:
cell, task); :func:`select_runs` filters on them and the reports read them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from mcmi.config import ConfigError, flatten
from mcmi.engine.rundir import error_note, read_summary, run_status

#: stages of the runs that train a teacher (``--only stage=teacher`` selects them directly)
TEACHER_STAGES = ("teacher", "mcmi", "prep")


@dataclass(frozen=True)
class TeacherEval:
    """What a teacher run measures after training (``teacher_eval.json``, the paper's Table 1
    rows): its ``checkpoint`` (``last``/``best``) on the training set in ``view``
    (:mod:`mcmi.metrics.train_view`) with augmentation draws from ``seed``."""

    checkpoint: str = "last"
    view: str = "train-plain"
    seed: int = 0


@dataclass(frozen=True)
class PlannedRun:
    """One training run of a grid: its folder (``key`` under the grid's ``out``), stage, recipe
    and the runs whose checkpoints it reads. ``labels`` serve ``--only`` and the reports;
    ``evaluate`` (teachers) asks for a ``teacher_eval.json`` once trained."""

    key: str
    stage: str  # "teacher" | "mcmi" | "prep" | "baseline" | "student" | "run"
    config: object  # a RunConfig (typed loosely: the grid layer does not build it)
    deps: tuple[str, ...] = ()
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    evaluate: TeacherEval | None = None

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out)  # type: ignore[attr-defined]

    @property
    def eval_view(self) -> str:
        return self.evaluate.view if self.evaluate else "train-plain"

    @property
    def eval_seed(self) -> int:
        return self.evaluate.seed if self.evaluate else 0

    def label(self, key: str) -> str:
        values = self.labels.get(key, ())
        return values[0] if len(values) == 1 else ""

    def status(self) -> str:
        """``done`` (summary.json), ``partial`` (a checkpoint to resume from) or ``todo``."""
        return run_status(self.out_dir)

    def finished(self) -> bool:
        return read_summary(self.out_dir) is not None

    def holder(self) -> dict | None:
        """The live process training this run's folder (its ``run.lock``), if any."""
        from mcmi.engine.lock import lock_holder

        return lock_holder(self.out_dir)


@dataclass
class RunOutcome:
    """What the scheduler did with one run: ``skipped`` (done before), ``done``, ``failed``, ``blocked``."""

    key: str
    before: str
    result: str
    message: str = ""
    wall_s: float = 0.0


def outcome_counts(outcomes: Sequence[RunOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


# ----------------------------------------------------------------------------------- --only
def parse_only(spec: str | Sequence[str] | None) -> dict[str, set[str]]:
    """``"method=kd|dkd,pair=resnet56-resnet20"`` -> ``{"method": {"kd", "dkd"}, "pair": {...}}``.

    Clauses are separated by commas (or given as several strings); ``|`` separates alternatives;
    a key given twice accepts the values of both. The keys are checked against the grid's labels
    by :func:`select_runs`."""
    items = [spec] if isinstance(spec, str) else list(spec or [])
    out: dict[str, set[str]] = {}
    for item in items:
        for clause in item.split(","):
            clause = clause.strip()
            if not clause:
                continue
            if "=" not in clause:
                raise ConfigError(f"--only clause {clause!r} must look like key=value")
            key, value = (s.strip() for s in clause.split("=", 1))
            values = {v.strip() for v in value.split("|") if v.strip()}
            if not values:
                raise ConfigError(f"--only clause {clause!r} has no value")
            out.setdefault(key, set()).update(values)
    return out


def _labels(run: PlannedRun) -> dict[str, tuple[str, ...]]:
    labels = dict(run.labels)
    if run.stage in TEACHER_STAGES:
        labels["stage"] = ("teacher",)
    return labels


def select_runs(runs: Sequence[PlannedRun], only: Mapping[str, set[str]] | None) -> list[PlannedRun]:
    """The runs matching ``only`` (all when empty) plus the runs they depend on, in grid order.

    Without a ``stage`` clause only students and baselines are matched; teachers come in as
    dependencies. ``stage=teacher`` selects teacher runs (MLL, MCMI, preparations) directly.
    A key no run carries, or a value no run has, is a :class:`~mcmi.config.ConfigError` listing
    the known ones."""
    if not only:
        return list(runs)
    keys = sorted({k for r in runs for k in _labels(r)})
    for key, values in only.items():
        if key not in keys:
            raise ConfigError(f"--only: unknown key {key!r}; keys: {', '.join(keys)}")
        known = {v for r in runs for v in _labels(r).get(key, ())}
        unknown = sorted(values - known)
        if unknown:
            raise ConfigError(f"--only {key}={unknown[0]} matches nothing in this grid; known: {', '.join(sorted(known))}")
    direct = [r for r in runs if (r.stage in ("student", "baseline", "run") or "stage" in only)
              and all(any(v in values for v in _labels(r).get(k, ())) for k, values in only.items())]
    by_key = {r.key: r for r in runs}
    wanted: set[str] = set()
    stack = [r.key for r in direct]
    while stack:
        key = stack.pop()
        if key in wanted:
            continue
        wanted.add(key)
        stack.extend(d for d in by_key[key].deps if d in by_key)
    return [r for r in runs if r.key in wanted]


# ----------------------------------------------------------------------------------- status
#: settings a finished run may differ in without its recipe having changed
VOLATILE = ("out", "device", "model.weights", "teacher.weights", "train.progress", "train.log_tensorboard",
            "data.root", "data.eval_batch_size")


def config_drift(run: PlannedRun, summary: Mapping | None = None) -> list[str]:
    """Settings of a finished run that differ from what the grid now asks (paths, device and
    progress bars aside): a done run is never retrained, so a changed recipe shows up here."""
    from mcmi.engine.state import jsonable

    summary = summary if summary is not None else read_summary(run.out_dir)
    stored = ((summary or {}).get("config") or {}).get("run")
    if not isinstance(stored, Mapping):
        return []
    want = flatten(jsonable(asdict(run.config)))  # type: ignore[call-overload]
    have = flatten(stored)
    volatile = VOLATILE + tuple(f"method_args.{a}" for a in _checkpoint_args(run))
    skip = lambda k: any(k == v or k.startswith(v + ".") for v in volatile)  # noqa: E731
    # keys on one side only count for method arguments (user data); elsewhere they are fields
    # added to RunConfig after the run, not changes of its recipe
    keys = (want.keys() & have.keys()) | {k for k in want.keys() ^ have.keys() if k.startswith("method_args.")}
    missing = object()
    return sorted(k for k in keys if not skip(k) and want.get(k, missing) != have.get(k, missing))


def _checkpoint_args(run: PlannedRun) -> tuple[str, ...]:
    """Method arguments that name another run's checkpoint (a teacher preparation's): paths."""
    from mcmi.methods import method_class

    try:
        prep = getattr(method_class(run.config.method), "teacher_prep", None)  # type: ignore[attr-defined]
    except KeyError:
        return ()
    return (prep.arg,) if prep is not None else ()


def format_plan(runs: Sequence[PlannedRun], root: str | Path | None = None) -> str:
    """The ``--dry-run`` listing: one line per run with its status (done / partial / todo) and
    notes (a changed recipe, the last error, the process training it now). Keys are shown
    relative to ``root`` when given (a folder under the grid's ``out``)."""
    from mcmi.engine.lock import describe, lock_holder

    lines = []
    counts: dict[str, int] = {}
    for i, run in enumerate(runs, 1):
        status = run.status()
        counts[status] = counts.get(status, 0) + 1
        notes = []
        if status == "done":
            drift = config_drift(run)
            if drift:
                notes.append("recipe changed since: " + ", ".join(drift[:4]) + (" ..." if len(drift) > 4 else ""))
        else:
            holder = lock_holder(run.out_dir)
            if holder is not None:
                notes.append(f"training now: {describe(holder)}")
            note = error_note(run.out_dir)
            if note:
                notes.append(note)
        key = run.key
        if root is not None and key.startswith(f"{root}/"):
            key = key[len(str(root)) + 1:]
        lines.append(f"{i:5d}  {status:7s}  {key}" + (f"  ({'; '.join(notes)})" if notes else ""))
    total = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "partial", "todo"))
    lines.append(f"{len(runs)} runs: {total}")
    return "\n".join(lines)


__all__ = ["PlannedRun", "RunOutcome", "TEACHER_STAGES", "TeacherEval", "config_drift", "format_plan",
           "outcome_counts", "parse_only", "select_runs"]
