"""``TensorLoader``: batches straight from an in-memory uint8 data set, no worker processes.

Order: epoch ``e`` uses the permutation drawn from a generator seeded by ``(seed, e)`` (the
same on every rank), so any epoch's order can be rebuilt. With ``world_size > 1`` the order is
padded by repeating its head to a multiple of ``world_size`` and rank ``r`` takes every
``world_size``-th index from ``r``, as ``torch.utils.data.DistributedSampler`` does: every rank
gets ``ceil(n / world_size)`` samples and the shares are disjoint apart from the padding.

Augmentation: batch ``b`` of epoch ``e`` on rank ``r`` draws its random parameters from a
generator seeded by ``(seed, e, r, b)``, so resuming in the middle of an epoch reproduces the
remaining batches exactly. Images stay uint8 until a batch is gathered; the batch is moved to
``device`` and augmented/normalized there.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mcmi.data.transforms import Transform, default_augment

__all__ = ["TensorLoader", "derive_seed"]

_ORDER, _AUGMENT = 0, 1


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (via numpy's SeedSequence); stable across runs."""
    state = np.random.SeedSequence([int(p) % (1 << 64) for p in parts]).generate_state(
        2, np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)


class TensorLoader:
    """Iterate ``{"image", "label", "index"}`` batches of a data set.

    Args:
        dataset: an :class:`~mcmi.data.image_dataset.ImageDataset` or anything with ``labels``,
            ``__len__``, ``get_images(indices)``, ``image_shape`` and ``name`` (e.g. a
            :class:`~mcmi.data.folder.LazyImageFolder`).
        batch_size: samples per batch (per rank).
        shuffle: reshuffle every epoch (order seeded by ``(seed, epoch)``).
        augment: a :class:`~mcmi.data.transforms.Transform`; ``True`` = the data set's default
            training augmentation, ``False``/``None`` = its evaluation transform (normalize).
        seed: base seed of the order and of the augmentation.
        drop_last: drop this rank's last incomplete batch.
        device: where batches are built and returned.
        channels_last: return images in channels_last memory format.
        rank, world_size: this process's share for data parallelism.
        indices: restrict to these dataset indices (ints, or a bool mask of length N);
            ``"index"`` in a batch is still the index into the full data set.
        return_params: add the batch's augmentation parameters under ``"params"``.
        pad: with ``world_size > 1``, pad the order so every rank gets the same number of samples
            (training: DDP needs equal step counts). ``False`` gives uneven, disjoint shares that
            cover every sample exactly once: right for evaluation, whose sums are all-reduced once.
        stats: (mean, std) for the default transforms (default
            :func:`~mcmi.data.datasets.dataset_stats` of the data set); ignored when
            ``augment`` is a Transform.

    ``"image"`` is float (the transform's dtype), ``"label"`` and ``"index"`` int64.
    """

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool = False,
                 augment: Transform | bool | None = None, seed: int = 0,
                 drop_last: bool = False, device: torch.device | str = "cpu",
                 channels_last: bool = False, rank: int = 0, world_size: int = 1,
                 indices: Sequence[int] | Tensor | np.ndarray | None = None,
                 return_params: bool = False,
                 stats: tuple[Sequence[float], Sequence[float]] | None = None, pad: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        if isinstance(augment, Transform):
            self.transform = augment
        else:
            self.transform = default_augment(dataset, train=bool(augment), stats=stats)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.device = torch.device(device)
        self.channels_last = bool(channels_last)
        self.rank, self.world_size = int(rank), int(world_size)
        self.pad = bool(pad)
        self.return_params = return_params
        self.indices = self._check_indices(indices, len(dataset))
        self.epoch = 0
        self._position = 0            # batches of the current epoch handed out so far
        self._resume: int | None = None

    @staticmethod
    def _check_indices(indices: Any, n: int) -> Tensor:
        if indices is None:
            return torch.arange(n)
        t = torch.as_tensor(np.asarray(indices) if not isinstance(indices, Tensor) else indices)
        t = t.cpu().reshape(-1)
        if t.dtype == torch.bool:
            if t.numel() != n:
                raise ValueError(f"index mask has length {t.numel()}, data set has {n} samples")
            return t.nonzero().reshape(-1)
        if t.is_floating_point():
            raise ValueError("indices must be integers or a bool mask")
        t = t.long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise ValueError(f"indices out of range [0, {n}): min {int(t.min())}, "
                             f"max {int(t.max())}")
        return t

    # ------------------------------------------------------------------ sizes and order
    @property
    def num_samples(self) -> int:
        """Samples per epoch on this rank (``ceil(len(indices) / world_size)``; without ``pad`` the
        ranks below ``len(indices) % world_size`` get one more than the others)."""
        n = len(self.indices)
        if self.pad:
            return math.ceil(n / self.world_size)
        return n // self.world_size + (self.rank < n % self.world_size)

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and augmentation) the next iteration uses.

        Setting the epoch that is already current keeps a position restored by
        :meth:`load_state_dict`; a different epoch starts from its first batch.
        """
        if int(epoch) != self.epoch:
            self._position, self._resume = 0, None
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int | None = None) -> Tensor:
        """Dataset indices of this rank for ``epoch`` (default: current), in iteration order."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = len(self.indices)
        if self.shuffle:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, _ORDER))
            perm = torch.randperm(n, generator=g)
        else:
            perm = torch.arange(n)
        if self.world_size > 1 and n and not self.pad:
            perm = perm[self.rank::self.world_size]
        elif self.world_size > 1 and n:
            total = self.num_samples * self.world_size
            pad = total - n
            if pad:
                perm = torch.cat([perm, perm.repeat(math.ceil(pad / n))[:pad]])
            perm = perm[self.rank:total:self.world_size]
        return self.indices[perm]

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        start = self._resume or 0
        self._resume = None
        epoch, order = self.epoch, self.epoch_order()
        self._position = start
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = self._make_batch(idx, epoch, b)
            self._position = b + 1
            yield batch

    def _gather(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 images (B, 3, H, W) on ``self.device`` and labels of dataset rows ``idx``."""
        images = self.dataset.get_images(idx)           # uint8 (B, 3, H, W)
        labels = self.dataset.labels[idx.to(self.dataset.labels.device)]
        if images.device != self.device:
            if self.device.type == "cuda" and images.device.type == "cpu":
                images = images.pin_memory().to(self.device, non_blocking=True)
            else:
                images = images.to(self.device)
        return images, labels

    def _batch_generator(self, epoch: int, b: int) -> torch.Generator:
        """The generator of batch ``b`` of ``epoch`` on this rank (seeded by all four)."""
        return torch.Generator().manual_seed(derive_seed(self.seed, epoch, _AUGMENT, self.rank, b))

    def _make_batch(self, idx: Tensor, epoch: int, b: int) -> dict[str, Any]:
        images, labels = self._gather(idx)
        g = self._batch_generator(epoch, b)
        params = self.transform.sample(images.shape[0], images.shape[2], images.shape[3], g)
        out = {
            "image": self.transform.apply(images, params,
                                          channels_last=True if self.channels_last else None),
            "label": labels.to(self.device),
            "index": idx.to(self.device),
        }
        if self.return_params:
            out["params"] = params
        return out

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Epoch and number of batches of it already handed out (plus a config check)."""
        return {"epoch": self.epoch, "batch": self._position, "seed": self.seed,
                "num_indices": len(self.indices), "batch_size": self.batch_size,
                "world_size": self.world_size, "shuffle": self.shuffle,
                "drop_last": self.drop_last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: the next iteration continues with the next batch."""
        for key in ("num_indices", "batch_size", "world_size", "shuffle", "drop_last"):
            mine = self.state_dict()[key]
            if key in state and state[key] != mine:
                raise ValueError(f"loader state was saved with {key}={state[key]!r}, "
                                 f"this loader has {mine!r}")
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self._position = self._resume = int(state["batch"])

    def __repr__(self) -> str:
        return (f"TensorLoader({getattr(self.dataset, 'name', '?')}, n={len(self.indices)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, rank={self.rank}/"
                f"{self.world_size}, transform={self.transform!r})")
