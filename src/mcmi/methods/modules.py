"""Trainable pieces the distillers share: connectors, embeddings, CRD's memory bank, VID's
regressors, ReviewKD's fusion modules and HSAKD's auxiliary heads; plus small helpers.

Every module here is an ordinary ``nn.Module`` that a distiller holds as a submodule, so its
parameters reach the optimizer through ``Method.trainable_parameters()`` and its parameters and
buffers reach checkpoints through ``state_dict()`` without per-method code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.losses.crd import contrast_scores
from mcmi.losses.kd import kd_loss
from mcmi.losses.vid import vid_loss

C = TypeVar("C")


# --------------------------------------------------------------------------------------- helpers
def make_config(config_cls: type[C], overrides: Mapping[str, Any], method: str) -> C:
    """Build a method's weight dataclass from keyword overrides; unknown names are an error that
    lists the valid ones (a typo must not silently fall back to a default)."""
    names = {f.name for f in fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {unknown}; valid: {sorted(names)}")
    return config_cls(**overrides)


def warmup_factor(epoch: int, warmup_epochs: float) -> float:
    """Linear warm-up of a loss weight: ``min(1, (epoch + 1) / warmup_epochs)`` for the 0-based
    ``epoch`` the trainer passes; this equals mdistiller's ``min(epoch / warmup, 1)`` with its
    1-based epochs (DKD, ReviewKD). ``warmup_epochs <= 0`` disables the warm-up."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch + 1) / warmup_epochs)


def classification_terms(
    logits: Tensor,
    labels: Tensor,
    ce_weight: float,
    teacher_logits: Tensor | None = None,
    kd_weight: float = 0.0,
    temperature: float = 4.0,
) -> dict[str, Tensor]:
    """The weighted ``ce`` term every distiller has, plus an optional Hinton ``kd`` term
    (RepDistiller's ``-a``; 0 for feature methods, as in the MCMI paper's eq. 21)."""
    losses = {"ce": ce_weight * F.cross_entropy(logits, labels)}
    if kd_weight:
        if teacher_logits is None:
            raise ValueError("kd_weight > 0 needs the teacher's logits")
        losses["kd"] = kd_weight * kd_loss(logits, teacher_logits, temperature)
    return losses


def spatial_sizes(maps: Iterable[Tensor]) -> list[tuple[int, int]]:
    """(H, W) of each (N, C, H, W) map."""
    out = []
    for m in maps:
        if m.dim() != 4:
            raise ValueError(f"expected (N, C, H, W) feature maps, got shape {tuple(m.shape)}")
        out.append((int(m.shape[2]), int(m.shape[3])))
    return out


# ------------------------------------------------------------------------------------ connectors
class ConvRegressor(nn.Module):
    """FitNets' regressor (Romero et al., 2015) in RepDistiller's form: a convolution mapping the
    student map (C_s, H_s, W_s) onto the teacher's (C_t, H_t, W_t), then BN (and ReLU).

    Equal sizes: 1x1 conv. ``H_s = 2 H_t``: 3x3 conv, stride 2. ``2 H_s = H_t``: 4x4 transposed
    conv, stride 2. ``H_s > H_t`` otherwise: a valid conv of kernel
    ``(1 + H_s - H_t, 1 + W_s - W_t)``.
    A smaller student map in any other ratio is not supported.
    """

    def __init__(
        self,
        s_channels: int,
        t_channels: int,
        s_size: tuple[int, int],
        t_size: tuple[int, int],
        relu: bool = True,
    ) -> None:
        super().__init__()
        (hs, ws), (ht, wt) = s_size, t_size
        if (hs, ws) == (ht, wt):
            conv: nn.Module = nn.Conv2d(s_channels, t_channels, 1, bias=False)
        elif (hs, ws) == (2 * ht, 2 * wt):
            conv = nn.Conv2d(s_channels, t_channels, 3, stride=2, padding=1, bias=False)
        elif (2 * hs, 2 * ws) == (ht, wt):
            conv = nn.ConvTranspose2d(s_channels, t_channels, 4, stride=2, padding=1, bias=False)
        elif hs >= ht and ws >= wt:
            conv = nn.Conv2d(s_channels, t_channels, (1 + hs - ht, 1 + ws - wt), bias=False)
        else:
            raise ValueError(
                f"cannot regress a student map of {s_size} onto a teacher map of {t_size}"
            )
        self.conv = conv
        self.bn = nn.BatchNorm2d(t_channels)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class LinearEmbed(nn.Module):
    """A linear projection of flattened features (RepDistiller's CC embedding, 128 dims)."""

    def __init__(self, dim_in: int, dim_out: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


class NormalizedEmbed(LinearEmbed):
    """CRD's embedding head (Tian et al., 2020): linear projection, then L2 normalization, so
    inner products with memory rows are cosine similarities."""

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.linear(x.flatten(1)), p=2, dim=1)


