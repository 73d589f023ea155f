"""What the analysis tools share: data as a model was trained on it, teacher checkpoints, one pass
of a model over a data set (logits, optionally one stage's feature maps), ``NAME=PATH`` arguments."""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["EvalData", "class_index", "collect_logits", "load_eval_data", "load_models", "parse_named", "add_data_args",
           "data_from_args"]


@dataclass
class EvalData:
    """One split of a task, with the normalization of its training set: unaugmented, or (the
    training set in view ``train-augmented``, :mod:`mcmi.metrics.train_view`) each image once
    through the training augmentation drawn from ``view_seed``."""

    dataset: Any  # ImageDataset
    stats: tuple[Sequence[float], Sequence[float]]  # (mean, std)
    view: str | None = None  # the training set's view (train-plain | train-augmented); None: the test set
    view_seed: int = 0

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.classes)

    def loader(self, indices: Tensor | None = None, batch_size: int = 256, device: torch.device | str = "cpu"):
        from mcmi.data import TensorLoader
        from mcmi.metrics.train_view import train_view_loader

        if self.view is not None:
            return train_view_loader(self.dataset, self.view, batch_size, device=device, stats=self.stats,
                                     seed=self.view_seed, indices=indices)
        return TensorLoader(self.dataset, batch_size, shuffle=False, augment=False, device=device,
                            indices=indices, stats=self.stats)

    def describe(self) -> str:
        """What the models are measured on, in words (the training set names its view)."""
        from mcmi.metrics.train_view import describe_view

        return "the test set (unaugmented)" if self.view is None else describe_view(self.view, self.view_seed)


def load_eval_data(name: str, root: str | None = None, split: str = "test",
                   class_groups: list[list[int]] | None = None, augment: bool = False, seed: int = 0) -> EvalData:
    """Split ``split`` of data set ``name`` (with ``class_groups`` when the models were trained on
    such a task), normalized with its training set's statistics, as in training; the training set
    unaugmented, or with ``augment`` in view ``train-augmented`` (draws from ``seed``)."""
    from mcmi.data import dataset_stats
    from mcmi.data.image_dataset import normalize_split
    from mcmi.experiments.train import DataSpec, load_datasets

    train, test = load_datasets(DataSpec(name=name, root=root, class_groups=class_groups))
    st = dataset_stats(train, root=root)
    if normalize_split(split) != "train":
        if augment:
            raise ValueError("augment is the train-augmented view of the training set: use it with split 'train'")
        return EvalData(test, (st.mean, st.std))
    return EvalData(train, (st.mean, st.std), "train-augmented" if augment else "train-plain", int(seed))


def load_models(checkpoints: Mapping[str, str], num_classes: int, device: torch.device | str = "cpu",
                normalization: tuple[Sequence[float], Sequence[float]] | None = None):
    """``{name: checkpoint}`` -> ``{name: model}`` in eval mode on ``device`` (``normalization``:
    the inputs' statistics, checked against each checkpoint's: :func:`mcmi.models.io.load_model`)."""
    from mcmi.models.io import load_model

    return {name: load_model(path, num_classes=num_classes, normalization=normalization).to(device).eval()
            for name, path in checkpoints.items()}


@torch.no_grad()
def collect_logits(model: torch.nn.Module, loader, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Logits (N, C, float32) and labels (N,) of ``model`` over ``loader``, on the CPU, in
    ``loader`` order. The model's mode is restored."""
    was = model.training
    model.eval()
    logits, labels = [], []
    try:
        for batch in loader:
            logits.append(model(batch["image"].to(device)).float().cpu())
            labels.append(batch["label"].cpu())
    finally:
        model.train(was)
    return torch.cat(logits), torch.cat(labels)


def class_index(names: Sequence[str], spec: str | int | None) -> int | None:
    """A class given by index or by name (case-insensitive) -> its index; None stays None."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, int) or str(spec).lstrip("-").isdigit():
        i = int(spec)
        if not 0 <= i < len(names):
            raise ValueError(f"class index {i} out of range [0, {len(names) - 1}]")
        return i
    lowered = [n.lower() for n in names]
    if str(spec).lower() in lowered:
        return lowered.index(str(spec).lower())
    raise ValueError(f"unknown class {spec!r}; classes: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")


def parse_named(items: Sequence[str] | None, default_names: Sequence[str] = ()) -> dict[str, str]:
    """``["MLL=a.pt", "MCMI=b.pt"]`` -> ``{"MLL": "a.pt", "MCMI": "b.pt"}``; an item without ``=``
    takes the next of ``default_names`` (else its position)."""
    out: dict[str, str] = {}
    for i, item in enumerate(items or []):
        if "=" in item:
            name, value = item.split("=", 1)
        else:
            name, value = (default_names[i] if i < len(default_names) else str(i + 1)), item
        if name in out:
            raise ValueError(f"name {name!r} given twice")
        out[name] = value
    return out


def add_data_args(p: argparse.ArgumentParser, split: str) -> None:
    p.add_argument("--data", required=True, help="data set name (cifar100, cifar10-partial, tinyimagenet100-32px, npz, ...)")
    p.add_argument("--root", help="data folder or file where the data set needs one")
    p.add_argument("--split", default=split, choices=["train", "test"], help=f"default: {split}")
    p.add_argument("--augment", action="store_true", help="with --split train: each image once through the training "
                   "augmentation, models in eval mode (view train-augmented, the paper's analysis script); default: "
                   "unaugmented (train-plain)")
    p.add_argument("--augment-seed", type=int, default=0, help="seed of the --augment draws (default 0)")
    p.add_argument("--class-groups", help="the task the models were trained on, as YAML, e.g. '[[0,1,2,3,4],[5,6,7,8,9]]'")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=256)


def data_from_args(args: argparse.Namespace) -> tuple[EvalData, torch.device]:
    import yaml

    from mcmi.experiments.train import resolve_device

    groups = yaml.safe_load(args.class_groups) if args.class_groups else None
    return (load_eval_data(args.data, args.root, args.split, groups, args.augment, args.augment_seed),
            resolve_device(args.device))
