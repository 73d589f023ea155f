"""CIFAR-10 and CIFAR-100 in their official "python version" pickle folders.

CIFAR-10 (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
``batches.meta``. CIFAR-100 (``cifar-100-python``): ``train``, ``test``, ``meta``. Each batch is a
pickled dict whose ``data`` is a uint8 array (N, 3072) holding the red, green and blue 32x32
planes of each image in turn, i.e. NCHW once reshaped. The files come from Python 2, so keys may
be ``str`` or ``bytes``; both are accepted.

Unpickling is restricted to the few numpy globals these files need, so a planted pickle cannot
run code; anything else is a :class:`DataError`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mcmi.data.image_dataset import DataError, ImageDataset, check_labels, normalize_split

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "find_cifar_dir",
    "load_cifar10",
    "load_cifar100",
    "read_cifar_pickle",
]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]

# kind -> (display name, folder name, train files, test files, meta file)
_LAYOUT = {
    "cifar10": ("CIFAR-10", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta"),
    "cifar100": ("CIFAR-100", "cifar-100-python", ["train"], ["test"], "meta"),
}

_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("numpy.core"):  # pickles from numpy < 2
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):  # numpy 1.x
            module = "numpy.core" + module[len("numpy._core"):]
        return super().find_class(module, name)


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle one CIFAR file into a dict with ``str`` keys (``bytes`` values decoded too)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"missing CIFAR file {path}") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError) as e:  # corrupt or foreign file
        raise DataError(f"corrupt CIFAR pickle {path}: {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise DataError(f"corrupt CIFAR pickle {path}: expected a dict, got {type(obj).__name__}")

    def text(v: Any) -> Any:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    return {text(k): v for k, v in obj.items()}


def find_cifar_dir(root: str | os.PathLike, kind: str, split: str = "train") -> Path:
    """The folder holding the pickles of ``kind`` ("cifar10"/"cifar100") for ``split``.

    ``root`` may be the pickle folder itself or its parent.
    """
    title, folder, train, test, meta = _LAYOUT[kind]
    needed = (train if normalize_split(split) == "train" else test) + [meta]
    root = Path(root).expanduser()
    for cand in (root, root / folder):
        present = [f for f in needed if (cand / f).is_file()]
        if len(present) == len(needed):
            return cand
        if present:
            missing = ", ".join(f for f in needed if f not in present)
            raise DataError(f"incomplete {title} folder {cand}: missing {missing}")
    expected = ", ".join(_describe(train) + test + [meta])
    raise DataError(f"no {title} pickles in {root}: expected files {expected} "
                    f"(the folder {folder})")


def _describe(files: list[str]) -> list[str]:
    return [f"{files[0]}..{files[-1]}"] if len(files) > 1 else files


def _read_batches(files: list[Path], label_key: str,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    datas, labels = [], []
    for path in files:
        d = read_cifar_pickle(path)
        if "data" not in d or label_key not in d:
            raise DataError(f"malformed CIFAR pickle {path}: expected keys 'data' and "
                            f"{label_key!r}, found {sorted(d)}")
        x = np.asarray(d["data"])
        y = np.asarray(d[label_key])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise DataError(f"malformed CIFAR pickle {path}: 'data' must be uint8 of shape "
                            f"(N, 3072), got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"malformed CIFAR pickle {path}: {len(x)} images but labels of "
                            f"shape {y.shape} and dtype {y.dtype}")
        y = y.astype(np.int64)
        check_labels(torch.from_numpy(y), num_classes, path)
        datas.append(x)
        labels.append(y)
    return np.concatenate(datas), np.concatenate(labels)


def _class_names(meta_path: Path, key: str, expected: int) -> list[str]:
    meta = read_cifar_pickle(meta_path)
    names = meta.get(key)
    if names is None or len(names) != expected:
        raise DataError(f"malformed CIFAR meta file {meta_path}: expected {expected} names "
                        f"under {key!r}, found keys {sorted(meta)}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load(root: Any, split: str, kind: str, label_key: str, names_key: str,
          num_classes: int) -> ImageDataset:
    split = normalize_split(split)
    _, _, train, test, meta = _LAYOUT[kind]
    folder = find_cifar_dir(root, kind, split)
    files = [folder / f for f in (train if split == "train" else test)]
    x, y = _read_batches(files, label_key, num_classes)
    classes = _class_names(folder / meta, names_key, num_classes)
    images = torch.from_numpy(x.reshape(-1, 3, 32, 32).copy())
    return ImageDataset(images, torch.from_numpy(y), classes, kind)


def load_cifar10(root: str | os.PathLike, split: str = "train") -> ImageDataset:
    """Read CIFAR-10 from its pickle folder (``root`` = ``cifar-10-batches-py`` or its parent).

    Train is ``data_batch_1..5`` concatenated in order (50,000 images), test ``test_batch``.
    """
    return _load(root, split, "cifar10", "labels", "label_names", 10)


def load_cifar100(root: str | os.PathLike, split: str = "train",
                  label_type: str = "fine") -> ImageDataset:
    """Read CIFAR-100 from its pickle folder (``root`` = ``cifar-100-python`` or its parent).

    ``label_type`` ``"fine"`` (100 classes, default) or ``"coarse"`` (20 superclasses).
    """
    if label_type == "fine":
        return _load(root, split, "cifar100", "fine_labels", "fine_label_names", 100)
    if label_type == "coarse":
        ds = _load(root, split, "cifar100", "coarse_labels", "coarse_label_names", 20)
        ds.name = "cifar100-coarse"
        return ds
    raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}")
