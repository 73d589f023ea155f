"""Cohorts: several students distilled from one frozen teacher in one process, one teacher
forward per batch.

A cohort is a list of ordinary :class:`~mcmi.engine.trainer.Trainer` objects (the *members*,
each with its own method, optimizer, lr schedule, warm-up, run folder, checkpoints and metrics)
that share one training loader and one :class:`SharedTeacher`. :class:`CohortTrainer` draws
each batch once, moves it to the device once, and hands the same tensor to every member's
training step; the first member that asks the teacher for its features of that tensor computes
them, the others read them back. Each member then does exactly what its separate run would do
with that batch, so with one seed a cohort reproduces the separate runs:

- **Data.** The loader's order and augmentation follow from ``(seed, epoch, batch)`` alone
  (:class:`~mcmi.data.TensorLoader`), so one loader gives every member the batches its
  separate run would draw.
- **Random numbers.** Each member keeps its own copy of every global RNG (Python, NumPy,
  torch CPU and CUDA: dropout, CRD's negatives, ...), put in place before everything the member
  does (setup, steps, evaluation, checkpoints) and saved after it, so each member's streams are
  those of its separate run, and its checkpoints hold them.
- **Teacher.** The teacher runs in eval mode, under the member's autocast, on the very tensor
  the member passes; a different input (HSAKD's rotated batch) is a different cache entry,
  computed on its own. The cache is emptied before every batch. (With ``train.compile`` the
  teacher pass stays outside the members' compiled steps, so there a cohort matches its
  separate runs to float rounding, about 1e-6, rather than bit for bit.)

Members may stand at different positions (a cohort interrupted between two members'
checkpoints, a member that finished earlier): the cohort trains epoch by epoch the members that
are furthest behind, each from its own batch, until all have caught up. A member that fails
(its loss diverges, its method raises) is reported through ``on_failure`` and stops; the others
go on. ``KeyboardInterrupt`` and other non-``Exception`` errors stop the whole cohort, each
member keeping its last checkpoint.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mcmi.engine.seed import determinism_flags, get_rng_state, set_determinism_flags, set_rng_state
from mcmi.engine.state import EpochSums
from mcmi.engine.trainer import Trainer
from mcmi.models.base import Features

logger = logging.getLogger(__name__)

__all__ = ["CohortTrainer", "Member", "SharedTeacher"]


def _tensors(feats: Any) -> list[Tensor]:
    if isinstance(feats, Tensor):
        return [feats]
    if isinstance(feats, Features):
        out = [feats.logits, *feats.stages, *feats.preact]
        return out + ([feats.pooled] if feats.pooled is not None else [])
    if isinstance(feats, (list, tuple)):
        return [t for v in feats for t in _tensors(v)]
    return []


@dataclass
class _Entry:
    x: Tensor
    key: tuple[Any, ...]
    feats: Any
    versions: tuple[int, ...] = field(default=())

    def fits(self, x: Tensor, key: tuple[Any, ...]) -> bool:
        return (self.x is x and self.key == key
                and tuple(t._version for t in _tensors(self.feats)) == self.versions)


class SharedTeacher:
    """A frozen teacher shared by the members of a cohort: ``forward_features(x)`` is computed
    once per input tensor and handed back to every member that passes the same tensor.

    The teacher stays the model it is (the members' methods hold ``module`` itself: its class,
    attributes and ``isinstance`` checks, e.g. HSAKD's choice of heads by model family, are
    those of a separate run); only its ``forward_features`` is routed through this object, as an
    attribute of that one instance. Sharing is on only while :attr:`sharing` is set (the cohort
    sets it around the members' training steps of one batch; evaluation, shape probes and
    anything else run the teacher plainly). A cached result is reused only for the same tensor
    object, unmodified (same ``_version``), under the same autocast and grad settings, with its
    outputs unmodified; anything else runs the teacher. At most :attr:`max_entries` results are
    kept (the oldest goes first); :meth:`clear` empties the cache (the cohort does so before
    every batch).
    """

    def __init__(self, teacher: nn.Module) -> None:
        already = isinstance(teacher.__dict__.get("forward_features"), type(self._forward_features))
        if already:
            raise ValueError("this teacher is already shared by a cohort")
        self.module = teacher
        self._plain = teacher.forward_features  # the class's method, bound to this instance
        self._cache: list[_Entry] = []
        self.sharing = False
        self.max_entries = 4  # a batch and e.g. HSAKD's rotated copy of it
        self.forwards = 0  # teacher passes actually run while sharing
        self.reused = 0  # answered from the cache
        teacher.forward_features = self._forward_features  # every caller of this instance comes here

    @staticmethod
    def _key(x: Tensor) -> tuple[Any, ...]:
        kind = x.device.type
        amp = torch.is_autocast_enabled(kind) if kind in ("cpu", "cuda") else False
        dtype = torch.get_autocast_dtype(kind) if amp else None
        return (x._version, amp, dtype, torch.is_grad_enabled())

    @torch.compiler.disable
    def _forward_features(self, x: Tensor) -> Features:
        if not self.sharing:
            return self._plain(x)
        key = self._key(x)
        for entry in self._cache:
            if entry.fits(x, key):
                self.reused += 1
                return entry.feats
        feats = self._plain(x)
        self.forwards += 1
        self._cache.append(_Entry(x, key, feats, tuple(t._version for t in _tensors(feats))))
        del self._cache[:-self.max_entries]
        return feats

    def forward_features(self, x: Tensor) -> Features:
        return self._forward_features(x)

    def clear(self) -> None:
        self._cache.clear()


class _RNG:
    """One member's copy of the global RNGs: ``with`` puts it in place (the first time: leaves
    the current state, which the member's ``begin`` seeds) and takes it back on the way out."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None

    def __enter__(self) -> None:
        if self.state is not None:
            set_rng_state(self.state)

    def __exit__(self, *exc: object) -> None:
        self.state = get_rng_state()


