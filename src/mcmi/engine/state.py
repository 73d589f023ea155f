"""The save/resume half of the :class:`~mcmi.engine.trainer.Trainer`: what a checkpoint holds and
how a run continues from one exactly.

A training checkpoint (``kind="train"``) holds the method state (model and extra heads; a
:class:`~mcmi.methods.base.Distiller` leaves its teacher out), the optimizer, the lr schedule,
the AMP grad scaler, the position (``epoch`` = completed epochs, ``step_in_epoch`` = batches
done in the epoch in progress, ``global_step``), the best accuracy and the full metric history,
the config and, per process (``ranks``), the RNG states and, for mid-epoch checkpoints, the
loader state and the partial sums of the epoch's metrics.

Loader contract: at an epoch boundary the trainer calls ``set_epoch(e)`` and expects the epoch's
data order and augmentation to follow from it (``TensorLoader``'s design); the saved loader
state is not restored there (a ``TensorLoader`` that made a full pass in ``method.prepare`` would
otherwise resume at the end of epoch 0). Mid-epoch it restores ``load_state_dict(saved)``, which
must continue after the batches already handed out, and does not call ``set_epoch``. A loader without ``state_dict`` is fast-forwarded instead: the RNGs are
rewound to the epoch start, the consumed batches drawn again and dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mcmi.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)
from mcmi.engine.changes import (
    FREE_KEYS,
    apply_optimizer_changes,
    check_changes,
    config_changes,
    record_changes,
)
from mcmi.engine.seed import get_rng_state, seed_everything, set_rng_state

logger = logging.getLogger(__name__)


def jsonable(x: Any) -> Any:
    """Plain JSON values: non-finite floats become None, tuples lists, unknown objects strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return str(x)


