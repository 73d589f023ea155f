"""Load a trained model from any mcmi checkpoint (a run's ``last.pt`` / ``best.pt``)."""
from __future__ import annotations

from pathlib import Path

from mcmi.models.base import FeatureModel, create_model


def load_model(path: str | Path, arch: str | None = None, num_classes: int | None = None) -> FeatureModel:
    """Rebuild the model saved in checkpoint ``path`` (architecture and classes from its metadata).

    ``arch`` / ``num_classes``, when given, must match the checkpoint: a teacher file of another
    architecture or class count is an error naming the file, never a silent partial load.
    """
    from mcmi.engine.checkpoint import CheckpointError, load_checkpoint, model_state_from_checkpoint

    state = load_checkpoint(path)
    meta = state.get("meta", {})
    saved_arch, saved_classes = meta.get("arch"), meta.get("num_classes")
    if saved_arch is None or saved_classes is None:
        raise CheckpointError(path, "has no 'arch'/'num_classes' metadata: not a model checkpoint of mcmi train runs")
    if arch is not None and arch != saved_arch:
        raise CheckpointError(path, f"holds a {saved_arch!r} model, expected {arch!r}")
    if num_classes is not None and num_classes != saved_classes:
        raise CheckpointError(path, f"model has {saved_classes} classes, the data set has {num_classes}")
    model = create_model(saved_arch, num_classes=int(saved_classes), **meta.get("arch_args", {}))
    weights = model_state_from_checkpoint(state)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            path, f"weights do not fit {saved_arch!r}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model
