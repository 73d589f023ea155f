"""CRD's memory bank (Tian et al., "Contrastive Representation Distillation", ICLR 2020): one
L2-normalized embedding per training sample for each side, updated by momentum, supplying the
negatives of the NCE loss; kept identical across data-parallel processes."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.losses._precision import fp32_loss
from mcmi.losses.crd import contrast_scores


class ContrastMemory(nn.Module):
    """CRD's memory bank (Tian et al., 2020): one L2-normalized ``feat_dim`` row per training
    sample for the student (``memory_s``) and one for the teacher (``memory_t``), updated by
    momentum after every step, and supplying ``num_negatives`` negatives per sample.

    Memory (float32 buffers)::

        memory_bytes ~= 2 * num_data * feat_dim * 4  (+ 8 * num_data for the label table)

    e.g. CIFAR-100 (50,000 images, 128 dims): 51.2 MB; ImageNet-1k (1,281,167 images, 128 dims):
    1,311,915,008 bytes ~= 1.31 GB (1.22 GiB), plus 10.2 MB of labels. The banks live on the
    model's device and are part of ``state_dict()`` (so a resumed run continues with the same
    bank) unless ``persistent=False``. Each step's scoring needs transient memory besides
    (:meth:`step_bytes`): with ``scoring="gather"`` the ``2 * B * (K + 1) * feat_dim`` gathered
    floats (1.07 GB for B = 64, K = 16384; 4.3 GB for B = 256); with ``"bank"`` about
    ``4 * B * num_data + 2 * num_data * feat_dim`` floats (110 MB for B = 64 on CIFAR-100).

    Negatives (``negatives=``):

    - ``"class"`` (CRD's default sampler, its ``CIFAR100InstanceSample``): indices of samples of
      *other classes*, drawn uniformly with replacement. Needs the label of every index: call
      :meth:`set_labels` or let the distiller's ``prepare(loader)`` do it. Indices whose label is
      -1 (e.g. outside a few-shot subset) are never drawn.
    - ``"uniform"``: any index but the anchor's own (what CRD's memory does when the data set
      supplies no contrast indices); needs no labels.
    - ``"shared"``: one set of K indices per step, drawn uniformly from the whole bank and shared
      by every anchor of the batch (as MoCo-style contrastive learners do). Each anchor's
      negatives are still K uniform draws, so its loss has the same expectation as with
      ``"uniform"`` (up to the rare draw of the anchor itself, probability 1/num_data each); the
      scores become one (B, D) x (D, K) matrix product and the gather shrinks from B*K to K rows
      (B = 64: 64x less memory traffic, see ``benchmarks/kd_speed.md``). Not CRD's recipe: opt in.

    A batch may also carry its own ``contrast_index`` (N, K+1) with the positive in column 0, as
    RepDistiller's data sets return; it is then used as is.

    Scoring (``scoring=``), for the per-anchor samplers: the same scores computed two ways.

    - ``"gather"``: gather the (B, K+1, D) candidate rows of the bank, then one batched
      matrix-vector product per anchor (CRD's way; memory-bound: 1.07 GB moved per step at
      B = 64, K = 16384).
    - ``"bank"``: score every anchor against the *whole* bank with one (B, D) x (D, num_data)
      matrix product, then pick each anchor's K+1 columns. Same negatives, same scores up to
      float rounding, same gradients (tested); it trades the gather for a compute-bound GEMM
      and pays off while ``num_data`` is within a few K: CIFAR's 50,000 rows against
      K + 1 = 16,385. Transient memory: (B, num_data) logits and their gradient per side,
      plus a copy of each bank, which the backward pass needs because the banks are updated in
      place before it runs.
    - ``"auto"`` (default): ``"bank"`` when ``num_data <= 16 * (K + 1)``, else ``"gather"``
      (ImageNet-1k's 1.28 M rows at K = 16384 gather).

    Data parallel: every process keeps a full bank and, at each training step, applies the rows
    of *all* processes (an all-gather of this step's embeddings and indices), so the banks stay
    identical across processes; Z is averaged over processes when it is set. Broadcasting the
    banks as DDP buffers every step is then redundant: a trainer may pass
    ``broadcast_buffers=False`` to DDP for CRD (1.3 GB per step on ImageNet otherwise).

    The normalizing constants Z (one per side) are fixed from the first training batch to
    ``mean(exp(s / T)) * num_data``, as CRD does, and stored in the ``normalizers`` buffer.
    """

    def __init__(
        self,
        num_data: int,
        feat_dim: int = 128,
        num_negatives: int = 16384,
        temperature: float = 0.07,
        momentum: float = 0.5,
        negatives: str = "class",
        persistent: bool = True,
        scoring: str = "auto",
    ) -> None:
        super().__init__()
        if num_data < 2:
            raise ValueError(f"num_data must be >= 2, got {num_data}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if negatives not in ("class", "uniform", "shared"):
            raise ValueError(f"negatives must be 'class', 'uniform' or 'shared', got {negatives!r}")
        if scoring not in ("auto", "gather", "bank"):
            raise ValueError(f"scoring must be 'auto', 'gather' or 'bank', got {scoring!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_data = int(num_data)
        self.feat_dim = int(feat_dim)
        self.num_negatives = int(num_negatives)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.negatives = negatives
        if scoring == "auto":
            scoring = "bank" if self.num_data <= 16 * (self.num_negatives + 1) else "gather"
        self.scoring = scoring
        bound = 1.0 / math.sqrt(feat_dim / 3.0)  # CRD's init: rows of expected unit norm
        self.register_buffer(
            "memory_s", torch.rand(num_data, feat_dim).mul_(2 * bound).sub_(bound), persistent
        )
        self.register_buffer(
            "memory_t", torch.rand(num_data, feat_dim).mul_(2 * bound).sub_(bound), persistent
        )
        self.register_buffer("normalizers", torch.full((2,), -1.0))
        self.register_buffer("labels", torch.full((num_data,), -1, dtype=torch.long))
        self._tables: tuple[Tensor, Tensor, Tensor, int] | None = None
        self._z_set = False  # host-side cache of "normalizers >= 0" (no device sync per step)

    # ---- sizes
    @staticmethod
    def bank_bytes(num_data: int, feat_dim: int = 128, bytes_per_value: int = 4) -> int:
        """Bytes of the two banks: ``2 * num_data * feat_dim * bytes_per_value``."""
        return 2 * num_data * feat_dim * bytes_per_value

    @property
    def memory_bytes(self) -> int:
        """Bytes held by this module's buffers (both banks, the label table, the constants)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def step_bytes(self, batch_size: int) -> int:
        """Transient float32 bytes of one step's scoring, both sides: ``"gather"`` the (B, K+1, D)
        candidate rows and the (B, K+1) scores; ``"bank"`` the (B, num_data) logits and their
        gradient, a copy of the bank and the (B, K+1) scores."""
        k1 = self.num_negatives + 1
        if self.scoring == "bank":
            per_side = 2 * batch_size * self.num_data + self.num_data * self.feat_dim
            return 2 * (per_side + batch_size * k1) * 4
        return 2 * batch_size * k1 * (self.feat_dim + 1) * 4

    # ---- labels for class-aware negatives
    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    @torch.no_grad()
    def set_labels(self, labels: Tensor) -> None:
        """Set the class of every index (length ``num_data``; -1 = never use as a negative)."""
        labels = torch.as_tensor(labels).reshape(-1).long()
        if labels.numel() != self.num_data:
            raise ValueError(f"need {self.num_data} labels (one per index), got {labels.numel()}")
        if bool((labels < -1).any()):
            raise ValueError("labels must be >= 0, or -1 for indices outside the training set")
        self.labels.copy_(labels.to(self.labels.device))
        self._tables = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._tables = None  # labels may have changed: rebuild the sampling tables lazily
        self._z_set = False

    def _sampling_tables(self) -> tuple[Tensor, Tensor, Tensor, int]:
        """Eligible indices sorted by class, each class's start and count in that order, and the
        fewest negatives any present class has (built once: no device sync per step)."""
        if self._tables is None or self._tables[0].device != self.labels.device:
            eligible = (self.labels >= 0).nonzero().squeeze(1)
            lab = self.labels[eligible]
            order = eligible[torch.argsort(lab, stable=True)]
            counts = torch.bincount(lab, minlength=1)
            starts = torch.cumsum(counts, 0) - counts
            fewest = order.numel() - int(counts.max()) if order.numel() else 0
            self._tables = (order, starts, counts, fewest)
        return self._tables

    def sample_negatives(self, index: Tensor, labels: Tensor | None = None) -> Tensor:
        """(N, K) negative indices for anchors ``index`` (with classes ``labels``)."""
        n, k = index.shape[0], self.num_negatives
        device = self.memory_s.device
        if self.negatives == "uniform":
            r = torch.randint(0, self.num_data - 1, (n, k), device=device)
            return r + (r >= index.to(device)[:, None]).long()
        order, starts, counts, fewest = self._sampling_tables()
        if order.numel() == 0:
            raise RuntimeError(
                "CRD with class-aware negatives needs the label of every training index: call "
                "prepare(train_loader) (or memory.set_labels(labels)), or use negatives='uniform'"
            )
        if fewest <= 0:
            raise RuntimeError("all training indices share one class: no CRD negative exists")
        if labels is None:
            labels = self.labels[index.to(device)]
        c = labels.to(device).long()
        known = (c >= 0) & (c < counts.numel())
        cc = c.clamp(0, counts.numel() - 1)
        cnt = torch.where(known, counts[cc], torch.zeros_like(cc))
        start = torch.where(known, starts[cc], torch.zeros_like(cc))
        avail = order.numel() - cnt
        r = (torch.rand(n, k, device=device) * avail[:, None]).long().clamp_max(avail[:, None] - 1)
        pos = r + (r >= start[:, None]).long() * cnt[:, None]
        return order[pos]

    # ---- the step
    @fp32_loss  # scores, Z and the bank update in float32 under any autocast context
    def forward(
        self,
        emb_s: Tensor,
        emb_t: Tensor,
        index: Tensor,
        labels: Tensor | None = None,
        contrast_index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Scores of both anchor sides, ``(student anchors vs teacher memory, teacher anchors vs
        student memory)``, each (N, K+1) with the positive in column 0; then, in training mode,
        the momentum update of the rows ``index`` with the current (detached) embeddings."""
        index = index.to(self.memory_s.device).long()
        if contrast_index is None and self.negatives == "shared":
            raw_s, raw_t = self._shared_scores(emb_s, emb_t, index)
        else:
            raw_s, raw_t = self._per_anchor_scores(emb_s, emb_t, index, labels, contrast_index)
        if not self._z_set and bool((self.normalizers < 0).any()):
            # not set yet: CRD fixes Z from the first training batch
            z = torch.stack([raw_s.detach().mean(), raw_t.detach().mean()]) * self.num_data
            if not self.training:
                return raw_s / z[0], raw_t / z[1]
            self.normalizers.copy_(_mean_over_processes(z))
        self._z_set = True
        z = self.normalizers
        scores_s, scores_t = raw_s / z[0], raw_t / z[1]
        if self.training:
            # every process applies every process's rows, so the banks stay identical
            all_s, all_t, all_index = _gather_from_processes(emb_s.detach(), emb_t.detach(), index)
            self._update(self.memory_s, all_s, all_index)
            self._update(self.memory_t, all_t, all_index)
        return scores_s, scores_t

    def _shared_scores(self, emb_s: Tensor, emb_t: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Scores (N, K+1) of ``negatives="shared"``: positives in column 0, then the K shared
        negatives, as exp(<anchor, row> / T) in float32 like :func:`contrast_scores`."""
        neg = torch.randint(0, self.num_data, (self.num_negatives,), device=self.memory_s.device)
        rows = torch.cat([index, neg])
        with torch.no_grad():
            bank_t = self.memory_t.index_select(0, rows)
            bank_s = self.memory_s.index_select(0, rows)
        n = index.shape[0]

        def scores(anchor: Tensor, bank: Tensor) -> Tensor:
            a = anchor.float()
            pos = (a * bank[:n]).sum(1, keepdim=True)
            return torch.exp(torch.cat([pos, a @ bank[n:].T], 1) / self.temperature)

        return scores(emb_s, bank_t), scores(emb_t, bank_s)

    def _per_anchor_scores(self, emb_s: Tensor, emb_t: Tensor, index: Tensor, labels: Tensor | None,
                           contrast_index: Tensor | None) -> tuple[Tensor, Tensor]:
        """Scores (N, K+1) with each anchor's own candidates (CRD's way)."""
        n = emb_s.shape[0]
        if contrast_index is None:
            cand = torch.cat([index[:, None], self.sample_negatives(index, labels)], dim=1)
        else:
            cand = contrast_index.to(self.memory_s.device).long()
            if cand.dim() != 2 or cand.shape[0] != n:
                raise ValueError(f"contrast_index must be (N, K+1), got {tuple(cand.shape)}")
        if self.scoring == "bank":
            return self._bank_scores(emb_s, self.memory_t, cand), self._bank_scores(
                emb_t, self.memory_s, cand)
        k1 = cand.shape[1]
        flat = cand.reshape(-1)
        with torch.no_grad():
            rows_t = self.memory_t.index_select(0, flat).view(n, k1, self.feat_dim)
            rows_s = self.memory_s.index_select(0, flat).view(n, k1, self.feat_dim)
        return (contrast_scores(emb_s, rows_t, self.temperature, 1.0),
                contrast_scores(emb_t, rows_s, self.temperature, 1.0))

    def _bank_scores(self, anchor: Tensor, bank: Tensor, cand: Tensor) -> Tensor:
        """``scoring="bank"``: exp(<anchor_n, bank[cand[n, k]]> / T) from one product of the
        anchors with the whole bank; equal to :func:`contrast_scores` on the gathered rows."""
        if anchor.requires_grad and torch.is_grad_enabled():
            bank = bank.clone()  # autograd keeps it for backward; the bank is updated in place
        logits = (anchor.float() @ bank.T).gather(1, cand)
        return torch.exp(logits / self.temperature)

    @torch.no_grad()
    def _update(self, bank: Tensor, emb: Tensor, index: Tensor) -> None:
        rows = (
            bank.index_select(0, index)
            .mul_(self.momentum)
            .add_(emb.detach().float(), alpha=1.0 - self.momentum)
        )
        bank.index_copy_(0, index, F.normalize(rows, p=2, dim=1))

    def extra_repr(self) -> str:
        return (
            f"num_data={self.num_data}, feat_dim={self.feat_dim}, "
            f"num_negatives={self.num_negatives}, "
            f"T={self.temperature}, momentum={self.momentum}, negatives={self.negatives!r}, "
            f"scoring={self.scoring!r}, "
            f"memory_bytes={self.memory_bytes}"
        )


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def _mean_over_processes(value: Tensor) -> Tensor:
    if not _distributed():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


@torch.no_grad()
def _gather_from_processes(
    emb_s: Tensor, emb_t: Tensor, index: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """All processes' (embeddings, indices) of this step; unequal batch sizes are padded."""
    if not _distributed():
        return emb_s, emb_t, index
    if index.numel() and int(index.max()) >= 2**24:
        raise ValueError("CRD's distributed memory update supports up to 2**24 samples")
    world = dist.get_world_size()
    n = torch.tensor([index.shape[0]], device=index.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    m = int(max(int(v) for v in sizes))
    packed = emb_s.new_zeros(m, emb_s.shape[1] + emb_t.shape[1] + 1, dtype=torch.float32)
    packed[: index.shape[0], : emb_s.shape[1]] = emb_s.float()
    packed[: index.shape[0], emb_s.shape[1] : -1] = emb_t.float()
    packed[:, -1] = -1.0
    packed[: index.shape[0], -1] = index.float()  # exact below 2**24 samples
    parts = [torch.empty_like(packed) for _ in range(world)]
    dist.all_gather(parts, packed)
    rows = torch.cat(parts)
    rows = rows[rows[:, -1] >= 0]
    d = emb_s.shape[1]
    return rows[:, :d], rows[:, d:-1], rows[:, -1].long()
