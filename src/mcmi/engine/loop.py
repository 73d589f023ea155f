"""The inner loop of the :class:`~mcmi.engine.trainer.Trainer`: one epoch of optimization steps.

Each step: batch to the device (channels_last images if configured), forward under autocast
(bf16/fp16 if configured), ``total = sum(out.losses.values())``, a NaN/inf guard that stops
the run *before* the bad update (:class:`~mcmi.engine.config.TrainingDiverged`), backward
through the AMP grad scaler (active for fp16 only), optional global-norm clipping, the SGD step,
running sums for the epoch's row, and a step checkpoint every ``checkpoint_every_steps``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mcmi.engine.checkpoint import CheckpointError, load_latest_checkpoint
from mcmi.engine.config import TrainingDiverged
from mcmi.engine.seed import get_rng_state
from mcmi.engine.state import EpochSums

logger = logging.getLogger(__name__)


class EpochLoopMixin:
    """One training epoch for :class:`~mcmi.engine.trainer.Trainer` (which provides the
    attributes used here)."""

    def _train_epoch(self, epoch: int) -> tuple[EpochSums, float]:
        cfg = self.cfg
        self._forward_module.train()
        loader = self.train_loader
        start_step = 0
        if self.step_in_epoch and self.epoch == epoch:  # resumed mid-epoch
            start_step = self.step_in_epoch
            sums = self._partial or EpochSums()
            it = self._fast_forward(start_step) if self._stateless_loader() else iter(loader)
        else:
            sums = EpochSums()
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)  # type: ignore[attr-defined]
            self._epoch_start_rng = get_rng_state() if self._stateless_loader() else None
            it = iter(loader)
        lr = self.scheduler.set_position(epoch, start_step)[0]
        bar = self._progress(epoch, start_step)
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        for step, batch in enumerate(it, start=start_step):
            if cfg.schedule_per_step:
                self.scheduler.set_position(epoch, step)
            batch = self._to_device(batch)
            with autocast:
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
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sums.total / max(sums.n, 1):.4f}", refresh=False)
            n_every = cfg.checkpoint_every_steps
            if (
                n_every
                and self.global_step % n_every == 0
                and (self.steps_per_epoch is None or step + 1 < self.steps_per_epoch)
            ):
                self.step_in_epoch, self._partial = step + 1, sums
                self.elapsed = self._wall()
                self._save_checkpoint()
        if bar is not None:
            bar.close()
        return sums, lr

    def _progress(self, epoch: int, initial: int):
        if not (self.cfg.progress and self.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.steps_per_epoch,
            initial=initial,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            leave=False,
            dynamic_ncols=True,
        )

    def _to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
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
