"""Learning-rate schedules of the paper: step decay and cosine, with an optional linear warmup.

The learning rate is a pure function of the training position, ``lr = base_lr * factor(t)``,
where ``t`` is the 0-based epoch (epoch-based, the default) or ``epoch + step / steps_per_epoch``
(per-step). Being a function of the position, the schedule resumes exactly: its state is the
base learning rates and the position, see :meth:`LRSchedule.state_dict`.

- ``"step"``: ``gamma ** (number of milestones <= t)``. The paper's CIFAR recipe is 240 epochs,
  lr 0.05, x0.1 at epochs 150, 180 and 210 (0-based: epoch 150 is the 151st epoch, as in the
  CRD/RepDistiller code, which decays once ``epoch > 150`` with 1-based epochs).
- ``"cosine"``: from 1 down to ``min_factor`` over ``[warmup_epochs, epochs]`` (MCMI fine-tuning).
- ``"constant"``: 1.

Warmup: for ``t < warmup_epochs`` the factor is additionally multiplied by a linear ramp from
``warmup_start_factor`` (at ``t = 0``) to 1 (at ``t = warmup_epochs``), as torch's ``LinearLR``.
The cosine decay starts after the warmup; step milestones are absolute epochs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from torch.optim import Optimizer

logger = logging.getLogger(__name__)

SCHEDULES = ("step", "cosine", "constant")


def lr_factor(
    t: float,
    kind: str,
    epochs: int,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_epochs: float = 0,
    warmup_start_factor: float = 0.1,
    min_factor: float = 0.0,
) -> float:
    """The multiplier of the base learning rate at training position ``t`` (in epochs, 0-based)."""
    if kind == "step":
        main = gamma ** sum(1 for m in milestones if t >= m)
    elif kind == "cosine":
        span = max(epochs - warmup_epochs, 1e-12)
        p = min(max((t - warmup_epochs) / span, 0.0), 1.0)
        main = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * p))
    elif kind == "constant":
        main = 1.0
    else:
        raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")
    if warmup_epochs > 0 and t < warmup_epochs:
        main *= warmup_start_factor + (1.0 - warmup_start_factor) * t / warmup_epochs
    return main


class LRSchedule:
    """A checkpointable learning-rate schedule that sets the lr of every optimizer param group.

    Each group's base lr is its ``initial_lr`` (set from its ``lr`` on first use, as torch's
    schedulers do), so groups with different base rates keep their ratio. Call
    :meth:`set_position` at the start of every epoch (and, when ``per_step``, before every step).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        kind: str = "step",
        epochs: int = 240,
        milestones: Sequence[int] = (150, 180, 210),
        gamma: float = 0.1,
        warmup_epochs: float = 0,
        warmup_start_factor: float = 0.1,
        min_factor: float = 0.0,
        per_step: bool = False,
        steps_per_epoch: int | None = None,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(SCHEDULES)}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if warmup_epochs < 0 or not 0.0 <= warmup_start_factor <= 1.0:
            raise ValueError("warmup_epochs must be >= 0 and warmup_start_factor in [0, 1]")
        if per_step and not steps_per_epoch:
            raise ValueError("a per-step schedule needs steps_per_epoch (a loader with len())")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        self.optimizer = optimizer
        self.kind = kind
        self.epochs = int(epochs)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_epochs = warmup_epochs
        self.warmup_start_factor = float(warmup_start_factor)
        self.min_factor = float(min_factor)
        self.per_step = per_step
        self.steps_per_epoch = steps_per_epoch
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.epoch = 0
        self.step = 0
        self.set_position(0, 0)

    def _definition(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "epochs": self.epochs,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "warmup_epochs": self.warmup_epochs,
            "warmup_start_factor": self.warmup_start_factor,
            "min_factor": self.min_factor,
            "per_step": self.per_step,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def position(self, epoch: int, step: int = 0) -> float:
        """The schedule's time ``t`` for batch ``step`` of 0-based ``epoch``."""
        if self.per_step:
            return epoch + step / self.steps_per_epoch  # type: ignore[operator]
        return float(epoch)

    def factor(self, epoch: int, step: int = 0) -> float:
        return lr_factor(
            self.position(epoch, step),
            self.kind,
            self.epochs,
            self.milestones,
            self.gamma,
            self.warmup_epochs,
            self.warmup_start_factor,
            self.min_factor,
        )

    def lr_at(self, epoch: int, step: int = 0) -> list[float]:
        """The learning rate of every param group at a position, without changing anything."""
        f = self.factor(epoch, step)
        return [b * f for b in self.base_lrs]

    def set_position(self, epoch: int, step: int = 0) -> list[float]:
        """Move to batch ``step`` of 0-based ``epoch`` and write the lrs into the optimizer."""
        self.epoch, self.step = int(epoch), int(step)
        lrs = self.lr_at(self.epoch, self.step)
        for g, lr in zip(self.optimizer.param_groups, lrs):
            g["lr"] = lr
        return lrs

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {
            "definition": self._definition(),
            "base_lrs": list(self.base_lrs),
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore base lrs and position; the schedule's shape stays the one this object was built
        with (so a run may be extended on resume), with a warning if it differs from the saved
        one."""
        saved = state.get("definition", {})
        diff = {k: (saved.get(k), v) for k, v in self._definition().items() if saved.get(k) != v}
        if diff:
            logger.warning("lr schedule differs from the checkpoint's (saved, now): %s", diff)
        if len(state["base_lrs"]) != len(self.base_lrs):
            raise ValueError(
                f"checkpoint schedule has {len(state['base_lrs'])} param groups, "
                f"optimizer {len(self.base_lrs)}"
            )
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        for g, b in zip(self.optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = b
        self.set_position(state["epoch"], state["step"])
