"""Settings of a training run (:class:`TrainConfig`) and the error raised when it diverges."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim import Optimizer

from mcmi.engine.schedule import SCHEDULES, LRSchedule

AMP_MODES = ("off", "bf16", "fp16", "auto")


@dataclass
class TrainConfig:
    """Optimization and bookkeeping settings of one training run.

    Defaults are the paper's CIFAR recipe: 240 epochs of SGD, lr 0.05, momentum 0.9, weight
    decay 5e-4, lr x0.1 at epochs 150, 180 and 210.
    """

    epochs: int = 240
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "step"  # "step" | "cosine" | "constant"
    milestones: tuple[int, ...] = (150, 180, 210)  # 0-based epochs at which lr *= gamma
    gamma: float = 0.1
    warmup_epochs: float = 0
    warmup_start_factor: float = 0.1
    min_lr_factor: float = 0.0  # cosine floor, as a fraction of lr
    schedule_per_step: bool = False  # False: lr changes once per epoch
    amp: str = (
        "off"  # "off" | "bf16" | "fp16" | "auto" (auto: bf16, or fp16 without bf16, on CUDA only)
    )
    channels_last: bool = False
    deterministic: bool = False
    seed: int = 0
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    checkpoint_every_steps: int = 0  # 0: checkpoints at epoch ends only
    grad_clip: float | None = None  # max global grad norm
    log_tensorboard: bool = False
    progress: bool = True  # tqdm bar (still only on rank 0 and a TTY)
    find_unused_parameters: bool = False  # DDP option for methods with conditionally used heads
    # speed options (see benchmarks/bench_kd.py for what each buys)
    compile: bool = False  # torch.compile the method's step (forward + losses); may not pay on CPU
    fold_teacher_bn: bool = True  # fold a frozen teacher's batch norms into its convs (same outputs)
    # >0: K augmentation views per image with teacher logits computed once (logit-based methods
    # only; the student then sees K augmentations per image over the run, not a fresh one per epoch)
    teacher_cache_views: int = 0

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.epochs < 1 or self.eval_every < 1 or self.checkpoint_every_steps < 0:
            raise ValueError("need epochs >= 1, eval_every >= 1, checkpoint_every_steps >= 0")
        if self.teacher_cache_views < 0:
            raise ValueError(f"teacher_cache_views must be >= 0, got {self.teacher_cache_views}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")

    def build_optimizer(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.SGD:
        """SGD with this config's lr, momentum, weight decay (all parameters) and Nesterov flag."""
        return torch.optim.SGD(
            list(params),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )

    def build_schedule(self, optimizer: Optimizer, steps_per_epoch: int | None) -> LRSchedule:
        """The lr schedule of this config for ``optimizer`` (``steps_per_epoch``: per-step mode)."""
        return LRSchedule(
            optimizer,
            self.schedule,
            self.epochs,
            self.milestones,
            self.gamma,
            self.warmup_epochs,
            self.warmup_start_factor,
            self.min_lr_factor,
            per_step=self.schedule_per_step,
            steps_per_epoch=steps_per_epoch,
        )


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an ``amp`` setting on ``device`` (None: full precision)."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {mode!r}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class TrainingDiverged(RuntimeError):
    """A loss term became NaN or infinite; no update was made with it.

    Attributes: ``epoch`` (1-based), ``step`` (0-based batch index in the epoch), ``global_step``
    (optimizer steps done before), ``term`` (the named loss), ``value``, ``checkpoint`` (the last
    good checkpoint, verified loadable, or None if none loads).
    """

    def __init__(
        self,
        epoch: int,
        step: int,
        global_step: int,
        term: str,
        value: float,
        checkpoint: Path | None,
    ) -> None:
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.term, self.value, self.checkpoint = term, value, checkpoint
        where = (
            f"last good checkpoint: {checkpoint}" if checkpoint else "no loadable checkpoint exists"
        )
        super().__init__(
            f"training diverged: loss term {term!r} = {value} at epoch {epoch}, batch {step} "
            f"(global step {global_step}); {where}"
        )
