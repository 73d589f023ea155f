"""The one training loop for teachers and students: any :class:`~mcmi.methods.base.Method`.

Per epoch the :class:`Trainer` minimizes ``sum(method(batch, epoch=e).losses.values())`` with
SGD over ``method.trainable_parameters()``, evaluates ``method.model`` (accuracy, log-likelihood,
CMI; the paper's Fig. 2 curves), appends a row to ``metrics.csv``/``metrics.jsonl``, and writes a
checkpoint. Files in ``out_dir``::

    last.pt, last.prev.pt   full training state (see mcmi.engine.checkpoint), current and previous
    best.pt                 method weights at the best evaluated accuracy
    metrics.csv/.jsonl      one row per epoch (rewritten atomically from the history)
    summary.json            best/last accuracy, last LL/CMI, wall time, config
    config.json             the run's configuration
    tb/                     TensorBoard scalars (optional)

Exact resume: with a loader that has ``state_dict``/``load_state_dict``/``set_epoch`` (its state
must fully restore the data order and augmentation RNG, as of the batches handed out so far), a run
resumed from any checkpoint reproduces the uninterrupted run bit for bit on CPU in deterministic
mode. ``set_epoch(e)`` is called at the start of every epoch begun at batch 0, never for an epoch
resumed mid-way. Loaders without state are fast-forwarded (RNG rewound to the epoch start, the
consumed batches drawn again and dropped).

Epochs in rows, the summary and errors are 1-based (the row of epoch 1 is the first epoch);
inside the loop and for the schedule they are 0-based.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from mcmi.engine.checkpoint import (
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from mcmi.engine.logs import MetricsLog
from mcmi.engine.schedule import SCHEDULES, LRSchedule
from mcmi.engine.seed import determinism_flags, get_rng_state, seed_everything, set_determinism_flags, set_rng_state
from mcmi.methods.base import Method
from mcmi.metrics import evaluate

logger = logging.getLogger(__name__)

AMP_MODES = ("off", "bf16", "fp16", "auto")


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite; no update was made with it.

    Attributes: ``epoch`` (1-based), ``step`` (0-based batch index in the epoch), ``global_step``
    (optimizer steps done before), ``term`` (the named loss), ``value``, ``checkpoint`` (the last
    good checkpoint, verified loadable, or None if none exists).
    """

    def __init__(self, epoch: int, step: int, global_step: int, term: str, value: float, checkpoint: Path | None):
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.term, self.value, self.checkpoint = term, value, checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no loadable checkpoint exists"
        super().__init__(
            f"training diverged: loss term {term!r} = {value} at epoch {epoch}, batch {step} "
            f"(global step {global_step}); {where}"
        )


@dataclass
class TrainConfig:
    """Optimization and bookkeeping settings of one training run (defaults: the paper's CIFAR recipe)."""

    epochs: int = 240
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"  # "step" | "cosine" | "constant"
    milestones: tuple[int, ...] = (150, 180, 210)
    gamma: float = 0.1
    warmup_epochs: float = 0
    warmup_start_factor: float = 0.1
    min_lr_factor: float = 0.0  # cosine floor, as a fraction of lr
    schedule_per_step: bool = False  # False: lr changes once per epoch
    amp: str = "off"  # "off" | "bf16" | "fp16" | "auto" (auto: bf16/fp16 on CUDA only)
    channels_last: bool = False
    deterministic: bool = False
    seed: int = 0
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    checkpoint_every_steps: int = 0  # 0: checkpoints at epoch ends only
    grad_clip: float | None = None  # max global grad norm
    log_tensorboard: bool = False
    progress: bool = True  # tqdm bar (still only on rank 0 and a TTY)
    find_unused_parameters: bool = False  # DDP option for methods with conditionally used heads

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.epochs < 1 or self.eval_every < 1 or self.checkpoint_every_steps < 0:
            raise ValueError("need epochs >= 1, eval_every >= 1, checkpoint_every_steps >= 0")


