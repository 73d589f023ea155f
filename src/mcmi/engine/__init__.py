"""The training engine: one loop for teachers and students, lr schedules, checkpoints, seeding.

``Trainer(method, train_loader, eval_loader, TrainConfig(...), out_dir, num_classes).fit()``
trains any :class:`~mcmi.methods.base.Method`; see :mod:`mcmi.engine.trainer`.
(:mod:`mcmi.engine.stacked_mlp` is the separate batched trainer of the small-MLP studies.)
"""

from mcmi.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    load_latest_checkpoint,
    model_state_from_checkpoint,
    previous_path,
    save_checkpoint,
)
from mcmi.engine.config import AMP_MODES, TrainConfig, TrainingDiverged, resolve_amp
from mcmi.engine.logs import MetricsLog, RunLog, read_jsonl
from mcmi.engine.schedule import SCHEDULES, LRSchedule, lr_factor
from mcmi.engine.seed import get_rng_state, seed_everything, set_rng_state
from mcmi.engine.trackers import TRACKERS, Tracker, TrackerUnavailable, register_tracker
from mcmi.engine.trainer import Trainer

__all__ = [
    "AMP_MODES",
    "FORMAT_VERSION",
    "SCHEDULES",
    "CheckpointError",
    "LRSchedule",
    "MetricsLog",
    "RunLog",
    "TRACKERS",
    "TrainConfig",
    "Tracker",
    "TrackerUnavailable",
    "Trainer",
    "TrainingDiverged",
    "atomic_write_text",
    "get_rng_state",
    "load_checkpoint",
    "load_latest_checkpoint",
    "lr_factor",
    "model_state_from_checkpoint",
    "previous_path",
    "read_jsonl",
    "register_tracker",
    "resolve_amp",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
