"""The training engine: one loop for teachers and students, schedules, checkpoints, seeding."""
from mcmi.engine.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_write_text,
    load_checkpoint,
    load_latest_checkpoint,
    model_state_from_checkpoint,
    previous_path,
    save_checkpoint,
)
from mcmi.engine.logs import MetricsLog, read_jsonl
from mcmi.engine.schedule import SCHEDULES, LRSchedule, lr_factor
from mcmi.engine.seed import get_rng_state, seed_everything, set_rng_state
from mcmi.engine.trainer import TrainConfig, Trainer, TrainingDiverged

__all__ = [
    "FORMAT_VERSION",
    "SCHEDULES",
    "CheckpointError",
    "LRSchedule",
    "MetricsLog",
    "TrainConfig",
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
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
