"""``mcmi evaluate``: accuracy, LL (eq. 5), CMI (eq. 12) and per-class CMI of a saved model."""
from __future__ import annotations

import json
from pathlib import Path

from mcmi.experiments.train import resolve_device


def evaluate_checkpoint(checkpoint: str | Path, data: str, root: str | None = None, split: str = "test",
                        batch_size: int = 256, device: str = "auto", temperature: float = 1.0,
                        per_class: bool = False) -> str:
    from mcmi.data import TensorLoader, dataset_stats, load_dataset
    from mcmi.metrics import evaluate
    from mcmi.models.io import load_model

    dev = resolve_device(device)
    ds = load_dataset(data, split, root=root)
    stats = dataset_stats(load_dataset(data, "train", root=root) if split == "test" else ds, root=root)
    model = load_model(checkpoint, num_classes=ds.num_classes, normalization=(stats.mean, stats.std)).to(dev)
    loader = TensorLoader(ds, batch_size, augment=False, device=dev, stats=(stats.mean, stats.std))
    res = evaluate(model, loader, ds.num_classes, dev, temperature=temperature)
    out = {"checkpoint": str(checkpoint), "data": data, "split": split, **res.as_dict(per_class=per_class)}
    return json.dumps(out, indent=2)
