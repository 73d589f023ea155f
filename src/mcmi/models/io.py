"""Load a trained model from any mcmi checkpoint (a run's ``last.pt`` / ``best.pt``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from mcmi.models.base import FeatureModel, create_model

log = logging.getLogger(__name__)


def _close(a: Sequence[float], b: Sequence[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.4f}" for v in values) + ")"


def load_model(path: str | Path, arch: str | None = None, num_classes: int | None = None,
               normalization: tuple[Sequence[float], Sequence[float]] | None = None) -> FeatureModel:
    """Rebuild the model saved in checkpoint ``path`` (architecture and classes from its metadata).

    ``arch`` / ``num_classes``, when given, must match the checkpoint: a teacher file of another
    architecture or class count is an error naming the file, never a silent partial load.
    ``normalization``: the ``(mean, std)`` the caller will feed the model with; when the
    checkpoint records other statistics (it was trained on other data, e.g. a Tiny-ImageNet teacher
    on CIFAR-100, both 100 classes) a warning names the file and both, since the model then sees
    inputs shifted from those it learned on. Checkpoints written before the statistics were
    recorded are not checked.
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
    saved_norm = meta.get("normalization")
    if normalization is not None and saved_norm is not None:
        mean, std = ([float(v) for v in x] for x in normalization)
        if not (_close(mean, saved_norm["mean"]) and _close(std, saved_norm["std"])):
            log.warning("%s was trained on %r with inputs normalized by mean %s, std %s; this run normalizes by "
                        "mean %s, std %s: the model sees inputs unlike those it learned on", path, meta.get("data"),
                        _fmt(saved_norm["mean"]), _fmt(saved_norm["std"]), _fmt(mean), _fmt(std))
    model = create_model(saved_arch, num_classes=int(saved_classes), **meta.get("arch_args", {}))
    weights = model_state_from_checkpoint(state)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            path, f"weights do not fit {saved_arch!r}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return model