# ------------------------------------------------------------------------------ CRD memory bank
class ContrastMemory(nn.Module):
    """CRD's memory bank (Tian et al., 2020): one L2-normalized ``feat_dim`` row per training
    sample for the student (``memory_s``) and one for the teacher (``memory_t``), updated by
    momentum after every step, and supplying ``num_negatives`` negatives per sample.

    Memory (float32 buffers)::

        memory_bytes ~= 2 * num_data * feat_dim * 4  (+ 8 * num_data for the label table)

    e.g. CIFAR-100 (50,000 images, 128 dims): 51.2 MB; ImageNet-1k (1,281,167 images, 128 dims):
    1,311,915,008 bytes ~= 1.31 GB (1.22 GiB), plus 10.2 MB of labels. The banks live on the
    model's device and are part of ``state_dict()`` (so a resumed run continues with the same
    bank) unless ``persistent=False``. Each step additionally gathers ``2 * B * (K + 1) * feat_dim``
    floats: see :meth:`step_bytes` (1.07 GB for B = 64, K = 16384; 4.3 GB for B = 256).

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
    ) -> None:
        super().__init__()
        if num_data < 2:
            raise ValueError(f"num_data must be >= 2, got {num_data}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if negatives not in ("class", "uniform", "shared"):
            raise ValueError(f"negatives must be 'class', 'uniform' or 'shared', got {negatives!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.num_data = int(num_data)
        self.feat_dim = int(feat_dim)
        self.num_negatives = int(num_negatives)
        self.temperature = float(temperature)
        self.momentum = float(momentum)
        self.negatives = negatives
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
        """Transient bytes of one step: the gathered (B, K+1, D) candidate rows of both banks and
        the (B, K+1) scores of both sides, in float32."""
        k1 = self.num_negatives + 1
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
        k1 = cand.shape[1]
        flat = cand.reshape(-1)
        with torch.no_grad():
            rows_t = self.memory_t.index_select(0, flat).view(n, k1, self.feat_dim)
            rows_s = self.memory_s.index_select(0, flat).view(n, k1, self.feat_dim)
        return (contrast_scores(emb_s, rows_t, self.temperature, 1.0),
                contrast_scores(emb_t, rows_s, self.temperature, 1.0))

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


# ------------------------------------------------------------------------------------------- VID
class VIDRegressor(nn.Module):
    """VID's per-layer variational model (Ahn et al., 2019): a mean ``mu(s)`` from three 1x1
    convolutions with ReLUs in between, and a learned per-channel variance
    ``softplus(log_scale) + eps`` initialized to ``init_var`` (5.0 in the authors' code).

    ``forward(f_s, f_t)`` returns the VID loss of the pair; the larger map is average-pooled to
    the smaller one's size first.
    """

    def __init__(
        self,
        s_channels: int,
        t_channels: int,
        mid_channels: int | None = None,
        init_var: float = 5.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        mid = t_channels if mid_channels is None else mid_channels
        self.regressor = nn.Sequential(
            nn.Conv2d(s_channels, mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid, mid, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(mid, t_channels, 1, bias=False),
        )
        if init_var <= eps:
            raise ValueError(f"init_var must exceed eps={eps}, got {init_var}")
        inv_softplus = math.log(math.expm1(init_var - eps))
        self.log_scale = nn.Parameter(torch.full((t_channels,), inv_softplus))
        self.eps = eps

    def forward(self, f_s: Tensor, f_t: Tensor) -> Tensor:
        (hs, ws), (ht, wt) = f_s.shape[-2:], f_t.shape[-2:]
        if hs * ws > ht * wt:
            f_s = F.adaptive_avg_pool2d(f_s, (ht, wt))
        elif hs * ws < ht * wt:
            f_t = F.adaptive_avg_pool2d(f_t, (hs, ws))
        return vid_loss(self.regressor(f_s), f_t, self.log_scale, self.eps)


# -------------------------------------------------------------------------------------- ReviewKD
class ABF(nn.Module):
    """ReviewKD's attention-based fusion (Chen et al., 2021): a 1x1 conv-BN of the student
    feature; if ``fuse``, a per-pixel 2-way sigmoid attention mixing it with the (upsampled)
    residual output of the deeper level; then resizing to the teacher's size and a 3x3 conv-BN
    to the teacher's channels. Returns ``(output, residual for the next shallower level)``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels)
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.att_conv = (
            nn.Sequential(nn.Conv2d(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        )
        nn.init.kaiming_uniform_(self.conv1[0].weight, a=1)  # the authors' init
        nn.init.kaiming_uniform_(self.conv2[0].weight, a=1)

    def forward(
        self, x: Tensor, residual: Tensor | None = None, out_size: tuple[int, int] | None = None
    ) -> tuple[Tensor, Tensor]:
        x = self.conv1(x)
        if self.att_conv is not None:
            if residual is None:
                raise ValueError("a fusing ABF needs the residual of the deeper level")
            residual = F.interpolate(residual, size=tuple(x.shape[-2:]), mode="nearest")
            att = self.att_conv(torch.cat([x, residual], dim=1))
            x = x * att[:, 0:1] + residual * att[:, 1:2]
        if out_size is not None and tuple(x.shape[-2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="nearest")
        return self.conv2(x), x


class ReviewFusion(nn.Module):
    """ReviewKD's review mechanism (Chen et al., 2021): one :class:`ABF` per level, applied from
    the deepest level to the shallowest, each fusing the residual of the level below.

    ``in_channels``/``out_channels``/``out_sizes`` are in forward order (shallow to deep); the
    shared middle width is ``min(max_mid_channels, in_channels[-1])`` (512 in the authors' code).
    ``forward(feats)`` takes the student features in forward order and returns the fused
    features in the same order, shaped like the teacher's.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        out_sizes: Sequence[tuple[int, int]],
        max_mid_channels: int = 512,
    ) -> None:
        super().__init__()
        if not (len(in_channels) == len(out_channels) == len(out_sizes)) or len(in_channels) == 0:
            raise ValueError(
                f"need as many student levels as teacher levels: {len(in_channels)} student, "
                f"{len(out_channels)} teacher channels, {len(out_sizes)} teacher sizes"
            )
        mid = min(max_mid_channels, in_channels[-1])
        last = len(in_channels) - 1
        self.abfs = nn.ModuleList(
            ABF(c_in, mid, c_out, fuse=i < last)
            for i, (c_in, c_out) in enumerate(zip(in_channels, out_channels))
        )
        self.out_sizes = [tuple(int(v) for v in s) for s in out_sizes]

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        if len(feats) != len(self.abfs):
            raise ValueError(f"expected {len(self.abfs)} student features, got {len(feats)}")
        outs: list[Tensor] = [feats[0]] * len(feats)
        residual: Tensor | None = None
        for i in range(len(feats) - 1, -1, -1):
            outs[i], residual = self.abfs[i](feats[i], residual, self.out_sizes[i])
        return outs


# ----------------------------------------------------------------------------------------- HSAKD
class AuxiliaryHead(nn.Module):
    """One HSAKD auxiliary classifier (Yang et al., 2021), model-agnostic: ``num_downsamples``
    conv3x3(stride 2)-BN-ReLU layers bringing the stage map to the last stage's resolution, one
    conv3x3-BN-ReLU, global average pooling and a linear layer to ``num_outputs`` (= 4 x classes,
    the joint class x rotation labels).

    The authors' heads reuse the backbone's own residual blocks; these plain conv stacks are a
    simplification that works for every model of the zoo.
    """

    def __init__(
        self, in_channels: int, width: int, num_downsamples: int, num_outputs: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_downsamples):
            layers += [
                nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            c = width
        layers += [
            nn.Conv2d(c, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_outputs)
        for m in self.body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


class AuxiliaryHeads(nn.Module):
    """HSAKD's hierarchy of auxiliary heads, one per stage map (Yang et al., 2021).

    Built from the stage channels and spatial sizes; ``width`` defaults to the last stage's
    channels capped at ``max_width``. ``forward(maps)`` returns one logit tensor per head.
    The constructor arguments are stored in ``spec`` so a saved state can be checked against it.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        sizes: Sequence[tuple[int, int]],
        num_outputs: int,
        width: int | None = None,
        max_width: int = 512,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(sizes) or len(in_channels) == 0:
            raise ValueError(
                f"need one size per stage: {len(in_channels)} channels, {len(sizes)} sizes"
            )
        width = min(max_width, in_channels[-1]) if width is None else width
        final = min(min(h, w) for h, w in sizes)
        heads = []
        for c, (h, w) in zip(in_channels, sizes):
            n_down = max(0, round(math.log2(max(min(h, w), 1) / max(final, 1))))
            heads.append(AuxiliaryHead(c, width, n_down, num_outputs))
        self.heads = nn.ModuleList(heads)
        self.spec = {
            "in_channels": list(in_channels),
            "sizes": [tuple(s) for s in sizes],
            "num_outputs": num_outputs,
            "width": width,
        }

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        if len(maps) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} stage maps, got {len(maps)}")
        return [head(m) for head, m in zip(self.heads, maps)]
