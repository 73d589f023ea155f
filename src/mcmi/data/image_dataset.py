"""The in-memory data set type, one uint8 tensor of images plus labels, and the errors and checks
every reader of :mod:`mcmi.data` shares.

Every loader returns an :class:`ImageDataset`: all images as one contiguous uint8 tensor
(N, 3, H, W) plus int64 labels. Data that does not fit in memory comes as a
:class:`mcmi.data.folder.LazyImageFolder`, which has the same interface except that it has no
``images`` tensor; both are read through :meth:`ImageDataset.get_images`, which is all the loader
uses.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DataError", "ImageDataset", "check_labels", "normalize_split"]


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