class EpochSums:
    """Running sums of one epoch's losses and accuracy, weighted by batch size (checkpointable,
    all-reducible across processes)."""

    def __init__(self) -> None:
        self.loss: dict[str, float] = {}
        self.total = 0.0
        self.correct = 0.0
        self.n = 0.0

    def add(
        self, losses: Mapping[str, Tensor], total: Tensor, logits: Tensor, labels: Tensor | None
    ) -> None:
        bs = float(logits.shape[0])
        parts = [total.detach().float().reshape(())] + [
            v.detach().float().reshape(()) for v in losses.values()
        ]
        has_acc = labels is not None and labels.dim() == 1 and not labels.dtype.is_floating_point
        if has_acc:
            parts.append((logits.detach().argmax(1) == labels).sum().float())
        vals = torch.stack(parts).double().cpu().tolist()  # one device sync per step
        self.total += vals[0] * bs
        for k, v in zip(losses, vals[1:]):
            self.loss[k] = self.loss.get(k, 0.0) + v * bs
        if has_acc:
            self.correct += vals[-1]
        self.n += bs

    def state_dict(self) -> dict[str, Any]:
        return {"loss": dict(self.loss), "total": self.total, "correct": self.correct, "n": self.n}

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> EpochSums:
        out = cls()
        out.loss, out.total, out.correct, out.n = dict(s["loss"]), s["total"], s["correct"], s["n"]
        return out

    def all_reduce(self, device: torch.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        keys = list(self.loss)  # same order on every rank: the same method produced them
        vals = [self.total, self.correct, self.n] + [self.loss[k] for k in keys]
        t = torch.tensor(vals, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        out = t.cpu().tolist()
        self.total, self.correct, self.n = out[:3]
        self.loss = dict(zip(keys, out[3:]))

    def means(self) -> dict[str, float]:
        n = max(self.n, 1.0)
        row = {"train_loss": self.total / n}
        row.update({f"train_loss_{k}": v / n for k, v in self.loss.items()})
        row["train_acc"] = self.correct / n
        return row


class CheckpointingMixin:
    """Checkpoint writing and exact resuming for :class:`~mcmi.engine.trainer.Trainer` (which
    provides the attributes used here)."""

    def _stateless_loader(self) -> bool:
        loader = self.train_loader
        return not (hasattr(loader, "state_dict") and hasattr(loader, "load_state_dict"))

    def _fast_forward(self, n: int) -> Iterator[Any]:
        """The rest of an epoch of a loader without state: rewind the RNGs, skip ``n`` batches."""
        if self._epoch_start_rng is None:
            raise CheckpointError(
                self.checkpoint_path, "mid-epoch checkpoint without the epoch-start RNG state"
            )
        now = get_rng_state()
        set_rng_state(self._epoch_start_rng)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)
        it = iter(self.train_loader)
        for _ in range(n):
            next(it)
        set_rng_state(now)
        return it

    def _rank_state(self) -> dict[str, Any]:
        mid = self.step_in_epoch > 0
        return {
            "rng": get_rng_state(),
            # saved always, restored only mid-epoch: at a boundary set_epoch(e) defines the data
            "loader": None if self._stateless_loader() else self.train_loader.state_dict(),
            "epoch_start_rng": self._epoch_start_rng if mid else None,
            "partial": self._partial.state_dict() if mid and self._partial is not None else None,
        }

    def _save_checkpoint(self) -> None:
        ranks = [self._rank_state()]
        if self.distributed:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, ranks[0])
            ranks = gathered
        if self.is_main:
            save_checkpoint(
                self.checkpoint_path,
                {
                    "kind": "train",
                    "meta": self.meta,
                    "config": self.config_dict(),
                    "method": self.method.state_dict(),
                    "method_extra": self.method.extra_state_for_checkpoint(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "ranks": ranks,
                    "world_size": self.world_size,
                    "epoch": self.epoch,
                    "step_in_epoch": self.step_in_epoch,
                    "global_step": self.global_step,
                    "best": dict(self.best),
                    "history": list(self.history),
                    "teacher_eval": getattr(self, "teacher_eval", None),
                    "elapsed_s": self.elapsed,
                    "torch_version": str(torch.__version__),
                },
            )
        if self.distributed:
            dist.barrier()

    def _save_best(self, epoch: int) -> None:
        save_checkpoint(
            self.best_path,
            {
                "kind": "model",
                "meta": self.meta,
                "config": self.config_dict(),
                "method": self.method.state_dict(),
                "epoch": epoch,
                "accuracy": self.best["acc"],
            },
            keep_previous=False,
        )

    def _load_resume_state(self, resume: Any) -> tuple[dict[str, Any], Path] | None:
        if resume is True:
            if not (self.checkpoint_path.exists() or previous_path(self.checkpoint_path).exists()):
                logger.info(
                    "resume requested but %s has no checkpoint: starting fresh", self.out_dir
                )
                return None
            return load_latest_checkpoint(self.checkpoint_path, expected=self.meta)
        return load_checkpoint(resume, expected=self.meta), Path(resume)

    def _checked_resume_state(self, resume: Any) -> tuple[dict[str, Any], Path, dict[str, Any]] | None:
        """The checkpoint a resume starts from, checked: a training checkpoint of this run whose
        configuration differs from this one only where allowed (:mod:`mcmi.engine.changes`).
        Returns ``(state, path, changes)``, or None when ``resume=True`` finds no checkpoint."""
        loaded = self._load_resume_state(resume)
        if loaded is None:
            return None
        state, path = loaded
        if state.get("kind") != "train":
            raise CheckpointError(
                path, f"a {state.get('kind')!r} checkpoint holds no training state to resume"
            )
        # a changed recipe is refused before any state is touched (mcmi.engine.changes)
        allowed = tuple(getattr(self, "allow_changes", ()))
        changes = config_changes(state.get("config"), self.config_dict())
        check_changes(path, changes, allowed)
        return state, path, changes

    def preload_resume(self, resume: Any, allow_changes: Iterable[str] = ()) -> None:
        """Read and check now the checkpoint that ``fit(resume, allow_changes)`` will resume from,
        so that a damaged or foreign checkpoint or a changed recipe fails before the run takes its
        folder (lock, ``train.log``); the resume then uses the state read here."""
        self.allow_changes = tuple(allow_changes)
        self._preloaded = (resume, self._checked_resume_state(resume)) if resume else None

    def _resume(self, resume: Any) -> Path | None:
        """Restore a checkpoint's state (``True``: ``out_dir/last.pt`` or its previous version);
        returns the file used, or None when ``resume=True`` found nothing (fresh start)."""
        preloaded, self._preloaded = getattr(self, "_preloaded", None), None
        if preloaded is not None and preloaded[0] == resume:
            checked = preloaded[1]
            if checked is not None:  # the recipe may not have changed since: check again (cheap)
                check_changes(checked[1], checked[2], tuple(getattr(self, "allow_changes", ())))
        else:
            checked = self._checked_resume_state(resume)
        if checked is None:
            return None
        state, path, changes = checked
        saved_opt = ((state.get("config") or {}).get("train") or {}).get("optimizer", "sgd")
        if saved_opt != self.cfg.optimizer:  # its state cannot carry over, even when allowed
            raise CheckpointError(
                path, f"saved by optimizer {saved_opt!r}, this run uses {self.cfg.optimizer!r}: "
                "train.optimizer cannot change on resume (--fresh starts over)"
            )
        try:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(path, f"does not fit this method/optimizer: {e}") from e
        recorded = {k: v for k, v in changes.items() if k not in FREE_KEYS or k == "train.epochs"}
        if recorded:
            applied = apply_optimizer_changes(self.optimizer, self.scheduler, recorded)
            logger.warning(
                "%s: resuming with changed settings %s (applied to the optimizer: %s)",
                path,
                ", ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in recorded.items()),
                ", ".join(applied) or "none",
            )
            if self.is_main:
                record_changes(self.out_dir, path, int(state["epoch"]), recorded,
                               tuple(getattr(self, "allow_changes", ())))
        extra = state.get("method_extra") or {}
        if extra:
            load_extra = getattr(self.method, "load_extra_state_from_checkpoint", None)
            if load_extra is None:
                logger.warning(
                    "%s: method extra state %s not restored (the method has no "
                    "load_extra_state_from_checkpoint)",
                    path,
                    sorted(extra),
                )
            else:
                load_extra(extra)
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.best, self.history = dict(state["best"]), list(state["history"])
        self.teacher_eval = state.get("teacher_eval")  # None in older checkpoints: recomputed
        self.elapsed = float(state.get("elapsed_s", 0.0))
        ranks = state["ranks"]
        if len(ranks) == self.world_size:
            mine = ranks[self.rank]
            set_rng_state(mine["rng"])
            if self.step_in_epoch and mine["loader"] is not None and not self._stateless_loader():
                try:
                    self.train_loader.load_state_dict(mine["loader"])
                except (ValueError, KeyError) as e:
                    raise CheckpointError(
                        path, f"loader state does not fit this loader: {e}"
                    ) from e
            self._epoch_start_rng = mine["epoch_start_rng"]
            self._partial = EpochSums.from_state(mine["partial"]) if mine["partial"] else None
        elif self.step_in_epoch:
            raise CheckpointError(
                path,
                f"saved mid-epoch by {len(ranks)} processes, resumed by "
                f"{self.world_size}: resume from an epoch-end checkpoint",
            )
        else:
            logger.warning(
                "%s: saved by %d processes, resumed by %d: RNGs re-seeded, the continuation "
                "is not bit-identical",
                path,
                len(ranks),
                self.world_size,
            )
            seed_everything(self.cfg.seed + self.rank + 1000 * self.epoch, self.cfg.deterministic)
        logger.info(
            "resumed from %s at epoch %d, batch %d (global step %d)",
            path,
            self.epoch + 1,
            self.step_in_epoch,
            self.global_step,
        )
        return path

    def _summary(self, resumed_from: Path | None) -> dict[str, Any]:
        from mcmi.engine.provenance import provenance

        evaluated = [r for r in self.history if "val_acc" in r]
        last_eval = evaluated[-1] if evaluated else {}
        last_row = self.history[-1] if self.history else {}
        best_row = next((r for r in evaluated if r.get("epoch") == self.best["epoch"]), {})
        return {
            "best_acc": self.best["acc"],
            "best_epoch": self.best["epoch"],
            "last_acc": last_eval.get("val_acc"),
            "last_ll": last_eval.get("val_ll"),
            "last_cmi": last_eval.get("val_cmi"),
            "last_top5": last_eval.get("val_top5"),
            "last_ece": last_eval.get("val_ece"),
            "best_top5": best_row.get("val_top5"),  # top-5 at the best (top-1) epoch
            "last_eval_epoch": last_eval.get("epoch"),
            "last_train_acc": last_row.get("train_acc"),
            "last_train_loss": last_row.get("train_loss"),
            "epochs": self.epoch,
            "global_step": self.global_step,
            "wall_time_s": self.elapsed,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "world_size": self.world_size,
            "checkpoint": str(self.checkpoint_path),
            "best_checkpoint": str(self.best_path) if self.best["epoch"] is not None else None,
            "meta": self.meta,
            "teacher": getattr(self, "teacher_eval", None),  # a distiller's teacher, eval set
            **provenance(self.device),  # mcmi_version, torch_version, git_commit, device
            "config": self.config_dict(),
        }
