"""Cohorts of runs: students of one teacher and seed trained in one process, one teacher forward
per batch (:mod:`mcmi.engine.cohort` is the engine).

- ``mcmi distill --cohort kd,dkd,at --config R --out OUT``: :func:`cohort_configs` turns one
  recipe into one :class:`~mcmi.experiments.train.RunConfig` per method (``OUT/<method>``,
  each a normal run folder), :func:`train_cohort` trains them together.
- The grids (``table1``, ``few-shot``, ``zero-shot``, ..., ``sweep``) with ``--cohort``:
  :func:`mcmi.grid.cohorts.group_cohorts` groups the planned students that can share a teacher
  pass into units, each one job of the grid's scheduler (:class:`~mcmi.grid.jobs.TrainJob`, in
  this process or as a submitit job) that calls :func:`train_cohort`. The run folders, their
  paths and files are those of the separate runs.

Members of one cohort must agree on what the shared loader and teacher pass depend on
(:data:`SHARED_FIELDS`: the teacher, the data, the seed, the device, ...); they may differ in
everything else (student, method and its arguments, lr, schedule, epochs). With one seed a
member trains exactly as its separate run would (same weights on CPU, tested).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mcmi.engine.rundir import write_error
from mcmi.experiments.train import RunConfig

log = logging.getLogger(__name__)

#: What the members of a cohort share, as ``RunConfig`` paths: the training batches depend on
#: the data, seed, device and memory format; the teacher pass on the teacher, batch-norm folding,
#: autocast and determinism switches.
SHARED_FIELDS = ("teacher", "data", "device", "train.seed", "train.channels_last", "train.amp",
                 "train.fold_teacher_bn", "train.deterministic", "train.compile")
#: Stages of planned runs that join cohorts: students with a teacher (grids) and recipe-grid runs.
COHORT_STAGES = ("student", "run")


class CohortFailed(RuntimeError):
    """Some members of a cohort failed (each has its ``error.txt``); the others finished."""


def _field(cfg: RunConfig, path: str) -> Any:
    value: Any = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return asdict(value) if hasattr(value, "__dataclass_fields__") else value


def shared_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that every member of its cohort must have (:data:`SHARED_FIELDS`)."""
    return {path: _field(cfg, path) for path in SHARED_FIELDS}


def check_cohort(cfgs: Sequence[RunConfig]) -> None:
    """Raise ``ValueError`` naming the first setting the members disagree on, or what a cohort
    cannot do (no teacher, cached teacher logits, two members in one folder)."""
    if not cfgs:
        raise ValueError("a cohort needs at least one member")
    want = shared_settings(cfgs[0])
    for cfg in cfgs:
        if cfg.teacher is None:
            raise ValueError(f"{cfg.out}: method {cfg.method!r} has no teacher; a cohort shares one")
        if cfg.train.teacher_cache_views:
            raise ValueError(f"{cfg.out}: train.teacher_cache_views changes the recipe (K fixed views); a "
                             "cohort already runs the teacher once per batch for all its members")
        have = shared_settings(cfg)
        for key in SHARED_FIELDS:
            if have[key] != want[key]:
                raise ValueError(f"cohort members differ in {key}: {cfgs[0].out} has {want[key]!r}, "
                                 f"{cfg.out} has {have[key]!r}")
    outs = [str(Path(c.out)) for c in cfgs]
    if len(set(outs)) != len(outs):
        raise ValueError(f"two cohort members share a run folder: {outs}")