@dataclass(eq=False)
class Member:
    """One student of a cohort: its name (e.g. the method), its trainer, and what became of it."""

    name: str
    trainer: Trainer
    rng: _RNG = field(default_factory=_RNG)
    resumed_from: Path | None = None
    error: BaseException | None = None
    summary: dict[str, Any] | None = None

    @property
    def alive(self) -> bool:
        return self.error is None

    @property
    def done(self) -> bool:
        return self.trainer.epoch >= self.trainer.cfg.epochs


class CohortTrainer:
    """Trains ``members`` (trainers sharing one training loader and, through their methods, one
    :class:`SharedTeacher`) batch by batch, each as its separate run would be trained.

    Args:
        members: ``(name, trainer)`` pairs; every trainer must hold the same ``train_loader``
            object, a :class:`~mcmi.data.TensorLoader` (or one with its ``state_dict`` layout),
            and the same device.
        teacher: the shared teacher (its cache is cleared before every batch), or None.
        on_failure: called with ``(name, error)`` when a member fails; it stops, the others go on.
    """

    def __init__(self, members: Sequence[tuple[str, Trainer]], teacher: SharedTeacher | None = None,
                 on_failure: Callable[[str, BaseException], None] | None = None) -> None:
        if not members:
            raise ValueError("a cohort needs at least one member")
        self.members = [Member(name, t) for name, t in members]
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"cohort members need distinct names, got {names}")
        self.loader = self.members[0].trainer.train_loader
        for m in self.members:
            t = m.trainer
            if t.train_loader is not self.loader:
                raise ValueError(f"cohort member {m.name!r} has its own training loader: members share one")
            if t.device != self.members[0].trainer.device:
                raise ValueError(f"cohort member {m.name!r} trains on {t.device}, the others on "
                                 f"{self.members[0].trainer.device}")
            if t.distributed:
                raise ValueError("a cohort trains in one process (no torchrun / data parallelism)")
        if not (hasattr(self.loader, "state_dict") and hasattr(self.loader, "load_state_dict")):
            raise ValueError("a cohort's loader must be resumable (state_dict / load_state_dict)")
        self.teacher = teacher
        self.on_failure = on_failure
        self.steps = 0  # batches drawn by this cohort (each trained by one or more members)

    # ------------------------------------------------------------------ driving
    def fit(self, resume: bool = True) -> dict[str, dict[str, Any] | BaseException]:
        """Train every member to its ``cfg.epochs``; returns each member's summary, or the error
        that stopped it, by name."""
        flags = determinism_flags()
        try:
            for m in self.members:
                self._call(m, lambda m=m: setattr(m, "resumed_from", m.trainer.begin(resume)))
            while True:
                todo = [m for m in self.members if m.alive and not m.done]
                if not todo:
                    break
                epoch = min(m.trainer.epoch for m in todo)
                self._run_epoch(epoch, [m for m in todo if m.trainer.epoch == epoch])
            for m in self.members:
                if m.alive:
                    self._call(m, lambda m=m: setattr(m, "summary", m.trainer.finish(m.resumed_from)))
        except BaseException as err:  # the whole cohort stops; each member keeps its checkpoint
            for m in self.members:
                _close(m.trainer, "killed" if isinstance(err, KeyboardInterrupt) else "failed")
            raise
        finally:
            for m in self.members:
                _close(m.trainer, "finished" if m.summary is not None else "failed")
            set_determinism_flags(flags)
        return {m.name: (m.summary if m.alive else m.error) for m in self.members}  # type: ignore[misc]

    def _call(self, m: Member, fn: Callable[[], Any]) -> Any:
        """``fn()`` with member ``m``'s RNGs; an ``Exception`` stops ``m`` alone."""
        try:
            with m.rng:
                return fn()
        except Exception as err:  # noqa: BLE001 -- one failing member must not stop the cohort
            m.error = err
            logger.error("cohort member %s failed: %s: %s", m.name, type(err).__name__, err)
            run_log = getattr(m.trainer, "_run_log", None)
            if run_log is not None and hasattr(run_log, "exception"):
                run_log.exception(err)  # its train.log, as a separate run's
            _close(m.trainer, "failed")
            if self.on_failure is not None:
                self.on_failure(m.name, err)
            return None

    def _seek(self, epoch: int, batch: int) -> None:
        state = dict(self.loader.state_dict())
        state.update(epoch=epoch, batch=batch)
        self.loader.load_state_dict(state)

    def _run_epoch(self, epoch: int, group: list[Member]) -> None:
        """Epoch ``epoch`` for the members of ``group`` (all at that epoch), each from its batch."""
        t_epoch = time.perf_counter()
        state: dict[int, tuple[EpochSums, int, float]] = {}
        for m in group:
            got = self._call(m, lambda m=m: m.trainer._begin_epoch(epoch))
            if got is not None:
                state[id(m)] = got
        group = [m for m in group if m.alive]
        if not group:
            return
        first = min(state[id(m)][1] for m in group)
        self._seek(epoch, first)
        lead = group[0].trainer
        bar = self._progress(epoch, first, lead)
        lines = {id(m): _member_progress(m.trainer, epoch, state[id(m)][1], state[id(m)][0]) for m in group}
        for step, batch in enumerate(iter(self.loader), start=first):
            live = [m for m in group if m.alive and state[id(m)][1] <= step]
            if not live:
                break
            batch = lead._to_device(batch)
            with self._sharing():
                for m in live:
                    self._call(m, lambda m=m, step=step, batch=batch: self._step(
                        m, epoch, step, batch, state[id(m)][0], lines[id(m)]))
            self.steps += 1
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        for m in group:
            if lines[id(m)] is not None:
                lines[id(m)].close()
            if m.alive:
                sums, _, lr = state[id(m)]
                self._call(m, lambda m=m, sums=sums, lr=lr: m.trainer._end_epoch(epoch, sums, lr, t_epoch))

    @staticmethod
    def _step(m: Member, epoch: int, step: int, batch: Any, sums: EpochSums, line: Any) -> None:
        m.trainer._train_step(epoch, step, batch, sums)
        if line is not None:
            line.update(step, sums, m.trainer.global_step)

    @contextmanager
    def _sharing(self):
        """The teacher's results shared for the duration of one batch, then dropped."""
        t = self.teacher
        if t is None:
            yield
            return
        t.clear()
        t.sharing = True
        try:
            yield
        finally:
            t.sharing = False
            t.clear()

    def _progress(self, epoch: int, initial: int, lead: Trainer):
        if not (lead.cfg.progress and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=lead.steps_per_epoch, initial=initial, leave=False, dynamic_ncols=True,
                    desc=f"cohort of {len(self.members)}, epoch {epoch + 1}")

    # ------------------------------------------------------------------ benchmarks
    def train_steps(self, epoch: int) -> None:
        """One pass over the loader for every live member (no evaluation, no checkpoint): what
        ``Trainer._train_epoch`` is to one run, for benchmarks."""
        group = [m for m in self.members if m.alive]
        state = {id(m): m.trainer._begin_epoch(epoch) for m in group}
        self.loader.set_epoch(epoch)
        lead = group[0].trainer
        for step, batch in enumerate(iter(self.loader)):
            batch = lead._to_device(batch)
            with self._sharing():
                for m in group:
                    with m.rng:
                        m.trainer._train_step(epoch, step, batch, state[id(m)][0])
            self.steps += 1


def _member_progress(trainer: Trainer, epoch: int, start: int, sums: EpochSums) -> Any:
    """A member's progress lines (``train.log``, its trackers' step metrics) as its separate run
    writes them, without a bar of its own (the cohort shows one bar); None where the trainer has
    no such lines."""
    make = getattr(trainer, "_progress", None)
    if make is None or not hasattr(trainer, "_show_bar"):
        return None
    trainer._show_bar = lambda: False  # type: ignore[method-assign]
    try:
        line = make(epoch, start, sums)
    except Exception:
        logger.debug("no progress lines for %s", trainer.out_dir, exc_info=True)
        return None
    return line if hasattr(line, "update") and hasattr(line, "close") else None


def _close(trainer: Trainer, status: str) -> None:
    """End a member's logs and trackers (idempotent), as ``Trainer.fit`` does at its end."""
    close = getattr(trainer, "close", None)
    if close is not None:
        close(status)
    else:
        trainer.log.close()
