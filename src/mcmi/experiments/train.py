"""One training run from a recipe: data + model (+ teacher) + method + optimization.

The same :class:`RunConfig` serves ``mcmi train-teacher`` (method ``mll``), ``mcmi finetune-mcmi``
(method ``mcmi`` starting from a trained teacher) and ``mcmi distill`` (any distiller with a
teacher). Methods are built from the registry by name; context they may need (the training-set
size for CRD's memory bank, the input shape for connectors) is passed only to constructors that
declare those arguments, so nothing here branches on method names.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from mcmi.engine.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class DataSpec:
    """Which data set, which task on it, what the trained model sees of it, and how it is batched.

    Applied in this order (:func:`load_datasets`, then :func:`reduce_training_set`):

    1. ``class_groups`` defines the task, on both splits: each listed group of original classes
       becomes one class (in list order), samples of classes in no group are removed. Paper A.13
       (Table 13): CIFAR-2x5 is ``[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]`` on ``cifar10`` (the first five
       classes against the last five); CIFAR-26-45 is ``[[26], [45]]`` and CIFAR-50-74
       ``[[50], [74]]`` on ``cifar100`` (crab/lobster, mouse/shrew).
    2. ``train_subset`` / ``test_subset`` (quick runs): this is the data set. Normalization
       statistics come from this training set, so a teacher and the students of the reductions
       below normalize alike.
    3. Reductions of the training set only (the test set keeps every class):
       ``train_fraction`` (few-shot, paper Sec. 6.3 / Table 3: the first ``alpha * N`` images with
       ``fraction_mode: first``, as the paper's code; ``alpha`` of every class with ``stratified``,
       as its text says; default: ``subset_mode``), then ``drop_classes`` / ``drop_num_classes`` (zero-shot, Sec. 6.2 /
       A.11: the samples of those classes are removed; the model keeps its full classifier head).
       The paper's code masks dropped samples out of each batch instead; removing them from the
       set presents exactly the same samples every epoch and skips the teacher's forward pass on
       samples that would be thrown away. The one difference is batching: masking gives N/B steps
       of about B(1 - f) samples, removal N(1 - f)/B steps of B samples (``epoch_length: full``
       restores N/B steps).
    4. ``epoch_length``: ``subset`` iterates the reduced set once per epoch; ``full`` cycles it up
       to the size of the set of step 2 (the paper's few-shot code reads index ``i mod alpha*N``
       over the full 50,000, so its epochs keep their length).
    """

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
    class_groups: list[list[int]] | None = None  # derived task (binary tasks of A.13); see above
    train_fraction: float | None = None  # few-shot: keep this fraction of the training set
    fraction_mode: str | None = None  # how: "first" | "stratified"; None: as subset_mode
    drop_classes: list[int] | None = None  # zero-shot: these classes' training samples are removed
    drop_num_classes: int | None = None  # zero-shot: drop this many classes, picked from drop_seed
    drop_seed: int = 0
    epoch_length: str = "subset"  # "subset" | "full" (see above)
    # keep the uint8 images of both splits on the training device (GPU): batches are gathered,
    # cropped, flipped and normalized there, with no host-to-device copy of images per batch
    # (50,000 CIFAR images: 154 MB). No effect on CPU, where the images already are.
    device_resident: bool = False

    def __post_init__(self) -> None:
        from mcmi.config import require

        require(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        require(self.eval_batch_size >= 1, "eval_batch_size", self.eval_batch_size, "must be >= 1")
        for key in ("train_subset", "test_subset"):
            value = getattr(self, key)
            require(value is None or value >= 1, key, value, "must be >= 1 (or null: the whole split)")
        if self.subset_mode not in ("first", "stratified"):
            raise ValueError(f"data.subset_mode must be 'first' or 'stratified', got {self.subset_mode!r}")
        if self.fraction_mode not in (None, "first", "stratified"):
            raise ValueError(f"data.fraction_mode must be 'first' or 'stratified', got {self.fraction_mode!r}")
        if self.epoch_length not in ("subset", "full"):
            raise ValueError(f"data.epoch_length must be 'subset' or 'full', got {self.epoch_length!r}")
        if self.train_fraction is not None and not 0 < self.train_fraction <= 1:
            raise ValueError(f"data.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.drop_classes is not None and self.drop_num_classes is not None:
            raise ValueError("set data.drop_classes or data.drop_num_classes, not both")
        if self.drop_num_classes is not None and self.drop_num_classes < 0:
            raise ValueError(f"data.drop_num_classes must be >= 0, got {self.drop_num_classes}")
        if self.drop_classes is not None and len(set(self.drop_classes)) != len(self.drop_classes):
            raise ValueError(f"data.drop_classes lists a class twice: {self.drop_classes}")
        if self.class_groups is not None:
            flat = [c for g in self.class_groups for c in g]
            if len(self.class_groups) < 2 or any(not g for g in self.class_groups):
                raise ValueError(f"data.class_groups needs at least two non-empty groups, got {self.class_groups}")
            if len(set(flat)) != len(flat):
                raise ValueError(f"data.class_groups lists a class twice: {self.class_groups}")

    def dropped_classes(self, num_classes: int) -> list[int]:
        """The classes removed from the training set (sorted; empty when none)."""
        if self.drop_num_classes is not None:
            return pick_classes(num_classes, self.drop_num_classes, self.drop_seed)
        dropped = sorted(int(c) for c in self.drop_classes or [])
        bad = [c for c in dropped if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"data.drop_classes: class {bad[0]} out of range [0, {num_classes - 1}]")
        return dropped


def pick_classes(num_classes: int, count: int, seed: int) -> list[int]:
    """``count`` distinct classes of ``range(num_classes)`` drawn from ``seed`` (sorted); the same
    for a given (num_classes, count, seed) on every machine and torch version with the same
    ``randperm`` (CPU generator)."""
    if not 0 <= count <= num_classes:
        raise ValueError(f"cannot pick {count} of {num_classes} classes")
    g = torch.Generator().manual_seed(int(seed))
    return sorted(int(c) for c in torch.randperm(num_classes, generator=g)[:count])


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


def _subset(ds, indices, option: str):
    if not hasattr(ds, "subset"):
        raise ValueError(f"data.{option} needs a data set held in memory; {ds.name!r} is read lazily")
    return ds.subset(indices)


def regroup_classes(ds, groups: list[list[int]]):
    """A data set whose class ``j`` is the union of the original classes ``groups[j]``; samples of
    classes in no group are dropped. Class names join the originals with ``+``."""
    from mcmi.data import ImageDataset

    n = ds.num_classes
    bad = [c for g in groups for c in g if not 0 <= int(c) < n]
    if bad:
        raise ValueError(f"data.class_groups: class {bad[0]} out of range [0, {n - 1}] for {ds.name}")
    mapping = torch.full((n,), -1, dtype=torch.int64)
    for j, group in enumerate(groups):
        mapping[torch.as_tensor([int(c) for c in group])] = j
    new_labels = mapping[ds.labels.cpu()]
    keep = (new_labels >= 0).nonzero().reshape(-1)
    part = _subset(ds, keep, "class_groups")
    names = ["+".join(ds.classes[int(c)] for c in group) for group in groups]
    if not isinstance(part, ImageDataset):  # a lazily read folder keeps its files, under new labels
        return part.relabeled(new_labels[keep], names)
    return ImageDataset(part.images, new_labels[keep], names, ds.name)


def load_datasets(spec: DataSpec):
    """Training and test sets of ``spec``'s task (``class_groups``, then the subsets): steps 1-2 of
    :class:`DataSpec`, what a teacher is trained on."""
    from mcmi.data import DataError, load_dataset

    train = load_dataset(spec.name, "train", root=spec.root)
    test = load_dataset(spec.name, "test", root=spec.root)
    where = f"{spec.name!r}" + (f" ({spec.root})" if spec.root else "")
    if tuple(train.image_shape) != tuple(test.image_shape):
        raise DataError(f"data set {where}: training images are {tuple(train.image_shape)}, test images "
                        f"{tuple(test.image_shape)}: both splits need images of one shape")
    if spec.class_groups:
        train, test = regroup_classes(train, spec.class_groups), regroup_classes(test, spec.class_groups)
    for key, part, split in (("train_subset", train, "training"), ("test_subset", test, "test")):
        n = getattr(spec, key)
        if n is not None and n > len(part):
            raise DataError(f"data.{key}={n} is larger than the {split} set of {where}: {len(part)} images")
    if spec.train_subset:
        train = train.subset(subset_indices(train.labels, spec.train_subset, spec.subset_mode))
    if spec.test_subset:
        test = test.subset(subset_indices(test.labels, spec.test_subset, spec.subset_mode))
    return train, test


def reduce_training_set(spec: DataSpec, train):
    """Step 3-4 of :class:`DataSpec`: the training set the model sees (``train_fraction``, dropped
    classes; classes and name unchanged) and the loader's epoch indices into it (``None``: each
    sample once per epoch)."""
    full = len(train)
    if spec.train_fraction is not None and spec.train_fraction < 1:
        n = max(1, round(spec.train_fraction * full))
        mode = spec.fraction_mode or spec.subset_mode
        train = _subset(train, subset_indices(train.labels, n, mode), "train_fraction")
    dropped = spec.dropped_classes(train.num_classes)
    if dropped:
        keep = ~torch.isin(train.labels.cpu(), torch.as_tensor(dropped, dtype=torch.int64))
        if not bool(keep.any()):
            raise ValueError(f"data: dropping classes {dropped} leaves no training sample")
        train = _subset(train, keep.nonzero().reshape(-1), "drop_classes")
    indices = None
    if spec.epoch_length == "full" and len(train) < full:
        indices = torch.arange(full) % len(train)
    return train, indices


def build_loaders(spec: DataSpec, device: torch.device, seed: int, channels_last: bool, rank: int = 0, world_size: int = 1):
    """Training and evaluation loaders (evaluation normalized with the training statistics).

    Returns the training set as the model sees it (after the reductions of :class:`DataSpec`),
    the test set, their loaders, and the normalization ``(mean, std)`` both use."""
    from mcmi.data import TensorLoader, dataset_stats

    train, test = load_datasets(spec)
    stats = dataset_stats(train, root=spec.root)  # before the reductions: the teacher's statistics
    stats = (stats.mean, stats.std)
    train, indices = reduce_training_set(spec, train)
    if spec.drop_classes or spec.drop_num_classes or spec.train_fraction is not None:
        log.info("training set: %d images of %d classes (dropped: %s)", len(train),
                 int(torch.unique(train.labels).numel()), spec.dropped_classes(train.num_classes) or "none")
    if spec.device_resident and device.type != "cpu":
        if not (hasattr(train, "to") and hasattr(test, "to")):
            raise ValueError(f"data.device_resident needs a data set held in memory; {spec.name!r} is read lazily")
        train, test = train.to(device), test.to(device)  # same images, same batches, on the device
    train_loader = TensorLoader(train, spec.batch_size, shuffle=True, augment=spec.augment, seed=seed, drop_last=False,
                                device=device, channels_last=channels_last, rank=rank, world_size=world_size, stats=stats,
                                indices=indices)
    # unpadded shares: each test sample is counted once however many processes evaluate
    test_loader = TensorLoader(test, spec.eval_batch_size, shuffle=False, augment=False, device=device,
                               channels_last=channels_last, rank=rank, world_size=world_size, stats=stats, pad=False)
    return train, test, train_loader, test_loader, stats


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
