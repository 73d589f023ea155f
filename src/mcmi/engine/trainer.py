"""The one training loop for teachers and students: any :class:`~mcmi.methods.base.Method`.

Per epoch the :class:`Trainer` minimizes ``sum(method(batch, epoch=e).losses.values())`` with
SGD over ``method.trainable_parameters()``, evaluates ``method.model`` (accuracy, log-likelihood,
CMI: the paper's Fig. 2 curves), records a metrics row and writes a checkpoint. Files in
``out_dir`` (rank 0 only): ``last.pt``/``last.prev.pt`` (training state, current and previous),
``best.pt`` (method weights at the best accuracy), ``metrics.csv``/``metrics.jsonl``,
``summary.json`` (with the mcmi/torch versions, git commit and device), ``config.json``,
``train.log`` (the run's log lines, appended across resumes), ``teacher_metrics.json`` (a
distiller's teacher on the evaluation set, computed once) and the trackers' files
(:mod:`mcmi.engine.trackers`: ``tb/``, ``wandb/``, ``mlflow.db``, ``trackers.json``).

A run resumed from any of its checkpoints reproduces the uninterrupted run bit for bit on CPU
in deterministic mode (see :mod:`mcmi.engine.state` for what is restored and the loader
contract). Epochs in rows, the summary and errors are 1-based; in the loop and the lr
schedule they are 0-based.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mcmi.checkpoint import atomic_write_text
from mcmi.engine.config import TrainConfig, resolve_amp
from mcmi.engine.logs import MetricsLog, RunLog
from mcmi.engine.loop import EpochLoopMixin
from mcmi.engine.progress import eval_progress
from mcmi.engine.provenance import provenance
from mcmi.engine.seed import (
    determinism_flags,
    get_rng_state,
    seed_everything,
    set_determinism_flags,
    set_rng_state,
)
from mcmi.engine.state import CheckpointingMixin, EpochSums, jsonable
from mcmi.engine.trackers import TrackerSet
from mcmi.methods.base import Method
from mcmi.metrics import evaluate

logger = logging.getLogger(__name__)


class Trainer(EpochLoopMixin, CheckpointingMixin):
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
            the method and model class names and ``num_classes`` (add e.g. ``{"arch": "wrn"}``).
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
            self.method.to(memory_format=torch.channels_last)  # model, teacher, connectors
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.out_dir = Path(out_dir)
        self.num_classes = int(num_classes)
        self.run_config = dict(run_config or {})
        self.meta = jsonable(
            {
                "method": type(method).__name__,
                "model": type(method.model).__name__,
                "num_classes": self.num_classes,
                **dict(meta or {}),
            }
        )
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0

        self.params = list(method.trainable_parameters())
        if not self.params:
            raise ValueError(f"{type(method).__name__} has no trainable parameters")
        self.optimizer = cfg.build_optimizer(self.params)
        steps = len(train_loader) if hasattr(train_loader, "__len__") else None  # type: ignore
        self.steps_per_epoch: int | None = steps
        self.scheduler = cfg.build_schedule(self.optimizer, steps)
        self.amp_dtype = resolve_amp(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )

        self.epoch = 0  # completed epochs = 0-based index of the epoch in progress
        self.step_in_epoch = 0  # batches done in the epoch in progress
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"acc": None, "epoch": None}
        self.elapsed = 0.0  # wall time of the run so far, over all resumes
        self._t0, self._base = time.perf_counter(), 0.0
        self._partial: EpochSums | None = None
        self._epoch_start_rng: dict[str, Any] | None = None
        self._forward_module: torch.nn.Module = self.method
        self.log = MetricsLog(self.out_dir, enabled=self.is_main)
        # TensorBoard is a tracker; the old log_tensorboard switch only warns when it is missing
        alias_only = () if "tensorboard" in cfg.loggers else ("tensorboard",)
        self.trackers = TrackerSet(cfg.trackers, self.out_dir, cfg.tracking_project,
                                   enabled=self.is_main, optional=alias_only)
        self.teacher_eval: dict[str, Any] | None = None  # the teacher's figures, once per run
        self._run_log = RunLog(self.out_dir / "train.log", enabled=False)

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "best.pt"

    def config_dict(self) -> dict[str, Any]:
        """The run's configuration as plain JSON values (training settings, the caller's config)."""
        return jsonable({"train": asdict(self.cfg), "run": self.run_config})

    # ------------------------------------------------------------------ fit
    def fit(self, resume: bool | str | Path = False, allow_changes: Iterable[str] = ()) -> dict[str, Any]:
        """Train to ``cfg.epochs`` and return the summary (also written to ``summary.json``).

        ``resume=True`` continues from ``out_dir/last.pt`` (or ``last.prev.pt`` if that one is
        damaged), starting fresh if neither exists; a path resumes from that file. A resumed
        run does not call ``method.prepare`` again: the method's state comes from the checkpoint.
        A checkpoint whose configuration differs from this run's in anything but ``epochs`` (and
        display settings) is refused unless ``allow_changes`` names the keys
        (:mod:`mcmi.engine.changes`; the changes are recorded in ``out_dir/changes.jsonl``).
        """
        self.allow_changes = tuple(allow_changes)
        flags = determinism_flags()
        status = "failed"
        try:
            resumed_from = self.begin(resume)
            for epoch in range(self.epoch, self.cfg.epochs):
                self._run_epoch(epoch)
            summary = self.finish(resumed_from)
            status = "finished"
            return summary
        except BaseException as e:
            self._run_log.exception(e)  # the traceback in train.log; the console gets one line
            status = "killed" if isinstance(e, KeyboardInterrupt) else "failed"
            raise
        finally:
            self.close(status)
            set_determinism_flags(flags)

    def close(self, status: str = "finished") -> None:
        """End the trackers (``status``: finished, failed, killed), detach ``train.log``, close
        the metric files; a second call does nothing."""
        self.trackers.finish(status)
        self.log.close()
        self._run_log.close()

    def begin(self, resume: bool | str | Path = False) -> Path | None:
        """Everything :meth:`fit` does before the first epoch: seed, resume or ``prepare`` and a
        first checkpoint, ``config.json``, the forward module (DDP, compile). Returns the
        checkpoint resumed from (None: fresh). A cohort (:mod:`mcmi.engine.cohort`) calls this,
        then drives the steps itself."""
        seed_everything(self.cfg.seed + self.rank, self.cfg.deterministic)
        self._run_log.close()
        self._run_log = RunLog(self.out_dir / "train.log", enabled=self.is_main)
        resumed_from = self._resume(resume) if resume else None
        self._t0, self._base = time.perf_counter(), self.elapsed
        self._evaluate_teacher()  # before the first checkpoint, which keeps the figures
        if resumed_from is None:
            if self.is_main and self.checkpoint_path.exists():
                logger.warning(
                    "%s exists and is overwritten by a fresh run (pass resume=True to "
                    "continue)",
                    self.checkpoint_path,
                )
            self.method.prepare(self.train_loader)
            self.elapsed = self._wall()
            self._save_checkpoint()  # a good checkpoint exists before the first step
        if self.is_main:
            text = json.dumps(self.config_dict(), indent=2)
            atomic_write_text(self.out_dir / "config.json", text)
            self.log.write_rows(self.history)
        self._forward_module = self._wrap_ddp()
        if self.cfg.compile:
            self._forward_module = torch.compile(self._forward_module)
        self._start_tracking(resumed_from)
        return resumed_from

    def finish(self, resumed_from: Path | None) -> dict[str, Any]:
        """The run's summary after its last epoch (also written to ``summary.json``); ends the
        trackers and detaches ``train.log``."""
        summary = self._summary(resumed_from)
        if self.is_main:
            atomic_write_text(
                self.out_dir / "summary.json", json.dumps(jsonable(summary), indent=2)
            )
        self.trackers.log_summary(
            {f"summary/{k}": summary.get(k) for k in ("best_acc", "best_epoch", "last_acc",
                                                       "last_top5", "last_ll", "last_cmi",
                                                       "last_ece", "wall_time_s")},
            self.global_step,
        )
        self.close("finished")
        return summary

    def _start_tracking(self, resumed_from: Path | None) -> None:
        """The first lines of ``train.log`` and the trackers' start (rank 0)."""
        if not self.is_main:
            return
        p = provenance(self.device)
        logger.info(
            "%s %s: mcmi %s, torch %s, device %s, commit %s, world size %d",
            "resumed" if resumed_from is not None else "started",
            self.out_dir,
            p["mcmi_version"],
            p["torch_version"],
            p["device"],
            p["git_commit"],
            self.world_size,
        )
        if self.teacher_eval is not None:
            figures = self.teacher_eval.items()
            logger.info(
                "teacher on the evaluation set: %s",
                " ".join(f"{k}={v:.4g}" for k, v in figures if isinstance(v, float)),
            )
        self.trackers.start(self.config_dict(), resumed=resumed_from is not None,
                            step=self.global_step)
        if self.teacher_eval is not None and resumed_from is None:
            self.trackers.log_summary(
                {f"teacher/{k}": v for k, v in self.teacher_eval.items()}, self.global_step
            )

    def _evaluate_teacher(self) -> None:
        """A distiller's teacher on the evaluation set (accuracy, top-5, LL, CMI, ECE), once per
        run: kept in the checkpoints (a resume does not recompute it) and in
        ``teacher_metrics.json``. The RNG states are left as they were."""
        teacher = getattr(self.method, "teacher", None)
        if self.teacher_eval is not None or self.eval_loader is None or not isinstance(
            teacher, torch.nn.Module
        ):
            return
        rng = get_rng_state()
        try:
            res = evaluate(
                teacher,
                eval_progress(self.eval_loader, "teacher eval", self._show_bar()),
                self.num_classes,
                self.device,
                distributed=self.distributed,
            )
        finally:
            set_rng_state(rng)
        self.teacher_eval = {
            "acc": res.accuracy,
            "top5": res.top5,
            "ll": res.log_likelihood,
            "cmi": res.cmi,
            "ece": res.ece,
            "entropy": res.entropy,
            "n": res.n,
        }
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.out_dir / "teacher_metrics.json",
                json.dumps(jsonable(self.teacher_eval), indent=2),
            )

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.distributed:
            return self.method
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = (
            [self.device.index if self.device.index is not None else torch.cuda.current_device()]
            if self.device.type == "cuda"
            else None
        )
        return DDP(
            self.method, device_ids=ids, find_unused_parameters=self.cfg.find_unused_parameters
        )

    def _wall(self) -> float:
        return self._base + (time.perf_counter() - self._t0)

    def _run_epoch(self, epoch: int) -> None:
        t_epoch = time.perf_counter()
        sums, lr = self._train_epoch(epoch)
        self._end_epoch(epoch, sums, lr, t_epoch)

    def _end_epoch(self, epoch: int, sums: EpochSums, lr: float, t_epoch: float) -> None:
        """Close epoch ``epoch``: its metrics row, evaluation, checkpoint, best weights, logs."""
        sums.all_reduce(self.device)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "global_step": self.global_step,
            "lr": lr,
            **sums.means(),
        }
        last = epoch + 1 == self.cfg.epochs
        improved = False
        if self.eval_loader is not None and ((epoch + 1) % self.cfg.eval_every == 0 or last):
            res = evaluate(
                self.method.model,
                eval_progress(self.eval_loader, "eval", self._show_bar()),
                self.num_classes,
                self.device,
                distributed=self.distributed,
            )
            row.update(val_acc=res.accuracy, val_ll=res.log_likelihood, val_cmi=res.cmi)
            if res.top5 == res.top5:  # NaN (no top-5 with fewer than 5 classes): no column
                row["val_top5"] = res.top5
            row["val_ece"] = res.ece
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
                self._save_best(epoch + 1)
            self.log.write_rows(self.history)
            self.trackers.log_epoch(row, self.global_step)
            logger.info(
                "epoch %d/%d %s",
                epoch + 1,
                self.cfg.epochs,
                " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)),
            )
