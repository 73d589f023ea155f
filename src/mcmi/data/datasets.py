"""The in-memory data set type, the data-set registry, ``load_dataset`` and ``dataset_stats``.

Every loader returns an :class:`ImageDataset`: all images as one contiguous uint8 tensor
(N, 3, H, W) plus int64 labels. Data that does not fit in memory comes as a
:class:`mcmi.data.folder.LazyImageFolder`, which has the same interface except that it has no
``images`` tensor; both are read through :meth:`get_images`, which is all the loader uses.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mcmi.data.stats import KNOWN_STATS, DatasetStats, compute_stats
from mcmi.registry import Registry

__all__ = ["BUNDLED", "DATASETS", "DataError", "DatasetStats", "ImageDataset", "compute_stats",
           "dataset_stats", "find_bundled", "load_dataset", "normalize_split", "shared_data_dirs"]


class DataError(ValueError):
    """A data set is missing or malformed. The message names the path and what was expected."""


def normalize_split(split: str) -> str:
    """Map a split name to ``"train"`` or ``"test"`` (``"val"``/``"validation"`` mean test)."""
    s = str(split).lower()
    if s in ("train", "training"):
        return "train"
    if s in ("test", "val", "valid", "validation"):
        return "test"
    raise ValueError(f"unknown split {split!r}: expected 'train' or 'test' ('val' means test)")


@dataclass(eq=False)
class ImageDataset:
    """A labelled image data set held in memory.

    Attributes:
        images: uint8 tensor (N, 3, H, W), contiguous, RGB.
        labels: int64 tensor (N,), values in ``[0, num_classes)``.
        classes: class names; ``len(classes)`` is the number of classes (a class may have no
            samples in a given split).
        name: the data set's name (a registry name such as ``"cifar100"``), used for stats.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, Tensor) or self.images.dtype != torch.uint8:
            raise DataError(f"{self.name}: images must be a uint8 tensor")
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise DataError(f"{self.name}: images must have shape (N, 3, H, W), "
                            f"got {tuple(self.images.shape)}")
        self.images = self.images.contiguous()
        self.labels = torch.as_tensor(self.labels).to(torch.int64).reshape(-1)
        if self.labels.numel() != self.images.shape[0]:
            raise DataError(f"{self.name}: {self.images.shape[0]} images but "
                            f"{self.labels.numel()} labels")
        self.classes = [str(c) for c in self.classes]
        check_labels(self.labels, len(self.classes), self.name)

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.images.shape[0]

    def get_images(self, indices: Tensor) -> Tensor:
        """uint8 images (B, 3, H, W) at ``indices`` (an int64 tensor), on the images' device."""
        return self.images.index_select(0, indices.to(self.images.device))

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy with images and labels on ``device`` (still uint8), e.g. the whole set on GPU."""
        return ImageDataset(self.images.to(device), self.labels.to(device), self.classes, self.name)

    def subset(self, indices: Sequence[int] | Tensor) -> ImageDataset:
        """A new data set of the given rows (same classes and name)."""
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.images.device)
        return ImageDataset(self.images[idx], self.labels[idx.to(self.labels.device)],
                            self.classes, self.name)


def check_labels(labels: Tensor, num_classes: int, where: str | os.PathLike) -> None:
    """Raise :class:`DataError` naming ``where`` unless all labels lie in ``[0, num_classes)``."""
    if labels.numel() == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"labels out of range in {where}: found values in [{lo}, {hi}], "
                        f"expected [0, {num_classes - 1}] for {num_classes} classes")


# --------------------------------------------------------------------------- registry

DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
"""name -> ``loader(split, root, **kwargs)`` returning an ImageDataset (or a lazy one)."""

BUNDLED = ("cifar10-partial", "cifar100-partial", "tinyimagenet100-32px")


def load_dataset(name: str, split: str, root: str | os.PathLike | None = None,
                 **kwargs: Any) -> ImageDataset:
    """Load split ``"train"`` or ``"test"`` (``"val"`` is an alias of test) of data set ``name``.

    Names: ``cifar10``/``cifar100`` (python pickle folders; ``root`` is the folder or its parent,
    default env ``MCMI_DATA_DIR``), ``imagefolder`` (``root/train/<class>/*``, ``root/val/...``;
    keyword ``image_size``, ``lazy``), ``imagenet`` (an image folder stored at 256 px, lazily
    decoded when it does not fit in memory), ``npz`` (``root`` is the archive) and the bundled
    archives ``cifar10-partial``, ``cifar100-partial``, ``tinyimagenet100-32px`` (found with
    :func:`find_bundled`). Extra keyword arguments go to the loader.

    Raises:
        KeyError: unknown name (the message lists the known ones).
        DataError: the data are missing or malformed.
    """
    loader = DATASETS.get(name)
    return loader(normalize_split(split), root, **kwargs)


def _data_root(name: str, root: str | os.PathLike | None) -> Path:
    if root is None:
        env = os.environ.get("MCMI_DATA_DIR")
        if not env:
            raise DataError(f"data set {name!r} needs root= (its folder) or the environment "
                            "variable MCMI_DATA_DIR")
        root = env
    return Path(root).expanduser()


def _cifar_loader(name: str) -> Callable[..., ImageDataset]:
    def load(split: str, root: Any = None, **kw: Any) -> ImageDataset:
        from mcmi.data import cifar

        return getattr(cifar, f"load_{name}")(_data_root(name, root), split, **kw)

    return load


for _name in ("cifar10", "cifar100"):
    DATASETS.register(_name)(_cifar_loader(_name))


@DATASETS.register("imagefolder")
def _load_imagefolder(split: str, root: Any = None, **kw: Any) -> Any:
    from mcmi.data.folder import load_image_folder

    if root is None:
        raise DataError("data set 'imagefolder' needs root= (a folder with train/<class>/ "
                        "and val/<class>/ subfolders)")
    return load_image_folder(root, split, **kw)


@DATASETS.register("imagenet")
def _load_imagenet(split: str, root: Any = None, **kw: Any) -> Any:
    from mcmi.data.folder import load_image_folder

    base = _data_root("imagenet", root)
    if not (base / "train").is_dir() and (base / "imagenet").is_dir():
        base = base / "imagenet"
    kw.setdefault("image_size", 256)
    kw.setdefault("name", "imagenet")
    return load_image_folder(base, split, **kw)


@DATASETS.register("npz")
def _load_npz(split: str, root: Any = None, **kw: Any) -> ImageDataset:
    from mcmi.data.npz import load_npz

    if root is None:
        raise DataError("data set 'npz' needs root= (the path of the .npz archive)")
    return load_npz(root, split, **kw)


def shared_data_dirs() -> list[Path]:
    """Candidate folders of the bundled archives, in search order.

    ``$MCMI_SHARED_DATA`` if set, then ``../shared/data`` relative to the working directory and
    to the repository root. Each may hold ``<name>.npz`` directly or under ``data/``.
    """
    dirs = []
    env = os.environ.get("MCMI_SHARED_DATA")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path.cwd() / ".." / "shared" / "data")
    dirs.append(Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
    return dirs


def find_bundled(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of bundled archive ``name`` (``root`` may be the file or a folder holding it)."""
    candidates: list[Path] = []
    bases = [Path(root).expanduser()] if root is not None else shared_data_dirs()
    for base in bases:
        if base.is_file():
            return base
        candidates += [base / f"{name}.npz", base / "data" / f"{name}.npz"]
    for c in candidates:
        if c.is_file():
            return c
    where = ", ".join(str(c) for c in candidates)
    raise DataError(f"bundled data set {name!r} not found: looked for {where} "
                    "(set MCMI_SHARED_DATA to the folder holding it)")


def _bundled_loader(name: str) -> Callable[..., ImageDataset]:
    def load(split: str, root: Any = None, **kw: Any) -> ImageDataset:
        from mcmi.data.npz import load_npz

        return load_npz(find_bundled(name, root), split, name=name, **kw)

    load.__doc__ = f"Load the bundled archive {name}.npz."
    return load


for _name in BUNDLED:
    DATASETS.register(_name)(_bundled_loader(_name))


# --------------------------------------------------------------------------- stats

@lru_cache(maxsize=16)
def _stats_by_name(name: str, root: str | None) -> DatasetStats:
    ds = load_dataset(name, "train", root)
    return compute_stats(ds, max_images=None if isinstance(ds, ImageDataset) else 5_000)


def dataset_stats(name: str | Any, root: str | os.PathLike | None = None) -> DatasetStats:
    """Normalization mean/std for a data set name (or a data set object).

    CIFAR-10/100 (and their partial archives) get the standard published values, ``imagenet``
    the ImageNet values; other names are computed from their training split (cached per name
    and root). A data set object with a known or bundled name is treated as that name; any
    other object is measured itself (for a lazy folder on 5,000 evenly spaced images), so
    for a custom data set pass its training split (the test split must reuse those stats).
    """
    if isinstance(name, str):
        if name in KNOWN_STATS:
            return KNOWN_STATS[name]
        return _stats_by_name(name, None if root is None else str(root))
    ds = name
    if ds.name in KNOWN_STATS:
        return KNOWN_STATS[ds.name]
    if ds.name in BUNDLED:
        try:
            return _stats_by_name(ds.name, None if root is None else str(root))
        except DataError:  # the archive is elsewhere: measure the object itself
            pass
    return compute_stats(ds, max_images=None if isinstance(ds, ImageDataset) else 5_000)
