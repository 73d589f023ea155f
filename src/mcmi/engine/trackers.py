"""Experiment trackers of a training run: TensorBoard, Weights & Biases and MLflow, all optional.

``train.loggers=[csv,tensorboard,wandb,mlflow]`` picks them (``csv``: the run folder's
``metrics.csv``/``metrics.jsonl``, always written; ``train.log_tensorboard=true`` is an alias of
``tensorboard``). Each tracker is a small class behind one interface (:class:`Tracker`), started
by rank 0 only, and receives

- the hyperparameters: the run's configuration (``train.*`` and ``run.*``, flattened for MLflow
  params and TensorBoard hparams, nested for the W&B config);
- every ``train.log_every_steps`` optimizer steps: ``step/loss``, ``step/loss_<term>``,
  ``step/acc``, ``step/lr``, ``step/images_per_s`` (means over those steps, rank 0's batches);
- every epoch: the metrics row under grouped names (``train/loss``, ``train/loss_ce``,
  ``train/acc``, ``train/lr``, ``eval/acc``, ``eval/top5``, ``eval/ll``, ``eval/cmi``,
  ``eval/ece``, ``time/epoch_s``, plus ``epoch``);
- the teacher's figures once (``teacher/acc``, ``teacher/ll``, ``teacher/cmi``, ...) and the
  run's summary at the end (``summary/best_acc``, ...).

The x axis is the global optimizer step throughout. Everything works offline:

- ``wandb``: ``mode="offline"`` unless ``WANDB_MODE`` says otherwise, the run directory under
  the run folder (``OUT/wandb/``) unless ``WANDB_DIR`` is set; ``wandb sync
  OUT/wandb/offline-run-*`` uploads it later.
- ``mlflow``: a SQLite store in the run folder (``sqlite:///OUT/mlflow.db``; MLflow 3 no longer
  accepts new file stores) unless ``MLFLOW_TRACKING_URI`` is set; ``mlflow ui
  --backend-store-uri sqlite:///OUT/mlflow.db`` shows it. Experiment: ``train.tracking_project``.
- ``tensorboard``: ``OUT/tb/``.

A resumed run continues the same W&B and MLflow runs (their ids are kept in ``OUT/trackers.json``);
TensorBoard drops the events logged after the checkpoint it resumed from. A missing package is
a one-line :class:`TrackerUnavailable` naming the pip extra (``pip install 'mcmi[wandb]'``); a
tracker that fails while logging is switched off with one warning, the training goes on.

New trackers: subclass :class:`Tracker` and :func:`register_tracker` it under a name.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import numbers
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mcmi.config import ConfigError, flatten

logger = logging.getLogger(__name__)

#: logger name -> (module that must be importable, pip extra of mcmi)
REQUIREMENTS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tb"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


class TrackerUnavailable(ConfigError):
    """A tracker named in ``train.loggers`` whose package is not installed."""


def metric_tag(key: str) -> str | None:
    """The grouped tracker name of a metrics-row column (None: not a metric)."""
    if key in ("epoch", "global_step"):
        return None
    if key == "lr":
        return "train/lr"
    if key == "time_s":
        return "time/epoch_s"
    if key.startswith("train_"):
        return "train/" + key[len("train_"):]
    if key.startswith("val_"):
        return "eval/" + key[len("val_"):]
    return key


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite real numbers of ``values`` as floats (bools, None, NaN and text left out)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


class Tracker:
    """One experiment tracker. ``start`` gets the state it returned last time for this run
    folder (None on a fresh run) and returns what a resume needs (e.g. the run id)."""

    name = ""

    def __init__(self, out_dir: Path, project: str, run_name: str) -> None:
        self.out_dir, self.project, self.run_name = Path(out_dir), project, run_name

    def start(self, config: Mapping[str, Any], saved: Mapping[str, Any] | None,
              step: int) -> dict[str, Any]:
        return {}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Per-step or per-epoch values at global step ``step``."""

    def log_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Values of the run as a whole (the teacher's figures, the final summary)."""
        self.log_metrics(metrics, step)

    def finish(self, status: str) -> None:
        """``status``: ``finished``, ``failed`` or ``killed``."""


TRACKERS: dict[str, type[Tracker]] = {}


def register_tracker(name: str):
    def deco(cls: type[Tracker]) -> type[Tracker]:
        cls.name = name
        TRACKERS[name] = cls
        return cls

    return deco


def known_loggers() -> list[str]:
    return sorted({"csv", *TRACKERS})


def check_logger_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as a tuple without repeats; ValueError for an unknown one."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for n in names:
        if n not in known_loggers():
            import difflib

            near = difflib.get_close_matches(str(n), known_loggers(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            from mcmi.config import FieldError  # a recipe's error names the file and train.loggers

            known = ", ".join(known_loggers())
            raise FieldError("loggers", f"has an unknown logger {n!r}{hint}; known: {known}")
        if n not in out:
            out.append(n)
    return tuple(out)


def check_available(names: Iterable[str]) -> None:
    """Raise :class:`TrackerUnavailable` for the first tracker whose package is missing."""
    for n in names:
        req = REQUIREMENTS.get(n)
        if req is not None and importlib.util.find_spec(req[0]) is None:
            raise TrackerUnavailable(
                f"train.loggers: {n!r} needs the {req[0]} package: pip install 'mcmi[{req[1]}]'")


# ------------------------------------------------------------------------------ TensorBoard
@register_tracker("tensorboard")
class TensorBoardTracker(Tracker):
    """``OUT/tb/``: scalars under grouped tags, the configuration as hparams."""

    def start(self, config, saved, step):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops what was logged after its checkpoint
        self.writer = SummaryWriter(log_dir=str(self.out_dir / "tb"),
                                    purge_step=step + 1 if step else None)
        if not step:
            self._hparams(config)
        return {}

    def _hparams(self, config: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        hp = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in flatten(config).items()}
        tags = ("eval/acc", "eval/top5", "eval/ll", "eval/cmi", "eval/ece", "train/loss")
        metrics = {t: 0.0 for t in tags}  # the scalars the HParams view shows (keys only)
        for summary in hparams(hp, metrics):
            self.writer.file_writer.add_summary(summary)

    def log_metrics(self, metrics, step):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def finish(self, status):
        self.writer.close()


# ------------------------------------------------------------------------------ W&B
@register_tracker("wandb")
class WandbTracker(Tracker):
    """A W&B run, offline unless ``WANDB_MODE`` is set, in ``OUT/wandb/`` unless ``WANDB_DIR``."""

    def start(self, config, saved, step):
        import wandb

        run_id = (saved or {}).get("id") or uuid.uuid4().hex[:12]
        directory = os.environ.get("WANDB_DIR") or str(self.out_dir)
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project, name=self.run_name, id=run_id, resume="allow", dir=directory,
            mode=os.environ.get("WANDB_MODE") or "offline", config=dict(config),
            settings=wandb.Settings(console="off", silent=True),
        )
        logger.info("W&B run %s (%s) in %s", run_id, os.environ.get("WANDB_MODE") or "offline",
                    getattr(self.run, "dir", directory))
        return {"id": run_id}

    def log_metrics(self, metrics, step):
        self.run.log(dict(metrics), step=step)

    def log_summary(self, metrics, step):
        self.run.summary.update(dict(metrics))

    def finish(self, status):
        self.run.finish(exit_code=0 if status == "finished" else 1)


# ------------------------------------------------------------------------------ MLflow
@register_tracker("mlflow")
class MlflowTracker(Tracker):
    """An MLflow run in a SQLite store in the run folder, unless ``MLFLOW_TRACKING_URI`` is set."""

    PARAM_CHARS = 500  # the limit of older servers (MLflow >= 2.? allows more)

    def start(self, config, saved, step):
        from mlflow.tracking import MlflowClient

        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        uri = env_uri or f"sqlite:///{(self.out_dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=uri)
        saved = dict(saved or {})
        self.run_id = saved.get("run_id") if saved.get("tracking_uri") == uri else None
        if self.run_id is not None:
            try:
                self.client.get_run(self.run_id)
                self.client.update_run(self.run_id, status="RUNNING")
            except Exception:  # noqa: BLE001 - deleted run, another store
                self.run_id = None
        if self.run_id is None:
            exp_id = self._experiment(local=env_uri is None)
            run = self.client.create_run(exp_id, run_name=self.run_name,
                                         tags={"mcmi.out_dir": str(self.out_dir.resolve())})
            self.run_id = run.info.run_id
            self._params(config)
        logger.info("MLflow run %s in %s", self.run_id, uri)
        return {"run_id": self.run_id, "tracking_uri": uri}

    def _experiment(self, local: bool) -> str:
        exp = self.client.get_experiment_by_name(self.project)
        if exp is not None:
            return exp.experiment_id
        artifacts = (self.out_dir / "mlartifacts").resolve().as_uri() if local else None
        try:
            return self.client.create_experiment(self.project, artifact_location=artifacts)
        except Exception:  # noqa: BLE001 - created meanwhile by another run
            exp = self.client.get_experiment_by_name(self.project)
            if exp is None:
                raise
            return exp.experiment_id

    def _params(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, (json.dumps(v) if not isinstance(v, str) else v)[: self.PARAM_CHARS])
                 for k, v in flatten(config).items()]
        for i in range(0, len(items), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def finish(self, status):
        end = {"finished": "FINISHED", "killed": "KILLED"}.get(status, "FAILED")
        self.client.set_terminated(self.run_id, status=end)


# ------------------------------------------------------------------------------ the set
class TrackerSet:
    """The trackers of one run (none when ``enabled`` is False, e.g. on ranks other than 0).

    Construction checks that every tracker's package is installed (:class:`TrackerUnavailable`);
    :meth:`start` starts them, reusing the ids of ``OUT/trackers.json`` when ``resumed``.
    ``optional`` names (the ``log_tensorboard`` alias) are dropped with a warning instead.
    """

    def __init__(self, names: Iterable[str], out_dir: str | Path, project: str = "mcmi",
                 run_name: str | None = None, enabled: bool = True,
                 optional: Iterable[str] = ()) -> None:
        self.out_dir = Path(out_dir)
        names = list(check_logger_names(names))
        optional = set(optional)
        keep = []
        for n in names:  # on every rank: all fail together, none waits for the others
            try:
                check_available([n])
            except TrackerUnavailable as e:
                if n not in optional:
                    raise
                if enabled:
                    logger.warning("%s; metrics go to metrics.csv/jsonl only", e)
                continue
            if n != "csv":
                keep.append(n)
        self.names = keep if enabled else []
        self.project = project
        self.run_name = run_name or self.out_dir.resolve().name
        self.active: list[Tracker] = []

    @property
    def state_path(self) -> Path:
        return self.out_dir / "trackers.json"

    def start(self, config: Mapping[str, Any], resumed: bool, step: int = 0) -> None:
        if not self.names:
            return
        saved: dict[str, Any] = {}
        if resumed and self.state_path.is_file():
            try:
                saved = json.loads(self.state_path.read_text())
            except (OSError, ValueError):
                saved = {}
        state = dict(saved)
        for n in self.names:
            tracker = TRACKERS[n](self.out_dir, self.project, self.run_name)
            state[n] = tracker.start(config, saved.get(n) if resumed else None, step)
            self.active.append(tracker)
        from mcmi.checkpoint import atomic_write_text

        atomic_write_text(self.state_path, json.dumps(state, indent=2, default=str))

    def _each(self, what: str, *args: Any) -> None:
        for t in list(self.active):
            try:
                getattr(t, what)(*args)
            except Exception as e:  # noqa: BLE001 - a tracker must not stop the training
                logger.warning("tracker %s failed (%s: %s); it is switched off for this run",
                               t.name, type(e).__name__, e)
                self.active.remove(t)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        values = scalars(metrics)
        if values and self.active:
            self._each("log_metrics", values, step)

    def log_epoch(self, row: Mapping[str, Any], step: int) -> None:
        """A metrics row (``metrics.jsonl`` columns) under grouped names, plus ``epoch``."""
        if not self.active:
            return
        tagged = {tag: v for k, v in row.items() if (tag := metric_tag(k)) is not None}
        tagged["epoch"] = row.get("epoch")
        self.log_metrics(tagged, step)

    def log_summary(self, metrics: Mapping[str, Any], step: int) -> None:
        values = scalars(metrics)
        if values and self.active:
            self._each("log_summary", values, step)

    def finish(self, status: str = "finished") -> None:
        for t in self.active:
            try:
                t.finish(status)
            except Exception as e:  # noqa: BLE001
                logger.warning("tracker %s did not close cleanly: %s", t.name, e)
        self.active = []
