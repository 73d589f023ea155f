"""The inner loop of the :class:`~mcmi.engine.trainer.Trainer`: one epoch of optimization steps.

Each step: batch to the device (channels_last images if configured), forward under autocast
(bf16/fp16 if configured), ``total = sum(out.losses.values())``, a NaN/inf guard that stops
the run *before* the bad update (:class:`~mcmi.engine.config.TrainingDiverged`), backward
through the AMP grad scaler (active for fp16 only), optional global-norm clipping, the
optimizer step, running sums for the epoch's row, and a step checkpoint every
``checkpoint_every_steps``; progress (a bar, or a line every ``log_every_steps``) as in
:mod:`mcmi.engine.progress`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mcmi.checkpoint import CheckpointError, load_latest_checkpoint
from mcmi.data.batch import DEFAULT_FIELDS, as_batch
from mcmi.engine.config import TrainingDiverged
from mcmi.engine.progress import StepProgress, interactive
from mcmi.engine.seed import get_rng_state
from mcmi.engine.state import EpochSums

logger = logging.getLogger(__name__)


class EpochLoopMixin:
    """One training epoch for :class:`~mcmi.engine.trainer.Trainer` (which provides the
    attributes used here)."""

    def _train_epoch(self, epoch: int) -> tuple[EpochSums, float]:
        sums, start_step, lr = self._begin_epoch(epoch)
        it = self._epoch_iterator(epoch, start_step)
        progress = self._progress(epoch, start_step, sums)
        for step, batch in enumerate(it, start=start_step):
            self._train_step(epoch, step, self._to_device(batch), sums)
            progress.update(step, sums, self.global_step)
        progress.close()
        return sums, lr

    def _begin_epoch(self, epoch: int) -> tuple[EpochSums, int, float]:
        """Train mode, the epoch's running sums (restored ones when resumed mid-epoch), the
        first batch to train and the epoch's lr."""
        self._forward_module.train()
        if self.step_in_epoch and self.epoch == epoch:  # resumed mid-epoch
            start_step, sums = self.step_in_epoch, self._partial or EpochSums()
        else:
            start_step, sums = 0, EpochSums()
        lr = self.scheduler.set_position(epoch, start_step)[0]
        return sums, start_step, lr

    def _epoch_iterator(self, epoch: int, start_step: int):
        """The batches of ``epoch`` from ``start_step`` on (see :mod:`mcmi.engine.state`)."""
        loader = self.train_loader
        if start_step:
            return self._fast_forward(start_step) if self._stateless_loader() else iter(loader)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)  # type: ignore[attr-defined]
        self._epoch_start_rng = get_rng_state() if self._stateless_loader() else None
        return iter(loader)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_step(self, epoch: int, step: int, batch: Mapping[str, Any], sums: EpochSums) -> None:
        """One optimization step on ``batch`` (already on the device), batch ``step`` of
        ``epoch``: forward, NaN guard, backward, SGD, sums, and a step checkpoint when due."""
        cfg = self.cfg
        if cfg.schedule_per_step:
            self.scheduler.set_position(epoch, step)
        with self._autocast():
            out = self._forward_module(batch, epoch=epoch)
        losses = out.losses
        if not losses:
            raise ValueError(f"{type(self.method).__name__} returned no losses")
        total = sum(losses.values())
        if not self._all_finite(total):
            self._diverged(epoch, step, losses)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        sums.add(losses, total, out.logits, batch.get("label"))
        n_every = cfg.checkpoint_every_steps
        if (
            n_every
            and self.global_step % n_every == 0
            and (self.steps_per_epoch is None or step + 1 < self.steps_per_epoch)
        ):
            self.step_in_epoch, self._partial = step + 1, sums
            self.elapsed = self._wall()
            self._save_checkpoint()

    def _progress(self, epoch: int, initial: int, sums: EpochSums) -> StepProgress:
        """The epoch's bar (rank 0, ``cfg.progress``, a terminal) or progress lines every
        ``cfg.log_every_steps`` steps (console and ``train.log``; ``train.log`` only under a
        bar), and the per-step values for the trackers (:mod:`mcmi.engine.progress`)."""
        bar = self._show_bar()
        emit = None
        if self.is_main:
            emit = self._run_log.file_only if bar else logger.info
        return StepProgress(
            epoch=epoch,
            epochs=self.cfg.epochs,
            steps_per_epoch=self.steps_per_epoch,
            start_step=initial,
            sums=sums,
            every=self.cfg.log_every_steps if self.is_main else 0,
            bar=bar,
            world_size=self.world_size,
            emit=emit,
            on_step=self.trackers.log_metrics,
            lr=lambda: self.optimizer.param_groups[0]["lr"],
        )

    def _show_bar(self) -> bool:
        return bool(self.cfg.progress and self.is_main and interactive())

    def _to_device(self, batch: Any) -> dict[str, Any]:
        # (x, y), (x, y, index) or a dict: one form from here on (mcmi.data.batch.as_batch)
        batch = as_batch(batch, getattr(self.method, "tuple_fields", DEFAULT_FIELDS))
        out = {}
        for k, v in batch.items():
            if torch.is_tensor(v):
                v = v.to(self.device, non_blocking=True)
                if k == "image" and self.cfg.channels_last and v.dim() == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    def _all_finite(self, total: Tensor) -> bool:
        ok = torch.isfinite(total.detach()).all()
        if self.distributed:  # every rank must stop together, or the others hang in all-reduce
            flag = ok.to(self.device, torch.int32).reshape(1)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            ok = flag[0] > 0
        return bool(ok)

    def _diverged(self, epoch: int, step: int, losses: Mapping[str, Tensor]) -> None:
        bad = [k for k, v in losses.items() if not bool(torch.isfinite(v.detach()).all())]
        term = bad[0] if bad else "<another rank>"
        value = float(losses[term].detach().float().sum()) if bad else math.nan
        good = None
        if self.is_main:
            try:
                _, good = load_latest_checkpoint(self.checkpoint_path, expected=self.meta)
            except CheckpointError as e:
                logger.error("no loadable checkpoint after divergence: %s", e)
        logger.error("loss term %r is %s at epoch %d batch %d", term, value, epoch + 1, step)
        raise TrainingDiverged(epoch + 1, step, self.global_step, term, value, good)
