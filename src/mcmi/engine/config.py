"""Settings of a training run (:class:`TrainConfig`) and the error raised when it diverges."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim import Optimizer

from mcmi.engine.schedule import SCHEDULES, LRSchedule

AMP_MODES = ("off", "bf16", "fp16", "auto")
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    """Optimization and bookkeeping settings of one training run.

    Defaults are the paper's CIFAR recipe: 240 epochs of SGD, lr 0.05, momentum 0.9, weight
    decay 5e-4, lr x0.1 at epochs 150, 180 and 210.

    Optimizers (``optimizer``): ``sgd`` (``momentum``, ``nesterov``, ``weight_decay`` added to the
    gradient, as torch's SGD) and ``adamw`` (``betas``, default (0.9, 0.999), and ``eps``, default
    1e-8, torch's defaults; ``weight_decay`` is AdamW's decoupled decay, ``p -= lr * wd * p``
    before the Adam step, with this config's default 5e-4 rather than torch's 1e-2; ``momentum``
    and ``nesterov`` are SGD's only). The paper's recipes use SGD.

    Bookkeeping: ``metrics.csv``/``metrics.jsonl`` are always written; ``loggers`` adds trackers
    (``tensorboard``, ``wandb``, ``mlflow``: :mod:`mcmi.engine.trackers`; ``csv`` names the
    files, which need no package), ``log_tensorboard=True`` is an alias of listing
    ``tensorboard``. ``log_every_steps``: a progress line (and per-step loss terms to the
    trackers) every that many optimizer steps; 0 turns both off.
    """

    epochs: int = 240
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False  # SGD only
    optimizer: str = "sgd"  # "sgd" | "adamw"
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    eps: float = 1e-8  # AdamW only
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
    log_tensorboard: bool = False  # alias of "tensorboard" in loggers
    loggers: tuple[str, ...] = ("csv",)  # csv | tensorboard | wandb | mlflow
    log_every_steps: int = 50  # progress line and per-step tracker values (0: neither)
    tracking_project: str = "mcmi"  # W&B project / MLflow experiment name
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
        from mcmi.config import require  # FieldError: a recipe names the file and train.<key>

        require(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        require(self.eval_every >= 1, "eval_every", self.eval_every, "must be >= 1")
        require(self.checkpoint_every_steps >= 0, "checkpoint_every_steps", self.checkpoint_every_steps, "must be >= 0")
        require(self.lr >= 0 and math.isfinite(self.lr), "lr", self.lr, "must be a number >= 0")
        require(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        require(self.weight_decay >= 0 and math.isfinite(self.weight_decay), "weight_decay", self.weight_decay,
                "must be >= 0")
        require(self.gamma > 0 and math.isfinite(self.gamma), "gamma", self.gamma, "must be a positive number")
        require(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        require(0 < self.warmup_start_factor <= 1, "warmup_start_factor", self.warmup_start_factor, "must be in (0, 1]")
        require(0 <= self.min_lr_factor <= 1, "min_lr_factor", self.min_lr_factor, "must be in [0, 1]")
        require(all(m >= 0 for m in self.milestones), "milestones", list(self.milestones), "must be epochs >= 0")
        if self.teacher_cache_views < 0:
            raise ValueError(f"teacher_cache_views must be >= 0, got {self.teacher_cache_views}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip}")
        require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer,
                "must be " + " or ".join(repr(o) for o in OPTIMIZERS))
        require(not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0), "nesterov",
                self.nesterov, "needs optimizer 'sgd' with momentum > 0")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), "betas",
                list(self.betas), "must be two numbers in [0, 1)")
        require(self.eps > 0 and math.isfinite(self.eps), "eps", self.eps, "must be a positive number")
        require(self.log_every_steps >= 0, "log_every_steps", self.log_every_steps, "must be >= 0")
        from mcmi.engine.trackers import check_logger_names

        self.loggers = check_logger_names(self.loggers)

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers to start: ``loggers`` less ``csv``, plus ``tensorboard`` when
        ``log_tensorboard`` is set."""
        names = [n for n in self.loggers if n != "csv"]
        if self.log_tensorboard and "tensorboard" not in names:
            names.append("tensorboard")
        return tuple(names)

    def build_optimizer(self, params: Iterable[torch.nn.Parameter]) -> Optimizer:
        """The ``optimizer`` of this config over ``params`` (every parameter in one group):
        SGD with lr, momentum, weight decay and the Nesterov flag, or AdamW with lr, betas, eps
        and decoupled weight decay."""
        params = list(params)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(
                params, lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
            )
        return torch.optim.SGD(
            params,
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
