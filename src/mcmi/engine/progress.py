"""Progress of a training epoch on rank 0: a tqdm bar on a terminal, progress lines elsewhere.

Where the output is a terminal (``sys.stderr``, where both the bar and the log lines go) the
epoch has a tqdm bar; elsewhere (SLURM, nohup, ``2> file``) a line every ``every`` optimizer
steps, e.g. (one line)::

    epoch 3/240 step 150/782 loss 1.2345 (ce 0.9821, kd 0.2524) lr 0.05 1830 img/s
    eta 0:00:31 (run 3:04:05)

``loss`` and its terms are the means over the steps since the previous line (on rank 0's
batches), ``img/s`` the throughput over those steps times the number of processes, the ETAs
extrapolate the time per step of the epoch so far to the rest of the epoch and of the run
(evaluation time not included). With a bar the same lines still go to ``train.log`` only. Every
``every`` steps, bar or not, the same interval means go to the trackers as ``step/...`` values.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from mcmi.engine.state import EpochSums


def interactive() -> bool:
    """Whether progress is shown as a bar: ``sys.stderr`` is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def format_duration(seconds: float) -> str:
    """``3725.2`` -> ``1:02:05``; ``?`` when unknown."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eval_progress(loader: Iterable[Any], desc: str, bar: bool) -> Iterable[Any]:
    """``loader`` itself, or wrapped in a transient tqdm bar when ``bar``."""
    if not bar:
        return loader
    from tqdm import tqdm

    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    return tqdm(loader, total=total, desc=desc, leave=False, dynamic_ncols=True)


class StepProgress:
    """Progress of one epoch (see the module docstring).

    Args:
        epoch: 0-based epoch; ``epochs``: their number.
        steps_per_epoch: batches per epoch (None: unknown, no total and no ETA).
        start_step: first batch of this pass (a resumed epoch starts past 0).
        sums: the epoch's running sums, as they stand at ``start_step``.
        every: steps between two lines / tracker updates (0: none).
        bar: show a tqdm bar.
        world_size: processes (for the total images/s).
        emit: writes one progress line (the console and ``train.log``, or ``train.log`` only).
        on_step: receives ``({"step/loss": ..., ...}, global_step)`` every ``every`` steps.
        lr: returns the current lr.
    """

    def __init__(self, *, epoch: int, epochs: int, steps_per_epoch: int | None, start_step: int,
                 sums: EpochSums, every: int, bar: bool, world_size: int = 1,
                 emit: Callable[[str], None] | None = None,
                 on_step: Callable[[dict[str, float], int], None] | None = None,
                 lr: Callable[[], float] | None = None) -> None:
        self.epoch, self.epochs, self.total = epoch, epochs, steps_per_epoch
        self.every, self.world_size = every, world_size
        self.emit, self.on_step, self.lr = emit, on_step, lr
        self._t_start = self._t_last = time.perf_counter()
        self._steps = 0  # steps of this pass
        self._last = sums.state_dict()
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=steps_per_epoch, initial=start_step,
                            desc=f"epoch {epoch + 1}/{epochs}", leave=False, dynamic_ncols=True)

    def update(self, step: int, sums: EpochSums, global_step: int) -> None:
        """After the optimizer step of batch ``step`` (0-based in the epoch), whose sums are in;
        ``global_step``: optimizer steps done, this one included."""
        self._steps += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{sums.total / max(sums.n, 1):.4f}", refresh=False)
        if not self.every or global_step % self.every:
            return
        now = time.perf_counter()
        metrics = self._interval(sums, now)
        if self.on_step is not None:
            self.on_step(metrics, global_step)
        if self.emit is not None:
            self.emit(self._line(step, metrics, now))
        self._t_last, self._last = now, sums.state_dict()

    def _interval(self, sums: EpochSums, now: float) -> dict[str, float]:
        last = self._last
        n = sums.n - last["n"]
        out: dict[str, float] = {}
        if n > 0:
            out["step/loss"] = (sums.total - last["total"]) / n
            for k, v in sums.loss.items():
                out[f"step/loss_{k}"] = (v - last["loss"].get(k, 0.0)) / n
            out["step/acc"] = (sums.correct - last["correct"]) / n
        if self.lr is not None:
            out["step/lr"] = float(self.lr())
        dt = now - self._t_last
        if dt > 0 and n > 0:  # images of this process since the last line, times the processes
            out["step/images_per_s"] = n * self.world_size / dt
        return out

    def _line(self, step: int, m: dict[str, float], now: float) -> str:
        where = f"step {step + 1}/{self.total}" if self.total else f"step {step + 1}"
        parts = [f"epoch {self.epoch + 1}/{self.epochs} {where}"]
        if "step/loss" in m:
            terms = [(k[len("step/loss_"):], v) for k, v in m.items() if k.startswith("step/loss_")]
            text = f"loss {m['step/loss']:.4f}"
            if len(terms) > 1:
                text += " (" + ", ".join(f"{k} {v:.4f}" for k, v in terms) + ")"
            parts.append(text)
        if "step/lr" in m:
            parts.append(f"lr {m['step/lr']:.4g}")
        if "step/images_per_s" in m:
            parts.append(f"{m['step/images_per_s']:.0f} img/s")
        if self.total:
            per_step = (now - self._t_start) / self._steps
            left_epoch = self.total - (step + 1)
            left_run = left_epoch + (self.epochs - self.epoch - 1) * self.total
            eta, run = format_duration(left_epoch * per_step), format_duration(left_run * per_step)
            parts.append(f"eta {eta} (run {run})")
        return " ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