def _resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class _EpochSums:
    """Running sums of one epoch's losses and accuracy (checkpointable, all-reducible)."""

    def __init__(self) -> None:
        self.loss: dict[str, float] = {}
        self.total = 0.0
        self.correct = 0.0
        self.n = 0.0

    def add(self, losses: Mapping[str, Tensor], total: Tensor, logits: Tensor, labels: Tensor | None) -> None:
        bs = float(logits.shape[0])
        vals = torch.stack([total.detach().float()] + [v.detach().float() for v in losses.values()]).double()
        vals = vals.cpu().tolist()
        self.total += vals[0] * bs
        for k, v in zip(losses, vals[1:]):
            self.loss[k] = self.loss.get(k, 0.0) + v * bs
        if labels is not None and labels.dim() == 1 and not labels.dtype.is_floating_point:
            self.correct += float((logits.detach().argmax(1) == labels).sum())
        self.n += bs

    def state_dict(self) -> dict[str, Any]:
        return {"loss": dict(self.loss), "total": self.total, "correct": self.correct, "n": self.n}

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> "_EpochSums":
        out = cls()
        out.loss, out.total, out.correct, out.n = dict(s["loss"]), s["total"], s["correct"], s["n"]
        return out

    def reduce(self, device: torch.device) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            return
        keys = sorted(self.loss)
        t = torch.tensor([self.total, self.correct, self.n] + [self.loss[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        vals = t.cpu().tolist()
        self.total, self.correct, self.n = vals[:3]
        self.loss = dict(zip(keys, vals[3:]))

    def means(self) -> dict[str, float]:
        n = max(self.n, 1.0)
        row = {"train_loss": self.total / n}
        row.update({f"train_loss_{k}": v / n for k, v in self.loss.items()})
        row["train_acc"] = self.correct / n
        return row


class Trainer:
    """Trains ``method`` (teacher or student objective) on ``train_loader`` and evaluates
    ``method.model`` on ``eval_loader`` each ``cfg.eval_every`` epochs.

    Args:
        method: the objective; its trainable parameters (model and extra heads) are optimized.
        train_loader: iterable of dict batches (``image``, ``label``, ``index``, ...).
        eval_loader: iterable of dict batches, or None to skip evaluation.
        cfg: :class:`TrainConfig`.
        out_dir: folder for checkpoints, metrics and the summary (written by rank 0 only).
        num_classes: number of classes, for the metrics and the checkpoint identity.
        device: where to train.
        run_config: the caller's full configuration (model, data, method...), stored in
            checkpoints, ``config.json`` and the summary.
        meta: identity of the run stored in checkpoints and checked on resume; defaults to
            the method and model class names and ``num_classes`` (pass e.g. ``{"model": "resnet56"}``).
    """

    def __init__(
        self,
        method: Method,
        train_loader: Iterable[Mapping[str, Tensor]],
        eval_loader: Iterable[Mapping[str, Tensor]] | None,
        cfg: TrainConfig,
        out_dir: str | Path,
        num_classes: int,
        device: torch.device | str = "cpu",
        *,
        run_config: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.method = method.to(self.device)
        if cfg.channels_last:
            self.method.model.to(memory_format=torch.channels_last)
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.out_dir = Path(out_dir)
        self.num_classes = int(num_classes)
        self.run_config = dict(run_config or {})
        self.meta = _jsonable({
            "method": type(method).__name__,
            "model": type(method.model).__name__,
            "num_classes": self.num_classes,
            **dict(meta or {}),
        })
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0

        self.params = list(method.trainable_parameters())
        if not self.params:
            raise ValueError(f"{type(method).__name__} has no trainable parameters")
        self.optimizer = torch.optim.SGD(
            self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
        )
        steps = len(train_loader) if hasattr(train_loader, "__len__") else None  # type: ignore[arg-type]
        self.steps_per_epoch: int | None = steps
        self.scheduler = LRSchedule(
            self.optimizer,
            cfg.schedule,
            cfg.epochs,
            cfg.milestones,
            cfg.gamma,
            cfg.warmup_epochs,
            cfg.warmup_start_factor,
            cfg.min_lr_factor,
            per_step=cfg.schedule_per_step,
            steps_per_epoch=steps,
        )
        self.amp_dtype = _resolve_amp(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        self.epoch = 0  # completed epochs = 0-based index of the epoch in progress
        self.step_in_epoch = 0  # batches done in the epoch in progress
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"acc": None, "epoch": None}
        self.elapsed = 0.0
        self._partial: _EpochSums | None = None
        self._resume_ranks: dict[str, Any] | None = None
        self._epoch_start_rng: dict[str, Any] | None = None
        self._forward_module: torch.nn.Module = self.method
        self.log = MetricsLog(self.out_dir, enabled=self.is_main, tensorboard=cfg.log_tensorboard)

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def config_dict(self) -> dict[str, Any]:
        """The run's configuration as plain JSON values (training settings and the caller's config)."""
        return _jsonable({"train": asdict(self.cfg), "run": self.run_config})

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool | str | Path = False) -> dict[str, Any]:
        """Train to ``cfg.epochs`` and return the summary (also written to ``summary.json``).

        ``resume=True`` continues from ``out_dir/last.pt`` (or ``last.prev.pt`` if that one is
        damaged), starting fresh if neither exists; a path resumes from that file. A resumed
        run does not call ``method.prepare`` again: the method's state comes from the checkpoint.
        """
        start = time.perf_counter()
        self._start_elapsed = self.elapsed
        flags = determinism_flags()
        seed_everything(self.cfg.seed + self.rank, self.cfg.deterministic)
        try:
            resumed_from = self._resume(resume) if resume else None
            if resumed_from is None:
                if self.is_main and self.checkpoint_path.exists():
                    logger.warning("%s exists and is overwritten by a fresh run (pass resume=True to continue)",
                                   self.checkpoint_path)
                self.method.prepare(self.train_loader)
                self._save_checkpoint()  # a good checkpoint exists before the first step
            if self.is_main:
                atomic_write_text(self.out_dir / "config.json", json.dumps(self.config_dict(), indent=2, default=str))
                self.log.write_rows(self.history)
            self._forward_module = self._wrap_ddp()
            self._t0, self._base = start, self._start_elapsed
            for epoch in range(self.epoch, self.cfg.epochs):
                self._run_epoch(epoch)
            summary = self._summary(resumed_from)
            if self.is_main:
                atomic_write_text(self.out_dir / "summary.json", json.dumps(_jsonable(summary), indent=2))
            return summary
        finally:
            self.log.close()
            set_determinism_flags(flags)

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.distributed:
            return self.method
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        return DDP(self.method, device_ids=ids, find_unused_parameters=self.cfg.find_unused_parameters)

    def _wall(self) -> float:
        return self._base + (time.perf_counter() - self._t0)

    def _run_epoch(self, epoch: int) -> None:
        t_epoch = time.perf_counter()
        sums, lr = self._train_epoch(epoch)
        sums.reduce(self.device)
        row: dict[str, Any] = {"epoch": epoch + 1, "global_step": self.global_step, "lr": lr, **sums.means()}
        last = epoch + 1 == self.cfg.epochs
        improved = False
        if self.eval_loader is not None and ((epoch + 1) % self.cfg.eval_every == 0 or last):
            res = evaluate(self.method.model, self.eval_loader, self.num_classes, self.device,
                           distributed=self.distributed)
            row.update(val_acc=res.accuracy, val_ll=res.log_likelihood, val_cmi=res.cmi)
            if self.best["acc"] is None or res.accuracy > self.best["acc"]:
                self.best = {"acc": res.accuracy, "epoch": epoch + 1}
                improved = True
        row["time_s"] = time.perf_counter() - t_epoch
        self.history.append(row)
        self.epoch, self.step_in_epoch, self._partial = epoch + 1, 0, None
        self.elapsed = self._wall()
        self._save_checkpoint()
        if self.is_main:
            if improved:
                save_checkpoint(self.best_path, {"kind": "model", "meta": self.meta, "config": self.config_dict(),
                                                 "method": self.method.state_dict(), "epoch": epoch + 1,
                                                 "accuracy": self.best["acc"]}, keep_previous=False)
            self.log.write_rows(self.history)
            self.log.scalars(row, epoch + 1)
            logger.info("epoch %d/%d %s", epoch + 1, self.cfg.epochs,
                        " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))

    def _train_epoch(self, epoch: int) -> tuple[_EpochSums, float]:
        cfg = self.cfg
        self._forward_module.train()
        loader = self.train_loader
        start_step = 0
        if self.step_in_epoch and self.epoch == epoch:  # resumed mid-epoch
            start_step = self.step_in_epoch
            sums = self._partial or _EpochSums()
            it = self._fast_forward(start_step) if self._stateless_loader() else iter(loader)
        else:
            sums = _EpochSums()
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)  # type: ignore[attr-defined]
            self._epoch_start_rng = get_rng_state() if self._stateless_loader() else None
            it = iter(loader)
        lr = self.scheduler.set_position(epoch, start_step)[0]
        bar = self._progress(epoch, start_step)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype is not None else nullcontext())
        step = start_step
        for step, batch in enumerate(it, start=start_step):
            if cfg.schedule_per_step:
                self.scheduler.set_position(epoch, step)
            batch = self._to_device(batch)
            with autocast:
                out = self._forward_module(batch, epoch=epoch)
            losses = out.losses
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
            if n_every and self.global_step % n_every == 0 and (
                self.steps_per_epoch is None or step + 1 < self.steps_per_epoch
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

        return tqdm(total=self.steps_per_epoch, initial=initial, desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                    leave=False, dynamic_ncols=True)

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

    # ------------------------------------------------------------------ state
    def _stateless_loader(self) -> bool:
        return not (hasattr(self.train_loader, "state_dict") and hasattr(self.train_loader, "load_state_dict"))

    def _fast_forward(self, n: int):
        """Iterator over the rest of an epoch of a loader without state: rewind RNG, skip n batches."""
        if self._epoch_start_rng is None:
            raise CheckpointError(self.checkpoint_path, "mid-epoch checkpoint without the epoch-start RNG state")
        now = get_rng_state()
        set_rng_state(self._epoch_start_rng)
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(self.epoch)  # type: ignore[attr-defined]
        it = iter(self.train_loader)
        for _ in range(n):
            next(it)
        set_rng_state(now)
        return it

    def _rank_state(self) -> dict[str, Any]:
        loader = self.train_loader
        return {
            "rng": get_rng_state(),
            "loader": loader.state_dict() if not self._stateless_loader() else None,  # type: ignore[attr-defined]
            "epoch_start_rng": self._epoch_start_rng if self.step_in_epoch else None,
            "partial": self._partial.state_dict() if self._partial is not None and self.step_in_epoch else None,
        }

    def _save_checkpoint(self) -> None:
        ranks = [self._rank_state()]
        if self.distributed:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, ranks[0])
            ranks = gathered
        if self.is_main:
            save_checkpoint(self.checkpoint_path, {
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
                "elapsed_s": self.elapsed,
                "torch_version": str(torch.__version__),
            })
        if self.distributed:
            dist.barrier()

    def _resume(self, resume: bool | str | Path) -> Path | None:
        if resume is True:
            if not (self.checkpoint_path.exists() or self.checkpoint_path.with_name("last.prev.pt").exists()):
                logger.info("resume requested but %s has no checkpoint: starting fresh", self.out_dir)
                return None
            state, path = load_latest_checkpoint(self.checkpoint_path, expected=self.meta)
        else:
            path = Path(resume)  # type: ignore[arg-type]
            state = load_checkpoint(path, expected=self.meta)
        if state.get("kind") != "train":
            raise CheckpointError(path, f"a {state.get('kind')!r} checkpoint holds no training state to resume")
        try:
            self.method.load_state_dict(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(path, f"does not fit this method/optimizer: {e}") from e
        extra = state.get("method_extra") or {}
        if extra:
            load_extra = getattr(self.method, "load_extra_state_from_checkpoint", None)
            if load_extra is None:
                logger.warning("%s: method extra state %s is not restored (method has no "
                               "load_extra_state_from_checkpoint)", path, sorted(extra))
            else:
                load_extra(extra)
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.best, self.history = dict(state["best"]), list(state["history"])
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self._start_elapsed = self.elapsed
        ranks = state["ranks"]
        if len(ranks) == self.world_size:
            mine = ranks[self.rank]
            set_rng_state(mine["rng"])
            if mine["loader"] is not None and not self._stateless_loader():
                self.train_loader.load_state_dict(mine["loader"])  # type: ignore[attr-defined]
            self._epoch_start_rng = mine["epoch_start_rng"]
            self._partial = _EpochSums.from_state(mine["partial"]) if mine["partial"] else None
        elif self.step_in_epoch:
            raise CheckpointError(path, f"saved mid-epoch by {len(ranks)} processes, resumed by {self.world_size}: "
                                        f"resume from an epoch-end checkpoint instead")
        else:
            logger.warning("%s: saved by %d processes, resumed by %d: RNG and loader states re-seeded, the "
                           "continuation is not bit-identical", path, len(ranks), self.world_size)
            seed_everything(self.cfg.seed + self.rank + 1000 * self.epoch, self.cfg.deterministic)
        logger.info("resumed from %s at epoch %d, batch %d (global step %d)", path, self.epoch + 1,
                    self.step_in_epoch, self.global_step)
        return path

    def _summary(self, resumed_from: Path | None) -> dict[str, Any]:
        evaluated = [r for r in self.history if "val_acc" in r]
        last_eval = evaluated[-1] if evaluated else {}
        last_row = self.history[-1] if self.history else {}
        return {
            "best_acc": self.best["acc"],
            "best_epoch": self.best["epoch"],
            "last_acc": last_eval.get("val_acc"),
            "last_ll": last_eval.get("val_ll"),
            "last_cmi": last_eval.get("val_cmi"),
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
            "config": self.config_dict(),
        }


def _jsonable(x: Any) -> Any:
    """Plain JSON values: non-finite floats become None, tuples lists, unknown objects strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return str(x)
