"""Image data sets packed as numpy ``.npz`` archives.

Keys: ``x_train``, ``x_test`` (uint8, (N, H, W, 3) NHWC RGB; (N, 3, H, W) is accepted too),
``y_train``, ``y_test`` (integer class indices). Optional ``class_names`` (else ``wnids``) give
the class list. Only the requested split's arrays are decompressed. ``allow_pickle`` stays off.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcmi.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from mcmi.data.image_dataset import DataError, ImageDataset, check_labels, normalize_split

__all__ = ["load_npz", "save_npz"]

_KNOWN_CLASSES = {
    "cifar10": CIFAR10_CLASSES, "cifar10-partial": CIFAR10_CLASSES,
    "cifar100": CIFAR100_CLASSES, "cifar100-partial": CIFAR100_CLASSES,
}


def _to_nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim != 4:
        raise DataError(f"malformed npz {path}: {key!r} must be uint8 (N, H, W, 3), "
                        f"got {x.dtype} {x.shape}")
    if x.shape[3] == 3:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape[1] == 3:
        return np.ascontiguousarray(x)
    raise DataError(f"malformed npz {path}: {key!r} must have 3 channels (N, H, W, 3), "
                    f"got shape {x.shape}")


def _names(arr: np.ndarray) -> list[str]:
    return [a.decode() if isinstance(a, bytes) else str(a) for a in arr.tolist()]


def load_npz(path: str | os.PathLike, split: str = "train", name: str | None = None,
             classes: list[str] | None = None) -> ImageDataset:
    """Read one split of an ``.npz`` image archive.

    Args:
        path: the archive.
        split: ``"train"`` or ``"test"`` (``"val"`` = test).
        name: data set name (default: the file's stem), used for stats and known class lists.
        classes: class names; default the archive's ``class_names``/``wnids``, else the known
            list for a CIFAR name, else ``"0".."K-1"`` with K = 1 + the largest label over
            both splits.

    Raises:
        DataError: missing file, not an npz archive, missing keys, bad shapes or labels.
    """
    path = Path(path).expanduser()
    split = normalize_split(split)
    name = name or path.stem
    if not path.is_file():
        raise DataError(f"npz archive not found: {path}")
    xk, yk = f"x_{split}", f"y_{split}"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (xk, yk) if k not in z.files]
            if missing:
                raise DataError(f"malformed npz {path}: missing keys {missing}; expected "
                                f"x_train, y_train, x_test, y_test, found {z.files}")
            x = z[xk]
            y = z[yk]
            if classes is None:
                for key in ("class_names", "wnids"):
                    if key in z.files:
                        classes = _names(z[key])
                        break
            if classes is None and name not in _KNOWN_CLASSES:
                highest = [int(z[k].max()) for k in ("y_train", "y_test")
                           if k in z.files and z[k].size]
                classes = [str(i) for i in range(max(highest, default=-1) + 1)]
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataError(f"cannot read npz archive {path}: {type(e).__name__}: {e}") from None
    if classes is None:
        classes = list(_KNOWN_CLASSES[name])
    images = torch.from_numpy(_to_nchw(x, path, xk))
    if y.ndim != 1 or len(y) != len(images) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"malformed npz {path}: {yk!r} must be integer of shape "
                        f"({len(images)},), got {y.dtype} {y.shape}")
    labels = torch.from_numpy(y.astype(np.int64))
    check_labels(labels, len(classes), f"{path} ({yk})")
    return ImageDataset(images, labels, classes, name)


def save_npz(path: str | os.PathLike, train: ImageDataset, test: ImageDataset,
             **extra: Any) -> None:
    """Write two splits as a compressed archive in the format :func:`load_npz` reads (NHWC)."""
    np.savez_compressed(
        path,
        x_train=train.images.permute(0, 2, 3, 1).cpu().numpy(), y_train=train.labels.cpu().numpy(),
        x_test=test.images.permute(0, 2, 3, 1).cpu().numpy(), y_test=test.labels.cpu().numpy(),
        class_names=np.array(train.classes), **extra)
