"""``mcmi evaluate``: top-1 and top-5 accuracy, LL (eq. 5), CMI (eq. 12), ECE and per-class CMI of a
saved model."""
from __future__ import annotations

import json
from pathlib import Path

from mcmi.experiments.train import resolve_device


def evaluate_checkpoint(checkpoint: str | Path, data: str, root: str | None = None, split: str = "test",
                        batch_size: int = 256, device: str = "auto", temperature: float = 1.0,
                        per_class: bool = False, augment: bool = False, seed: int = 0,
                        arch: str | None = None) -> str:
    """JSON of the model's figures on ``split``. On the training set, ``augment`` picks the view
    ``train-augmented`` (each image once through the training augmentation drawn from ``seed``,
    the model in eval mode: the paper's analysis script) over ``train-plain`` (unaugmented); the
    output names the view (:mod:`mcmi.metrics.train_view`). ``checkpoint``: any file
    :func:`mcmi.models.io.load_weights` reads; ``arch`` names the architecture of a foreign one."""
    from mcmi.data import TensorLoader, dataset_stats, load_dataset
    from mcmi.metrics import evaluate
    from mcmi.metrics.train_view import train_view_loader
    from mcmi.models.io import load_model

    if augment and split != "train":
        raise ValueError("augment is the train-augmented view of the training set: use it with split='train'")
    dev = resolve_device(device)
    ds = load_dataset(data, split, root=root)
    stats = dataset_stats(load_dataset(data, "train", root=root) if split == "test" else ds, root=root)
    model = load_model(checkpoint, arch=arch, num_classes=ds.num_classes, normalization=(stats.mean, stats.std)).to(dev)
    check_finite_weights(model, checkpoint)
    view = None
    if split == "train":
        view = "train-augmented" if augment else "train-plain"
        loader = train_view_loader(ds, view, batch_size, device=dev, stats=(stats.mean, stats.std), seed=seed)
    else:
        loader = TensorLoader(ds, batch_size, augment=False, device=dev, stats=(stats.mean, stats.std))
    from mcmi.engine.progress import eval_progress, interactive

    # a transient bar on a terminal
    res = evaluate(model, eval_progress(loader, "evaluate", interactive()), ds.num_classes, dev,
                   temperature=temperature)
    out = {"checkpoint": str(checkpoint), "data": data, "split": split}
    if view is not None:
        out.update(view=view, view_seed=seed if augment else None)
    out.update(res.as_dict(per_class=per_class))
    return json.dumps(_plain(out), indent=2, allow_nan=False)  # standard JSON: undefined values are null


def check_finite_weights(model, path: str | Path) -> None:
    """Refuse a model with NaN or infinite parameters or buffers (a diverged run's weights): a
    :class:`~mcmi.engine.CheckpointError` naming the file and the first tensors concerned."""
    import torch

    from mcmi.engine import CheckpointError

    bad = [name for name, t in model.state_dict().items()
           if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(path, f"holds NaN or infinite weights in {', '.join(bad[:3])}{more}: "
                                    "evaluation needs finite weights (a diverged run?)")


def _plain(x):
    import math

    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
