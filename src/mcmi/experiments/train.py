"""One training run from a recipe: data + model (+ teacher) + method + optimization.

The same :class:`RunConfig` serves ``mcmi train-teacher`` (method ``mll``), ``mcmi finetune-mcmi``
(method ``mcmi`` starting from a trained teacher) and ``mcmi distill`` (any distiller with a
teacher). Methods are built from the registry by name; context they may need (the training-set
size for CRD's memory bank, the input shape for connectors) is passed only to constructors that
declare those arguments, so nothing here branches on method names.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mcmi.engine.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class DataSpec:
    """Which data set, and how it is batched."""

    name: str = "cifar100"
    root: str | None = None  # folder or file for cifar10/cifar100/imagefolder/npz; bundled names need none
    batch_size: int = 64
    eval_batch_size: int = 256
    augment: bool = True
    train_subset: int | None = None  # keep N training images (quick runs)
    test_subset: int | None = None
    # how the subsets are picked: "first" N images in file order, or "stratified": the first
    # images of every class in turn, so all classes stay (class-sorted files such as the
    # bundled archives lose whole classes with "first")
    subset_mode: str = "first"

    def __post_init__(self) -> None:
        if self.subset_mode not in ("first", "stratified"):
            raise ValueError(f"data.subset_mode must be 'first' or 'stratified', got {self.subset_mode!r}")


def subset_indices(labels: torch.Tensor, n: int, mode: str = "first") -> torch.Tensor:
    """Indices of ``n`` rows: the first ``n``, or (``stratified``) the first image of every class,
    then the second of every class, ... (class counts differ by at most one), in file order."""
    labels = torch.as_tensor(labels).long().cpu()
    n = min(int(n), len(labels))
    if mode == "first":
        return torch.arange(n)
    order = torch.argsort(labels, stable=True)  # grouped by class, file order inside a class
    grouped = labels[order]
    counts = torch.bincount(grouped)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(labels)) - starts[grouped]  # position of each image inside its class
    key = rank * (int(grouped.max()) + 1 if len(grouped) else 1) + grouped
    return order[torch.argsort(key, stable=True)[:n]].sort().values


@dataclass
class ModelSpec:
    """A registered architecture, optionally initialized from an mcmi checkpoint."""

    name: str = "resnet56"
    weights: str | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """A full recipe (see configs/): model, optional teacher, method, data, optimization."""

    model: ModelSpec = field(default_factory=ModelSpec)
    method: str = "mll"
    method_args: dict[str, Any] = field(default_factory=dict)
    teacher: ModelSpec | None = None
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "auto"  # auto: cuda if available
    out: str = "runs/run"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_loaders(spec: DataSpec, device: torch.device, seed: int, channels_last: bool, rank: int = 0, world_size: int = 1):
    """Training and evaluation loaders (evaluation normalized with the training statistics)."""
    from mcmi.data import TensorLoader, dataset_stats, load_dataset

    train = load_dataset(spec.name, "train", root=spec.root)
    test = load_dataset(spec.name, "test", root=spec.root)
    if spec.train_subset:
        train = train.subset(subset_indices(train.labels, spec.train_subset, spec.subset_mode))
    if spec.test_subset:
        test = test.subset(subset_indices(test.labels, spec.test_subset, spec.subset_mode))
    stats = dataset_stats(train, root=spec.root)
    stats = (stats.mean, stats.std)
    train_loader = TensorLoader(train, spec.batch_size, shuffle=True, augment=spec.augment, seed=seed, drop_last=False,
                                device=device, channels_last=channels_last, rank=rank, world_size=world_size, stats=stats)
    test_loader = TensorLoader(test, spec.eval_batch_size, shuffle=False, augment=False, device=device,
                               channels_last=channels_last, rank=rank, world_size=world_size, stats=stats)
    return train, test, train_loader, test_loader


def build_model(spec: ModelSpec, num_classes: int):
    from mcmi.models import create_model
    from mcmi.models.io import load_model

    if spec.weights:
        return load_model(spec.weights, arch=spec.name, num_classes=num_classes)
    return create_model(spec.name, num_classes=num_classes, **spec.args)


def build_method(cfg: RunConfig, model, teacher, context: dict[str, Any]):
    """The registered method ``cfg.method`` with its arguments, a teacher if it is a distiller, and
    whichever context values (``num_data``, ``image_shape``) its constructor declares."""
    from mcmi.methods import METHODS, Distiller

    cls = METHODS.get(cfg.method)
    params = inspect.signature(cls.__init__).parameters
    kwargs = dict(cfg.method_args)
    for key, value in context.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    unknown = [k for k in kwargs if k not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values())]
    if unknown:
        raise ValueError(f"method {cfg.method!r} has no argument {unknown[0]!r}; it takes {[p for p in params if p != 'self']}")
    if isinstance(cls, type) and issubclass(cls, Distiller):
        if teacher is None:
            raise ValueError(f"method {cfg.method!r} distils from a teacher: set teacher.name and teacher.weights")
        return cls(model, teacher, **kwargs)
    if teacher is not None:
        raise ValueError(f"method {cfg.method!r} takes no teacher, but the recipe names one")
    return cls(model, **kwargs)


def run_training(cfg: RunConfig, resume: bool = True) -> dict[str, Any]:
    """Build everything from ``cfg`` and train; returns the trainer's summary.

    With ``resume`` (the default) a rerun continues from ``cfg.out/last.pt``; a finished run
    returns at once with its summary.
    """
    from mcmi.engine import Trainer
    from mcmi.engine.distributed import distributed_context

    device = resolve_device(cfg.device)
    rank, world = distributed_context(device)
    train, test, train_loader, test_loader = build_loaders(cfg.data, device, cfg.train.seed, cfg.train.channels_last, rank, world)
    torch.manual_seed(cfg.train.seed)  # model initialization is part of the seed's contract
    model = build_model(cfg.model, train.num_classes)
    teacher = build_model(cfg.teacher, train.num_classes) if cfg.teacher else None
    context = {"num_data": len(train), "image_shape": tuple(train.image_shape)}
    method = build_method(cfg, model, teacher, context)
    meta = {"arch": cfg.model.name, "arch_args": cfg.model.args, "method_name": cfg.method, "data": cfg.data.name}
    trainer = Trainer(method, train_loader, test_loader, cfg.train, cfg.out, train.num_classes, device,
                      run_config=asdict(cfg), meta=meta)
    return trainer.fit(resume=resume)
