"""The data-set registry, ``load_dataset``, ``find_bundled`` and ``dataset_stats``: names to readers.

The readers (:mod:`~mcmi.data.cifar`, :mod:`~mcmi.data.folder`, :mod:`~mcmi.data.npz`) return an
:class:`~mcmi.data.image_dataset.ImageDataset` (or a lazy folder with the same interface).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from mcmi.data import cifar
from mcmi.data.folder import load_image_folder
from mcmi.data.image_dataset import DataError, ImageDataset, check_labels, normalize_split
from mcmi.data.npz import load_npz
from mcmi.data.stats import KNOWN_STATS, DatasetStats, compute_stats
from mcmi.registry import Registry

# the data set type, its checks and the stats were defined here before: still importable from here
__all__ = ["BUNDLED", "DATASETS", "DataError", "DatasetStats", "ImageDataset", "check_labels",
           "compute_stats", "dataset_stats", "find_bundled", "load_dataset", "normalize_split",
           "shared_data_dirs"]


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
        return getattr(cifar, f"load_{name}")(_data_root(name, root), split, **kw)

    return load


for _name in ("cifar10", "cifar100"):
    DATASETS.register(_name)(_cifar_loader(_name))


@DATASETS.register("imagefolder")
def _load_imagefolder(split: str, root: Any = None, **kw: Any) -> Any:
    if root is None:
        raise DataError("data set 'imagefolder' needs root= (a folder with train/<class>/ "
                        "and val/<class>/ subfolders)")
    return load_image_folder(root, split, **kw)


@DATASETS.register("imagenet")
def _load_imagenet(split: str, root: Any = None, **kw: Any) -> Any:
    base = _data_root("imagenet", root)
    if not (base / "train").is_dir() and (base / "imagenet").is_dir():
        base = base / "imagenet"
    kw.setdefault("image_size", 256)
    kw.setdefault("name", "imagenet")
    return load_image_folder(base, split, **kw)


@DATASETS.register("npz")
def _load_npz(split: str, root: Any = None, **kw: Any) -> ImageDataset:
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
