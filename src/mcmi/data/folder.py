"""ImageNet-style class folders: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*``.

Images are decoded with Pillow, converted to RGB and brought to ``image_size`` by resizing the
shorter side and cropping the centre (aspect ratio kept; ``keep_aspect=False`` stretches
instead). Resampling is bilinear with Pillow's antialiasing; JPEGs are first DCT-downscaled with
``Image.draft`` when much larger than needed, which is what makes decoding ImageNet affordable.

A split that fits the memory budget is decoded once into an :class:`ImageDataset`; otherwise
:class:`LazyImageFolder` decodes the rows of each batch on demand (in a thread pool; Pillow
releases the GIL while decoding) behind the same ``get_images`` interface.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mcmi.data.image_dataset import DataError, ImageDataset, check_labels, normalize_split

__all__ = [
    "IMAGE_EXTENSIONS",
    "LazyImageFolder",
    "decode_image",
    "load_image_folder",
    "memory_budget",
    "scan_image_folder",
]

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".gif",
                    ".tif", ".tiff")


def _size_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def decode_image(path: str | os.PathLike, image_size: int | Sequence[int],
                 keep_aspect: bool = True) -> np.ndarray:
    """Decode one image file to a uint8 RGB array (H, W, 3) of size ``image_size``.

    Raises:
        DataError: the file is missing, truncated or not an image (the message names it).
    """
    th, tw = _size_hw(image_size)
    try:
        with Image.open(path) as im:
            w, h = im.size
            scale = max(tw / w, th / h) if keep_aspect else None
            if im.format == "JPEG":
                need = ((math.ceil(w * scale), math.ceil(h * scale)) if scale is not None
                        else (tw, th))
                im.draft("RGB", need)  # reduces the decode scale; the result is >= need
            rgb = im.convert("RGB")
            w2, h2 = rgb.size
            if scale is not None:  # centre box of the target's aspect, in drafted pixels
                s = max(tw / w2, th / h2)
                bw, bh = tw / s, th / s
                box = ((w2 - bw) / 2, (h2 - bh) / 2, (w2 + bw) / 2, (h2 + bh) / 2)
            else:
                box = (0, 0, w2, h2)
            out = rgb.resize((tw, th), Image.Resampling.BILINEAR, box=box)
            return np.array(out, dtype=np.uint8)  # writable copy
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path} (corrupt or not an image): {e}") from None


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dir(root: Path, split: str) -> Path:
    names = ["train"] if split == "train" else ["val", "test"]
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DataError(f"no {'/'.join(names)} folder in {root}: expected an ImageNet-style layout "
                    f"{root}/train/<class>/<images> and {root}/val/<class>/<images>")


def scan_image_folder(root: str | os.PathLike, split: str = "train",
                      classes: list[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """List ``(path, label)`` of every image of a split, and the class names.

    Classes are the sorted sub-folder names of ``root/train`` (so validation labels match
    training labels), or of the split's own folder when there is no ``train``. Files are found
    recursively and sorted; files without an image extension are skipped.

    Raises:
        DataError: no split folder, no class folders, an empty class folder, or a validation
            class unknown to training.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    split = normalize_split(split)
    sdir = _split_dir(root, split)
    present = _class_dirs(sdir)
    if not present:
        raise DataError(f"no class folders in {sdir}: expected {sdir}/<class>/<image files>")
    if classes is None:
        train_dir = root / "train"
        classes = _class_dirs(train_dir) if train_dir.is_dir() else present
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in present if c not in index]
    if unknown:
        raise DataError(f"class folders in {sdir} not among the training classes: "
                        f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    samples: list[tuple[Path, int]] = []
    for c in present:
        files = sorted(p for p in (sdir / c).rglob("*")
                       if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise DataError(f"empty class folder {sdir / c}: expected image files "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        samples += [(p, index[c]) for p in files]
    return samples, list(classes)


def memory_budget() -> int:
    """Bytes an in-memory split may take: env ``MCMI_DATA_MAX_BYTES`` or half the RAM."""
    env = os.environ.get("MCMI_DATA_MAX_BYTES")
    if env:
        return int(float(env))
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class LazyImageFolder:
    """An image folder decoded batch-wise on demand; same interface as :class:`ImageDataset`
    apart from the ``images`` tensor (use :meth:`get_images`, or :meth:`materialize`)."""

    def __init__(self, samples: list[tuple[Path, int]], classes: list[str], name: str,
                 image_size: int | Sequence[int], keep_aspect: bool = True,
                 num_workers: int | None = None) -> None:
        self.paths = [p for p, _ in samples]
        self.labels = torch.tensor([y for _, y in samples], dtype=torch.int64)
        self.classes = list(classes)
        self.name = name
        self.image_size = _size_hw(image_size)
        self.keep_aspect = keep_aspect
        self.num_workers = num_workers or min(8, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, H, W) of every decoded image."""
        return (3, *self.image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None
        return state

    def _decode(self, i: int) -> np.ndarray:
        return decode_image(self.paths[i], self.image_size, self.keep_aspect)

    def get_images(self, indices: Tensor | Sequence[int]) -> Tensor:
        """Decode the images at ``indices`` into a uint8 tensor (B, 3, H, W) on the CPU."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).tolist()
        out = torch.empty((len(idx), *self.image_shape), dtype=torch.uint8)
        if self.num_workers > 1 and len(idx) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.num_workers)
            arrays = self._pool.map(self._decode, idx)
        else:
            arrays = map(self._decode, idx)
        for k, a in enumerate(arrays):
            out[k] = torch.from_numpy(a).permute(2, 0, 1)
        return out

    def close(self) -> None:
        """Stop the decoding threads (they restart on the next :meth:`get_images`)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def subset(self, indices: Sequence[int] | Tensor) -> LazyImageFolder:
        """A lazy data set of the given rows (same classes, name and decoding); nothing is read."""
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1).tolist()
        return self.relabeled(self.labels[idx], self.classes, [self.paths[i] for i in idx])

    def relabeled(self, labels: Tensor, classes: Sequence[str], paths: Sequence[Path] | None = None) -> LazyImageFolder:
        """The same images (or ``paths``) under new ``labels`` and class names (e.g. merged classes)."""
        paths = list(self.paths if paths is None else paths)
        labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
        if labels.numel() != len(paths):
            raise DataError(f"{self.name}: {len(paths)} images but {labels.numel()} labels")
        check_labels(labels, len(classes), self.name)
        return LazyImageFolder(list(zip(paths, labels.tolist())), list(classes), self.name, self.image_size,
                               self.keep_aspect, self.num_workers)

    def materialize(self, batch_size: int = 512) -> ImageDataset:
        """Decode everything into an in-memory :class:`ImageDataset`."""
        n = len(self)
        images = torch.empty((n, *self.image_shape), dtype=torch.uint8)
        for s in range(0, n, batch_size):
            images[s:s + batch_size] = self.get_images(torch.arange(s, min(n, s + batch_size)))
        return ImageDataset(images, self.labels.clone(), self.classes, self.name)


def load_image_folder(root: str | os.PathLike, split: str = "train",
                      image_size: int | Sequence[int] = 224, lazy: bool | None = None,
                      keep_aspect: bool = True, num_workers: int | None = None,
                      max_memory_bytes: int | None = None,
                      name: str = "imagefolder") -> ImageDataset | LazyImageFolder:
    """Load a split of an ImageNet-style folder at ``image_size`` (int or (H, W)).

    ``lazy=None`` decodes into memory when ``N * 3 * H * W`` bytes fit ``max_memory_bytes``
    (default :func:`memory_budget`) and returns a :class:`LazyImageFolder` otherwise;
    ``True``/``False`` force either.
    """
    samples, classes = scan_image_folder(root, split)
    h, w = _size_hw(image_size)
    budget = memory_budget() if max_memory_bytes is None else max_memory_bytes
    if lazy is None:
        lazy = len(samples) * 3 * h * w > budget
    ds = LazyImageFolder(samples, classes, name, (h, w), keep_aspect, num_workers)
    if lazy:
        return ds
    try:
        return ds.materialize()
    finally:
        ds.close()
