"""Teacher logits computed once and reused every epoch, for logit-based distillation (KD, DKD).

A frozen teacher's logits depend only on the augmented image it sees, so they can be computed
ahead of time if the augmentations are known ahead of time. Design:

- a fixed pool of ``K`` augmentation draws ("views") per training image, sampled once from the
  run's seed: :func:`sample_view_pool` (e.g. crop offsets and flip bits, ``N * K`` rows, row
  ``i * K + v`` is view ``v`` of data-set row ``i``);
- the teacher's logits of all ``N * K`` views, computed once: :func:`precompute_teacher_logits`;
  ``N * K * C * 4`` bytes in float32 (CIFAR-100, K = 4: 50,000 * 4 * 100 * 4 B = 80 MB;
  K = 8: 160 MB; ImageNet-1k, K = 4: 20.5 GB, too much to hold in memory);
- each epoch every image uses one of its ``K`` views, drawn uniformly from the batch's seeded
  generator, for both the student's input and the cached teacher logits:
  :class:`CachedTeacherLoader` adds ``"teacher_logits"`` to each batch; methods whose
  ``teacher_signal`` is ``"logits"`` read it instead of running the teacher.

This is not the same training as the usual recipe: the student sees ``K`` distinct augmentations
of an image over the whole run instead of a fresh one every epoch. It trades augmentation
diversity for skipping the teacher forward pass (about half of a KD step on CPU). The choice of
view is deterministic given ``(seed, epoch, rank, batch)``, so a resumed run reproduces the
uninterrupted one; the logits themselves are recomputed when a run is resumed.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mcmi.data.loader import TensorLoader, derive_seed
from mcmi.data.transforms import Transform

__all__ = [
    "CachedTeacherLoader",
    "ViewPool",
    "cache_bytes",
    "precompute_teacher_logits",
    "sample_view_pool",
    "with_cached_teacher",
]

log = logging.getLogger(__name__)

_VIEWS = 2  # seed stream of the view pool (the loader uses 0 for the order, 1 for augmentation)


def cache_bytes(num_images: int, num_views: int, num_classes: int, bytes_per_value: int = 4) -> int:
    """Bytes of the cached logits: ``num_images * num_views * num_classes * bytes_per_value``."""
    return int(num_images) * int(num_views) * int(num_classes) * int(bytes_per_value)


@dataclass
class ViewPool:
    """``num_views`` augmentation parameter draws for each of ``num_images`` images.

    ``params`` is the transform's parameter object for ``num_images * num_views`` images; row
    ``i * num_views + v`` is view ``v`` of data-set row ``i``.
    """

    params: Any
    num_images: int
    num_views: int

    def rows(self, index: Tensor, views: Tensor) -> Tensor:
        """Pool rows of data-set rows ``index`` in views ``views`` (both int64 (B,))."""
        return index.long() * self.num_views + views.long()

    def select(self, rows: Tensor) -> Any:
        """The parameters of pool rows ``rows`` (None for a deterministic transform)."""
        return None if self.params is None else self.params[rows.cpu()]


def sample_view_pool(transform: Transform, num_images: int, image_hw: tuple[int, int],
                     num_views: int, seed: int = 0) -> ViewPool:
    """Draw ``num_views`` parameter sets of ``transform`` per image (seeded by ``seed``)."""
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    g = torch.Generator().manual_seed(derive_seed(seed, _VIEWS))
    params = transform.sample(num_images * num_views, int(image_hw[0]), int(image_hw[1]), g)
    return ViewPool(params, int(num_images), int(num_views))


@torch.no_grad()
def precompute_teacher_logits(
    teacher: nn.Module,
    dataset: Any,
    transform: Transform,
    pool: ViewPool,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    channels_last: bool | None = None,
    rows: Tensor | None = None,
    storage_device: torch.device | str | None = None,
) -> Tensor:
    """The teacher's float32 logits (N * K, C) of every view of ``pool`` (row layout as the pool).

    The teacher runs in eval mode without gradients on ``device`` (its mode is restored).
    ``rows`` restricts the work to these pool rows (the others stay NaN). The result is kept on
    ``storage_device`` (default ``device``).
    """
    was_training = teacher.training
    teacher.eval()
    device = torch.device(device)
    storage = torch.device(storage_device) if storage_device is not None else device
    total = pool.num_images * pool.num_views
    todo = torch.arange(total) if rows is None else torch.as_tensor(rows).long().cpu()
    out: Tensor | None = None
    try:
        for start in range(0, len(todo), batch_size):
            r = todo[start:start + batch_size]
            images = dataset.get_images(r // pool.num_views).to(device)
            x = transform.apply(images, pool.select(r), channels_last=channels_last)
            logits = teacher(x).float()
            if out is None:
                out = torch.full((total, logits.shape[1]), float("nan"), device=storage)
            out[r.to(storage)] = logits.to(storage)
    finally:
        teacher.train(was_training)
    if out is None:
        raise ValueError("precompute_teacher_logits: nothing to compute (empty data set)")
    return out


class CachedTeacherLoader(TensorLoader):
    """A :class:`~mcmi.data.loader.TensorLoader` whose images are views from a fixed pool and
    whose batches carry the teacher's logits of exactly those views as ``"teacher_logits"``.

    Per batch, each image's view is drawn uniformly from ``0 .. K-1`` with the batch's generator
    (seeded by ``(seed, epoch, rank, batch)`` as in the parent), so order, views and resumption
    follow the parent's contract. Takes the parent's arguments plus ``pool`` and
    ``teacher_logits``: (N * K, C) from :func:`precompute_teacher_logits`, or a function
    returning them, called when the logits are first needed (so a run that is already finished
    never computes them).
    """

    def __init__(self, dataset: Any, batch_size: int, *, pool: ViewPool,
                 teacher_logits: Tensor | Callable[[], Tensor], **kwargs: Any) -> None:
        super().__init__(dataset, batch_size, **kwargs)
        if pool.num_images != len(dataset):
            raise ValueError(f"view pool covers {pool.num_images} images, data set has "
                             f"{len(dataset)}")
        self.pool = pool
        self._logits: Tensor | None = None
        self._compute: Callable[[], Tensor] | None = None
        if callable(teacher_logits) and not isinstance(teacher_logits, Tensor):
            self._compute = teacher_logits
        else:
            self._set_logits(teacher_logits)

    def _set_logits(self, logits: Tensor) -> None:
        rows = self.pool.num_images * self.pool.num_views
        if logits.dim() != 2 or logits.shape[0] != rows:
            raise ValueError(f"teacher_logits has shape {tuple(logits.shape)}, the pool has "
                             f"{rows} views")
        self._logits = logits

    @property
    def teacher_logits(self) -> Tensor:
        """The cached logits (N * K, C), computed on first use if given as a function."""
        if self._logits is None:
            assert self._compute is not None
            self._set_logits(self._compute())
            self._compute = None
        return self._logits  # type: ignore[return-value]

    def _make_batch(self, idx: Tensor, epoch: int, b: int) -> dict[str, Any]:
        images, labels = self._gather(idx)
        g = self._batch_generator(epoch, b)
        views = torch.randint(0, self.pool.num_views, (len(idx),), generator=g)
        rows = self.pool.rows(idx.cpu(), views)
        params = self.pool.select(rows)
        out = {
            "image": self.transform.apply(images, params,
                                          channels_last=True if self.channels_last else None),
            "label": labels.to(self.device),
            "index": idx.to(self.device),
            "teacher_logits": self.teacher_logits[rows.to(self.teacher_logits.device)].to(
                self.device, non_blocking=True),
        }
        if self.return_params:
            out["params"] = params
        return out


def with_cached_teacher(loader: TensorLoader, method: nn.Module, num_views: int,
                        batch_size: int = 256) -> TensorLoader:
    """``loader`` rebuilt as a :class:`CachedTeacherLoader` with ``method.teacher``'s logits of
    ``num_views`` views per image, if ``method.teacher_signal == "logits"``; otherwise (methods
    reading teacher features) ``loader`` unchanged, with a log message.

    Views are drawn from ``loader.seed``; logits are computed on ``loader.device`` for all rows
    of the data set that ``loader.indices`` selects, when the loader is first iterated.
    """
    signal = getattr(method, "teacher_signal", None)
    teacher = getattr(method, "teacher", None)
    if num_views < 1 or teacher is None:
        return loader
    if signal != "logits":
        log.info("%s reads teacher features: teacher outputs are not cached (live forwards)",
                 type(method).__name__)
        return loader
    ds = loader.dataset
    _, h, w = ds.image_shape
    pool = sample_view_pool(loader.transform, len(ds), (h, w), num_views, loader.seed)
    images = torch.unique(loader.indices)
    rows = (images[:, None] * num_views + torch.arange(num_views)).reshape(-1)

    def compute() -> Tensor:
        teacher.to(loader.device)
        logits = precompute_teacher_logits(teacher, ds, loader.transform, pool,
                                           batch_size=batch_size, device=loader.device,
                                           channels_last=True if loader.channels_last else None,
                                           rows=rows)
        log.info("cached teacher logits of %d views x %d images (%.1f MB)", num_views,
                 len(images), logits.numel() * logits.element_size() / 1e6)
        return logits

    return CachedTeacherLoader(
        ds, loader.batch_size, pool=pool, teacher_logits=compute, shuffle=loader.shuffle,
        augment=loader.transform, seed=loader.seed, drop_last=loader.drop_last,
        device=loader.device, channels_last=loader.channels_last, rank=loader.rank,
        world_size=loader.world_size, indices=loader.indices, return_params=loader.return_params)
