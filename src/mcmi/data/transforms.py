"""Batch transform objects for the loader: sample random parameters, then apply them.

A :class:`Transform` maps a uint8 batch (B, 3, H, W) to normalized floats in two steps,
``params = t.sample(n, height, width, generator)`` and ``t.apply(images, params)``, so that
parameters can be stored and replayed (e.g. to cache teacher outputs per augmented view).
The geometry is done by the batched functions of :mod:`mcmi.data.augment`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mcmi.data.augment import (
    CropFlipParams,
    ResizedCropParams,
    apply_crop_flip,
    apply_resized_crop,
    center_crop,
    normalize,
    sample_crop_flip,
    sample_resized_crop,
)

__all__ = ["Normalize", "RandomCropFlip", "RandomResizedCropFlip", "Transform",
           "default_augment"]


class Transform:
    """A batch transform uint8 (B, 3, H, W) -> normalized float, in two steps:
    ``params = t.sample(n, height, width, generator)`` and ``t.apply(images, params)``.
    ``t(images, generator)`` does both. Deterministic transforms have ``params`` None."""

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 dtype: torch.dtype = torch.float32, channels_last: bool = False) -> None:
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.dtype = dtype
        self.channels_last = channels_last

    def sample(self, n: int, height: int, width: int,
               generator: torch.Generator | None = None) -> Any:
        """Random parameters for ``n`` images of the given size (None: nothing random)."""
        return None

    def _geometry(self, images: Tensor, params: Any) -> Tensor:
        return images

    def apply(self, images: Tensor, params: Any, channels_last: bool | None = None) -> Tensor:
        """Apply the transform with the given parameters (as returned by :meth:`sample`)."""
        cl = self.channels_last if channels_last is None else channels_last
        return normalize(self._geometry(images, params), self.mean, self.std, self.dtype, cl)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None,
                 channels_last: bool | None = None) -> Tensor:
        params = self.sample(images.shape[0], images.shape[2], images.shape[3], generator)
        return self.apply(images, params, channels_last)

    def __repr__(self) -> str:
        extra = {k: v for k, v in vars(self).items() if k not in ("mean", "std")}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in extra.items())})"


class Normalize(Transform):
    """Evaluation transform: optional centre crop to ``center_crop`` pixels, then normalize."""

    def __init__(self, mean: Sequence[float], std: Sequence[float],
                 center_crop: int | None = None, **kw: Any) -> None:
        super().__init__(mean, std, **kw)
        self.center_crop = center_crop

    def _geometry(self, images: Tensor, params: Any) -> Tensor:
        return images if self.center_crop is None else center_crop(images, self.center_crop)


class RandomCropFlip(Transform):
    """CIFAR training transform: zero-padded random crop, random horizontal flip, normalize."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 4,
                 flip: bool = True, **kw: Any) -> None:
        super().__init__(mean, std, **kw)
        self.padding, self.flip = padding, flip

    def sample(self, n: int, height: int, width: int,
               generator: torch.Generator | None = None) -> CropFlipParams:
        return sample_crop_flip(n, self.padding, self.flip, generator)

    def _geometry(self, images: Tensor, params: CropFlipParams) -> Tensor:
        return apply_crop_flip(images, params)


class RandomResizedCropFlip(Transform):
    """ImageNet training transform: random-resized crop to ``size``, random flip, normalize."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], size: int,
                 scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                 **kw: Any) -> None:
        super().__init__(mean, std, **kw)
        self.size, self.scale, self.ratio, self.flip = size, scale, ratio, flip

    def sample(self, n: int, height: int, width: int,
               generator: torch.Generator | None = None) -> ResizedCropParams:
        return sample_resized_crop(n, height, width, self.scale, self.ratio, self.flip,
                                   generator)

    def _geometry(self, images: Tensor, params: ResizedCropParams) -> Tensor:
        return apply_resized_crop(images, params, self.size,
                                  torch.float64 if self.dtype == torch.float64 else torch.float32)


def default_augment(dataset: Any, train: bool, crop_size: int | None = None,
                    stats: Any = None, dtype: torch.dtype = torch.float32,
                    channels_last: bool = False) -> Transform:
    """The usual transform for a data set (``ImageDataset`` or lazy folder).

    Training: images up to 64 px get :class:`RandomCropFlip` with padding ``H // 8`` (4 for
    32 px); larger ones :class:`RandomResizedCropFlip` to ``crop_size`` (default 224 for
    ``imagenet``, else the stored size). Evaluation: :class:`Normalize`, centre-cropped to
    ``crop_size`` when that is smaller than the stored images. ``stats`` defaults to
    :func:`mcmi.data.datasets.dataset_stats` of the data set.
    """
    from mcmi.data.datasets import dataset_stats

    mean, std = stats if stats is not None else dataset_stats(dataset)
    _, h, w = dataset.image_shape
    if crop_size is None and dataset.name == "imagenet" and min(h, w) > 224:
        crop_size = 224
    kw: dict[str, Any] = {"dtype": dtype, "channels_last": channels_last}
    if not train:
        crop = crop_size if crop_size is not None and crop_size < min(h, w) else None
        return Normalize(mean, std, center_crop=crop, **kw)
    if max(h, w) <= 64:
        return RandomCropFlip(mean, std, padding=max(1, h // 8), **kw)
    return RandomResizedCropFlip(mean, std, size=crop_size or min(h, w), **kw)