# ------------------------------------------------------------------------- mcmi distill --cohort
def split_member_overrides(overrides: Sequence[str], methods: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
    """``["train.epochs=5", "dkd:method_args.beta=8"]`` -> common overrides and, per member, its
    own (``<method>:key=value``)."""
    common: list[str] = []
    per: dict[str, list[str]] = {m: [] for m in methods}
    for item in overrides:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head and "." not in head:
            if head not in per:
                raise ValueError(f"override {item!r} names {head!r}, which is not in the cohort {list(methods)}")
            per[head].append(rest)
        else:
            common.append(item)
    return common, per


def cohort_configs(path: str | Path | None, overrides: Sequence[str], methods: Sequence[str],
                   out: str | Path | None = None) -> list[RunConfig]:
    """One RunConfig per method of ``methods``: what ``mcmi distill --config <path> <overrides>
    method=<m> out=<out>/<m>`` would train (``out`` default: the recipe's), student defaults
    included (:mod:`mcmi.experiments.student_defaults`).

    The recipe's ``method_args`` (and ``method_args.*`` overrides without a member prefix) are the
    arguments of the recipe's ``method``: they go to that member only, the others start from their
    defaults; ``<m>:method_args.key=value`` sets member ``m``'s own (and ``<m>:key=value`` any
    other setting of that member alone)."""
    from mcmi.config import build, deep_merge, load_yaml, parse_overrides

    methods = [m.strip() for m in methods if m.strip()]
    if not methods:
        raise ValueError("--cohort needs at least one method, e.g. --cohort kd,dkd,at")
    if len(set(methods)) != len(methods):
        raise ValueError(f"--cohort lists a method twice: {methods}")
    common, per = split_member_overrides(overrides, methods)
    data = deep_merge(load_yaml(path) if path else {}, parse_overrides(common))
    base_method = data.get("method", RunConfig.method)
    root = Path(out if out is not None else data.get("out", RunConfig.out))
    cfgs = []
    for m in methods:
        own = [f"method={m}", *per[m], f"out={root / m}"]
        d = copy.deepcopy(data)
        if m != base_method:
            d["method_args"] = {}
        d = deep_merge(d, parse_overrides(own))
        try:
            from mcmi.experiments.student_defaults import (
                apply_student_defaults,
                recipe_explicit_keys,
            )
        except ImportError:  # pragma: no cover - an mcmi without per-student defaults
            pass
        else:
            apply_student_defaults(d, recipe_explicit_keys(path, [*common, *own]))
        cfgs.append(build(RunConfig, d, source=f"{path or '<defaults>'} + overrides, cohort member {m}"))
    return cfgs


def train_cohort(cfgs: Sequence[RunConfig], names: Sequence[str] | None = None,
                 resume: bool = True) -> dict[str, dict[str, Any] | BaseException]:
    """Train ``cfgs`` as one cohort; returns each member's summary or the error that stopped it,
    by name (default: the run folder).

    Each member's folder is locked as a separate run's is (a member another process trains is
    left to it: its result is the :class:`~mcmi.engine.lock.RunLockedError`). A member that fails
    gets its ``error.txt`` and stops; a member that finishes loses a stale one. A failure of what
    all share (the data) raises."""
    import torch

    from mcmi.engine.cohort import CohortTrainer, SharedTeacher
    from mcmi.engine.distributed import distributed_context
    from mcmi.engine.lock import RunLock, RunLockedError
    from mcmi.experiments.train import build_loaders, build_trainer, resolve_device

    cfgs = list(cfgs)
    names = [str(c.out) for c in cfgs] if names is None else list(names)
    if len(names) != len(cfgs) or len(set(names)) != len(names):
        raise ValueError("a cohort needs one distinct name per member")
    check_cohort(cfgs)
    device = resolve_device(cfgs[0].device)
    _, world = distributed_context(device)
    if world > 1:
        raise ValueError("a cohort trains in one process: start it without torchrun")
    results: dict[str, dict[str, Any] | BaseException] = {}
    out_of = dict(zip(names, (Path(c.out) for c in cfgs)))

    def failed(name: str, err: BaseException) -> None:
        results[name] = err
        if not isinstance(err, RunLockedError):
            write_error(out_of[name], err)

    with ExitStack() as stack:
        live: list[tuple[str, RunConfig]] = []
        for name, cfg in zip(names, cfgs):
            try:
                stack.enter_context(RunLock(cfg.out))
                live.append((name, cfg))
            except RunLockedError as err:
                log.warning("cohort: %s", err)
                failed(name, err)
        if not live:
            return results
        first = live[0][1]
        loaders = build_loaders(first.data, device, first.train.seed, first.train.channels_last)
        shared: list[SharedTeacher] = []

        def share(teacher: torch.nn.Module) -> torch.nn.Module:
            if not shared:  # later members rebuilt theirs only to draw the same random numbers
                shared.append(SharedTeacher(teacher))
            return shared[0].module

        members = []
        for name, cfg in live:
            try:
                members.append((name, build_trainer(cfg, device, loaders=loaders, share_teacher=share)))
            except Exception as err:  # noqa: BLE001 -- a member that cannot be built stops alone
                log.error("cohort member %s cannot be built: %s", name, err)
                failed(name, err)
        if not members:
            return results
        teacher = shared[0] if shared else None
        if teacher is not None:
            teacher.clear()  # shape probes of the methods' constructors
        log.info("cohort of %d: %s", len(members), ", ".join(n for n, _ in members))
        cohort = CohortTrainer(members, teacher, on_failure=failed)
        for name, res in cohort.fit(resume=resume).items():
            results[name] = res
            if not isinstance(res, BaseException):
                (out_of[name] / "error.txt").unlink(missing_ok=True)
        if teacher is not None:
            log.info("cohort: %d teacher passes for %d batches, %d answered from the shared pass",
                     teacher.forwards, cohort.steps, teacher.reused)
    return results


__all__ = ["COHORT_STAGES", "SHARED_FIELDS", "CohortFailed", "check_cohort", "cohort_configs", "shared_settings",
           "split_member_overrides", "train_cohort"]
