"""One training run from a recipe: data + model (+ teacher) + method + optimization.

The same :class:`RunConfig` serves ``mcmi train-teacher`` (method ``mll``), ``mcmi finetune-mcmi``
(method ``mcmi`` starting from a trained teacher) and ``mcmi distill`` (any distiller with a
teacher). Methods are built from the registry by name; context they may need (the training-set
size for CRD's memory bank, the input shape for connectors) is passed only to constructors that
declare those arguments, so nothing here branches on method names.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from mcmi.engine.config import TrainConfig
from mcmi.experiments.data_spec import (  # noqa: F401  (the run layer's public names)
    DataSpec,
    build_loaders,
    load_datasets,
    pick_classes,
    reduce_training_set,
    regroup_classes,
    subset_indices,
)


@dataclass
class ModelSpec:
    """A registered architecture, optionally initialized from a weight file: an mcmi checkpoint, or a
    RepDistiller/mdistiller, torchvision, plain or safetensors file (:func:`mcmi.models.io.load_weights`)."""

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

    def __post_init__(self) -> None:
        check_run_config(self)


def check_run_config(cfg: RunConfig) -> None:
    """The names of a recipe (method, models, data set, device) and its ``method_args`` (against
    the method's options, converted to their types in place): one-line
    :class:`~mcmi.config.ConfigError` s naming the key, the value and the nearest valid names.
    Run when a recipe is loaded, before anything is read or written."""
    from mcmi.config import ConfigError, FieldError, unknown_name
    from mcmi.data import DATASETS
    from mcmi.methods import METHODS
    from mcmi.methods.options import check_method_args
    from mcmi.models import MODELS  # the package import registers the zoo

    if cfg.method not in METHODS:
        raise ConfigError(unknown_name("method", cfg.method, "method", METHODS.names()))
    for key, spec in (("model", cfg.model), ("teacher", cfg.teacher)):
        if spec is not None and spec.name not in MODELS:
            raise ConfigError(unknown_name(f"{key}.name", spec.name, "model", MODELS.names()))
    if cfg.data.name not in DATASETS:
        raise ConfigError(unknown_name("data.name", cfg.data.name, "data set", DATASETS.names()))
    if cfg.device != "auto":
        try:
            torch.device(cfg.device)
        except (RuntimeError, ValueError):
            raise FieldError("device", "must be auto, cpu, cuda, cuda:N or another torch device, "
                                       f"got {cfg.device!r}") from None
    cfg.method_args = check_method_args(cfg.method, cfg.method_args)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(spec: ModelSpec, num_classes: int, normalization: tuple[Sequence[float], Sequence[float]] | None = None):
    """A new model, or the one saved at ``spec.weights`` (``normalization``: the run's input
    statistics, checked against those the checkpoint was trained with)."""
    from mcmi.models import create_model
    from mcmi.models.io import load_model

    if spec.weights:
        return load_model(spec.weights, arch=spec.name, num_classes=num_classes, normalization=normalization,
                          arch_args=spec.args)  # any file mcmi convert reads; args for a foreign one
    try:
        return create_model(spec.name, num_classes=num_classes, **spec.args)
    except TypeError as e:
        if not spec.args or "argument" not in str(e):
            raise
        from mcmi.config import ConfigError

        raise ConfigError(f"{spec.name} args {spec.args}: {e}") from e


def build_method(cfg: RunConfig, model, teacher, context: dict[str, Any]):
    """The registered method ``cfg.method`` with its arguments, a teacher if it is a distiller, and
    whichever context values (``num_data``, ``image_shape``) its options declare (an unknown
    argument is the constructor's ``TypeError`` naming the valid ones)."""
    from mcmi.methods import Distiller, method_class, method_options

    cls = method_class(cfg.method)
    options = method_options(cfg.method)
    kwargs = dict(cfg.method_args)
    for key, value in context.items():
        if key in options and key not in kwargs:
            kwargs[key] = value
    if isinstance(cls, type) and issubclass(cls, Distiller):
        if teacher is None:
            raise ValueError(f"method {cfg.method!r} distils from a teacher: set teacher.name and teacher.weights")
        return cls(model, teacher, **kwargs)
    if teacher is not None:
        raise ValueError(f"method {cfg.method!r} takes no teacher, but the recipe names one")
    return cls(model, **kwargs)


def run_training(cfg: RunConfig, resume: bool = True, allow_changes: Sequence[str] = ()) -> dict[str, Any]:
    """Build everything from ``cfg`` and train; returns the trainer's summary.

    With ``resume`` (the default) a rerun continues from ``cfg.out/last.pt``; a finished run
    returns at once with its summary. A resume whose recipe differs from the checkpoint's in
    anything but ``train.epochs`` (and display settings) is refused, naming the keys, unless
    ``allow_changes`` lists them (see :mod:`mcmi.engine.changes`).

    Nothing is written before the recipe, the data and the models have been checked: the output
    folder must be creatable, the data sets are read, the models and the method are built (bad
    values there are one-line :class:`~mcmi.config.ConfigError` s), and only then is
    ``cfg.out/run.lock`` taken, which keeps a second process out of the folder
    (:class:`mcmi.engine.lock.RunLockedError`; a folder held by a live process is refused before
    the data are read). A run that fails before it wrote anything removes the folders it created.
    """
    from mcmi.engine.distributed import distributed_context
    from mcmi.engine.lock import RunLock, check_not_locked
    from mcmi.io import check_output_dir, removing_new_dirs

    device = resolve_device(cfg.device)
    rank, world = distributed_context(device)
    if rank == 0:
        check_output_dir(cfg.out, key="out")
        check_not_locked(cfg.out)
    trainer = _validated(lambda: build_trainer(cfg, device, rank, world))
    trainer.preload_resume(resume, allow_changes)  # a bad checkpoint or a changed recipe: refused here
    # rank 0 holds the lock for a data-parallel run; torchrun ends the other ranks if it fails
    with (removing_new_dirs(cfg.out) if rank == 0 else contextlib.nullcontext(),
          RunLock(cfg.out) if rank == 0 else contextlib.nullcontext()):
        return trainer.fit(resume=resume, allow_changes=allow_changes)


def _validated(build: Callable[[], Any]) -> Any:
    """``build()``, with the ``ValueError`` s of checks made while building (a teacher of another
    class count, a method option out of range) as one-line :class:`~mcmi.config.ConfigError` s;
    mcmi's own error types pass as they are, anything else (a bug) stays itself."""
    from mcmi.config import ConfigError
    from mcmi.data import DataError
    from mcmi.engine import CheckpointError

    try:
        return build()
    except (ConfigError, DataError, CheckpointError):
        raise
    except ValueError as e:
        raise ConfigError(" ".join(str(e).split())) from e


def build_trainer(cfg: RunConfig, device: torch.device, rank: int = 0, world: int = 1, *,
                  loaders: tuple | None = None, share_teacher: Callable[[Any], Any] | None = None):
    """The :class:`~mcmi.engine.Trainer` of ``cfg``, not started.

    ``loaders``: the :func:`build_loaders` result to use instead of building it (a cohort shares
    one). ``share_teacher``: called with the teacher as built for this run (weights loaded, batch
    norm folded); the method gets what it returns (a cohort's shared teacher). Everything is
    built in the order of a separate run, so the seeded initialization of the student and of the
    method's extra modules is the same either way."""
    from mcmi.engine import Trainer

    train, test, train_loader, test_loader, stats = loaders or build_loaders(
        cfg.data, device, cfg.train.seed, cfg.train.channels_last, rank, world)
    torch.manual_seed(cfg.train.seed)  # model initialization is part of the seed's contract
    model = build_model(cfg.model, train.num_classes, stats)
    teacher = build_model(cfg.teacher, train.num_classes, stats) if cfg.teacher else None
    if teacher is not None and cfg.train.fold_teacher_bn:
        from mcmi.models.fold import fold_batchnorm

        teacher = fold_batchnorm(teacher, tuple(train.image_shape))  # frozen: same outputs, faster
    if teacher is not None and share_teacher is not None:
        teacher = share_teacher(teacher)
    context = {"num_data": len(train), "image_shape": tuple(train.image_shape)}
    method = build_method(cfg, model, teacher, context)
    if cfg.train.teacher_cache_views:
        from mcmi.data.teacher_cache import with_cached_teacher

        train_loader = with_cached_teacher(train_loader, method, cfg.train.teacher_cache_views)
    meta = {"arch": cfg.model.name, "arch_args": cfg.model.args, "method_name": cfg.method, "data": cfg.data.name,
            "normalization": {"mean": [float(v) for v in stats[0]], "std": [float(v) for v in stats[1]]}}
    return Trainer(method, train_loader, test_loader, cfg.train, cfg.out, train.num_classes, device,
                   run_config=asdict(cfg), meta=meta)
