"""Batched data augmentation on whole uint8 tensors (no Python loop over samples).

Each augmentation is split in two: ``sample_*`` draws the random parameters of a batch (crop
offsets or boxes, flip bits) from a ``torch.Generator``, and ``apply_*`` applies given
parameters. ``apply(sample(g))`` is the augmentation, and parameters can be stored so that a
teacher's outputs on exactly the same views can be cached and looked up later.

* Random crop with zero padding + horizontal flip (CIFAR recipe): per-batch index math. The
  batch is zero-padded once (black in pixel space, as in "pad, crop, then normalize"
  pipelines), then one ``gather`` builds every output pixel from its padded source row and
  column, with each image's offsets and flip folded into the index. Exact, stays uint8.
* Random-resized crop + horizontal flip (ImageNet recipe): boxes are drawn as in the usual
  RandomResizedCrop (area fraction in ``scale``, log-uniform aspect in ``ratio``, 10 tries,
  then a centre-crop fallback) but for the whole batch at once; resampling uses one batched
  affine grid (``F.affine_grid`` + bilinear ``F.grid_sample``, half-pixel centres, border
  padding). Unlike Pillow it does not antialias when shrinking a box.
* Normalization ``(x / 255 - mean) / std`` per channel into float32 (or a given dtype),
  optionally channels_last.

The transform objects the loader uses are in :mod:`mcmi.data.transforms`.

Random numbers are drawn on the generator's device (CPU by default) and the parameters are
moved to the images' device, so results do not depend on where the images live.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CropFlipParams",
    "ResizedCropParams",
    "apply_crop_flip",
    "apply_resized_crop",
    "center_crop",
    "normalize",
    "random_crop_flip",
    "random_resized_crop",
    "sample_crop_flip",
    "sample_resized_crop",
]


class _Params:
    """Per-sample parameter tensors of a batch: index, move, and (de)serialize them together."""

    def _tensors(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.flip)  # type: ignore[attr-defined]

    def __getitem__(self, idx: Any) -> Any:
        return type(self)(**{k: v[idx] if isinstance(v, Tensor) else v
                             for k, v in self._tensors().items()})

    def to(self, device: torch.device | str) -> Any:
        """The same parameters on ``device``."""
        return type(self)(**{k: v.to(device) if isinstance(v, Tensor) else v
                             for k, v in self._tensors().items()})

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (CPU tensors and ints), e.g. for ``torch.save``."""
        return {k: v.cpu() if isinstance(v, Tensor) else v for k, v in self._tensors().items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


@dataclass
class CropFlipParams(_Params):
    """Padded random crop + flip of a batch: ``top``/``left`` int64 (B,) offsets of the crop in
    the padded image (``0 .. 2 * padding``; ``padding`` means no shift), ``flip`` bool (B,)."""

    top: Tensor
    left: Tensor
    flip: Tensor
    padding: int = 4


@dataclass
class ResizedCropParams(_Params):
    """Random-resized crop + flip of a batch: box ``top``, ``left``, ``height``, ``width``
    (int64 (B,), source pixels) and ``flip`` bool (B,)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _flips(n: int, flip: bool, generator: torch.Generator | None) -> Tensor:
    dev = _gen_device(generator)
    if not flip:
        return torch.zeros(n, dtype=torch.bool, device=dev)
    return torch.rand(n, generator=generator, device=dev) < 0.5


def sample_crop_flip(n: int, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> CropFlipParams:
    """Draw crop offsets (uniform in ``[0, 2 * padding]``) and flip bits for ``n`` images."""
    dev = _gen_device(generator)
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    return CropFlipParams(top, left, _flips(n, flip, generator), padding)


def _crop_flip(images: Tensor, params: CropFlipParams) -> Tensor:
    """Zero-pad, then one gather per batch: output pixel (i, j) of image b reads padded pixel
    (top_b + i, left_b + j'), with j' = W - 1 - j where image b is flipped."""
    b, c, h, w = images.shape
    dev = images.device
    p = params.padding
    top, left, flip = (params.top.to(dev), params.left.to(dev), params.flip.to(dev))
    padded = F.pad(images, (p, p, p, p)) if p else images
    hp, wp = h + 2 * p, w + 2 * p
    j = torch.arange(w, device=dev)
    rows = top[:, None] + torch.arange(h, device=dev)                # (B, H) padded rows
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - j, j)  # (B, W) padded cols
    src = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, hp * wp).gather(2, src).view(b, c, h, w)


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def apply_crop_flip(images: Tensor, params: CropFlipParams, channels_last: bool = False) -> Tensor:
    """Apply padded crops and flips to a batch (B, C, H, W); same dtype and size as the input."""
    return _crop_flip(images, params).contiguous(memory_format=_memory_format(channels_last))


def random_crop_flip(images: Tensor, padding: int = 4, flip: bool = True,
                     generator: torch.Generator | None = None) -> Tensor:
    """Random crop with zero padding plus random horizontal flip (keeps dtype and size)."""
    return apply_crop_flip(images, sample_crop_flip(len(images), padding, flip, generator))


def sample_resized_crop(n: int, height: int, width: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                        generator: torch.Generator | None = None,
                        attempts: int = 10) -> ResizedCropParams:
    """Draw random-resized-crop boxes in an ``height`` x ``width`` image, and flip bits.

    Per image: up to ``attempts`` tries of area ``U(scale) * H * W`` and aspect ratio
    log-uniform in ``ratio``; the first box that fits is used, else the largest centred box
    whose aspect ratio is clamped into ``ratio``. Offsets are uniform over valid positions.
    """
    dev = _gen_device(generator)
    area = height * width * (scale[0] + (scale[1] - scale[0])
                             * torch.rand(n, attempts, generator=generator, device=dev,
                                          dtype=torch.float64))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * torch.rand(n, attempts, generator=generator,
                                                   device=dev, dtype=torch.float64))
    w = torch.sqrt(area * aspect).round().long()
    h = torch.sqrt(area / aspect).round().long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # index of the first valid try
    found = ok.any(1)
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(found, w.gather(1, first)[:, 0], fw)
    h = torch.where(found, h.gather(1, first)[:, 0], fh)
    u = torch.rand(n, 2, generator=generator, device=dev, dtype=torch.float64)
    top = torch.minimum((u[:, 0] * (height - h + 1)).floor().long(), height - h)
    left = torch.minimum((u[:, 1] * (width - w + 1)).floor().long(), width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return ResizedCropParams(top, left, h, w, _flips(n, flip, generator))


def apply_resized_crop(images: Tensor, params: ResizedCropParams, size: int | Sequence[int],
                       dtype: torch.dtype = torch.float32) -> Tensor:
    """Resample each image's box to ``size`` (bilinear), flipping where asked.

    Returns a float tensor (B, C, size, size) on the pixel scale ``[0, 255]`` (normalize it
    with :func:`normalize`). Computed in float32 (float64 if ``dtype`` is float64).
    """
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    b, c, h, w = images.shape
    dev = images.device
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    top, left, bh, bw = (t.to(dev, cdt) for t in (params.top, params.left, params.height,
                                                  params.width))
    sign = 1.0 - 2.0 * params.flip.to(dev, cdt)
    theta = torch.zeros(b, 2, 3, device=dev, dtype=cdt)
    theta[:, 0, 0] = sign * bw / w           # normalized coords: pixel edges at -1 and +1
    theta[:, 0, 2] = (2 * left + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * top + bh) / h - 1
    grid = F.affine_grid(theta, [b, c, oh, ow], align_corners=False)
    out = F.grid_sample(images.to(cdt), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.to(dtype)


def random_resized_crop(images: Tensor, size: int | Sequence[int],
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                        generator: torch.Generator | None = None) -> Tensor:
    """Random-resized crop + flip of a batch, float output on the [0, 255] scale."""
    params = sample_resized_crop(len(images), images.shape[2], images.shape[3], scale, ratio,
                                 flip, generator)
    return apply_resized_crop(images, params, size)


def center_crop(images: Tensor, size: int | Sequence[int]) -> Tensor:
    """The centred ``size`` window of a batch (a view; no resampling)."""
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = images.shape[-2:]
    if oh > h or ow > w:
        raise ValueError(f"center_crop: {oh}x{ow} is larger than the images ({h}x{w})")
    top, left = (h - oh) // 2, (w - ow) // 2
    return images[..., top:top + oh, left:left + ow]


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float],
              dtype: torch.dtype = torch.float32, channels_last: bool = False) -> Tensor:
    """``(images / 255 - mean) / std`` per channel, for pixel values on the [0, 255] scale
    (uint8 or float). Output ``dtype``; channels_last memory format if asked."""
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    dev = images.device
    m = torch.as_tensor(mean, dtype=cdt, device=dev).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=cdt, device=dev).view(1, -1, 1, 1)
    out = torch.addcmul(-m / s, images.to(cdt), 1.0 / (255.0 * s))
    return out.to(dtype).contiguous(memory_format=_memory_format(channels_last))
