"""The data of a run: which data set, which task on it, what the trained model sees of it and how
it is batched (:class:`DataSpec`), and the loaders built from it."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

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


__all__ = ["DataSpec", "build_loaders", "load_datasets", "pick_classes", "reduce_training_set", "regroup_classes",
           "subset_indices"]
