"""Empirical conditional mutual information and log-likelihood of a classifier (paper eq. 5, 11-13).

For outputs P_x (rows of ``probs``) and labels y, the class centroids are (eq. 13)

    Q^y = mean of P_x over the samples of class y,

and the empirical CMI (eq. 12) is the mean over all samples of KL(P_x || Q^y), in nats.

Conventions: 0 log 0 = 0, so probabilities of exactly 0 are exact, not clamped (if Q^y[k] = 0 then
every P_x[k] of that class is 0 too, and the term vanishes). A class absent from the data has no
centroid (its row is NaN) and contributes nothing to eq. 12, whose outer sum runs over the samples
present; its per-class CMI is NaN. Empty input and malformed tensors raise ``ValueError``.

The streaming form uses an exact decomposition, one pass, memory O(C^2) independent of N:

    sum_{x in D_y} KL(P_x || Q^y) = sum_{x in D_y} sum_k P_x[k] log P_x[k] - n_y sum_k Q^y[k] log Q^y[k]

because sum_{x in D_y} P_x = n_y Q^y. The three sums (n_y, S_y = sum P_x, H_y = sum P log P) add
across batches and across processes, so distributed evaluation needs one all-reduce.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_SUM_TOL = 1e-3


def _check(probs: Tensor, labels: Tensor, num_classes: int | None) -> int:
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}")
    if labels.dim() != 1 or labels.shape[0] != probs.shape[0]:
        raise ValueError(
            f"labels must be (N,) with N = {probs.shape[0]} to match probs, got shape {tuple(labels.shape)}"
        )
    if probs.shape[0] == 0:
        raise ValueError("empty input: CMI and log-likelihood need at least one sample")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    c = probs.shape[1] if num_classes is None else num_classes
    if c != probs.shape[1]:
        raise ValueError(f"num_classes={num_classes} but probs have {probs.shape[1]} columns")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= c:
        bad = lo if lo < 0 else hi
        raise ValueError(f"label {bad} out of range [0, {c - 1}]")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("probs contain negative, NaN or infinite values: pass probabilities, not logits")
    row_sums = probs.double().sum(1)
    worst = float((row_sums - 1).abs().max())
    if worst > _SUM_TOL:
        raise ValueError(
            f"probs rows must sum to 1 (worst row is off by {worst:.3g}): pass softmax outputs, not logits"
        )
    return c


def class_centroids(probs: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Q^y of eq. 13 for every class: a (C, C) tensor, row y = mean of P_x over class y.

    Rows of classes absent from ``labels`` are NaN.
    """
    c = _check(probs, labels, num_classes)
    counts = torch.bincount(labels, minlength=c).to(torch.float64)
    sums = torch.zeros(c, c, dtype=torch.float64, device=probs.device)
    sums.index_add_(0, labels, probs.double())
    q = sums / counts.unsqueeze(1)  # 0/0 -> NaN for absent classes, by design
    return q.to(probs.dtype)


def per_sample_kl_to_centroid(probs: Tensor, labels: Tensor, centroids: Tensor) -> Tensor:
    """KL(P_x || Q^{y_x}) for every sample (N,), with 0 log 0 = 0."""
    q = centroids[labels]
    return (torch.xlogy(probs, probs) - torch.xlogy(probs, q)).sum(1)


def empirical_cmi(probs: Tensor, labels: Tensor, num_classes: int | None = None) -> float:
    """Empirical CMI of eq. 12 in nats: mean over samples of KL(P_x || Q^y)."""
    state = CMIState.empty(_check(probs, labels, num_classes), probs.device)
    state.update_probs(probs, labels)
    return state.cmi()


def per_class_cmi(probs: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """CMI(f, Y=y) (paper Sec. A.3): mean KL(P_x || Q^y) over class y; NaN for absent classes."""
    state = CMIState.empty(_check(probs, labels, num_classes), probs.device)
    state.update_probs(probs, labels)
    return state.per_class_cmi()


def log_likelihood(probs: Tensor, labels: Tensor) -> float:
    """Empirical log-likelihood of eq. 5: mean of log P_x[y] (−inf if some P_x[y] is exactly 0)."""
    _check(probs, labels, None)
    return float(torch.log(probs.double().gather(1, labels[:, None])).mean())


@dataclass
class CMIState:
    """Summable sufficient statistics for accuracy, LL and CMI over a stream of batches.

    All fields are sums, so two states merge by addition and a distributed run all-reduces
    them (see :meth:`all_reduce`). Kept in float64: the decomposition subtracts two sums of
    similar size.
    """

    counts: Tensor  # (C,) n_y
    prob_sums: Tensor  # (C, C) S_y
    neg_entropy_sums: Tensor  # (C,) H_y = sum over class y of sum_k p log p
    log_lik_sum: Tensor  # () sum of log P_x[y]
    correct: Tensor  # () number of argmax hits

    @classmethod
    def empty(cls, num_classes: int, device: torch.device | str = "cpu") -> "CMIState":
        z = dict(dtype=torch.float64, device=device)
        return cls(
            counts=torch.zeros(num_classes, **z),
            prob_sums=torch.zeros(num_classes, num_classes, **z),
            neg_entropy_sums=torch.zeros(num_classes, **z),
            log_lik_sum=torch.zeros((), **z),
            correct=torch.zeros((), **z),
        )

    @property
    def num_classes(self) -> int:
        return self.counts.shape[0]

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @torch.no_grad()
    def update_logits(self, logits: Tensor, labels: Tensor, temperature: float = 1.0) -> None:
        """Add a batch of logits; softmax(logits / T) are the outputs P_x."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (N, {self.num_classes}), got {tuple(logits.shape)}")
        logp = torch.log_softmax(logits.double() / temperature, dim=1)
        self._add(logp.exp(), logp, labels)

    @torch.no_grad()
    def update_probs(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch of probabilities (rows summing to 1)."""
        _check(probs, labels, self.num_classes)
        p = probs.double()
        self._add(p, torch.log(p), labels)

    def _add(self, p: Tensor, logp: Tensor, labels: Tensor) -> None:
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"label out of range [0, {self.num_classes - 1}]")
        labels = labels.to(self.counts.device)
        plogp = torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(1)
        self.counts += torch.bincount(labels, minlength=self.num_classes).double()
        self.prob_sums.index_add_(0, labels, p)
        self.neg_entropy_sums.index_add_(0, labels, plogp)
        self.log_lik_sum += logp.gather(1, labels[:, None]).sum()
        self.correct += (p.argmax(1) == labels).sum()

    def merge(self, other: "CMIState") -> "CMIState":
        for name in self.__dataclass_fields__:
            getattr(self, name).add_(getattr(other, name))
        return self

    def all_reduce(self) -> "CMIState":
        """Sum the state over all processes of the default group (no-op when not distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            flat = torch.cat([getattr(self, f).reshape(-1) for f in self.__dataclass_fields__])
            dist.all_reduce(flat)
            offset = 0
            for f in self.__dataclass_fields__:
                t = getattr(self, f)
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
        return self

    def centroids(self) -> Tensor:
        """Q^y (C, C) in float64; NaN rows for classes with no sample."""
        return self.prob_sums / self.counts.unsqueeze(1)

    def _class_kl_sums(self) -> Tensor:
        q = self.centroids()
        q_neg_entropy = torch.where(q > 0, q * torch.log(q), torch.zeros_like(q)).sum(1)
        present = self.counts > 0
        kl = self.neg_entropy_sums - self.counts * torch.where(present, q_neg_entropy, 0.0)
        return kl.clamp_min(0.0)  # KL >= 0; rounding can leave -1e-16

    def _require_samples(self) -> None:
        if self.n == 0:
            raise ValueError("empty input: no samples were added")

    def cmi(self) -> float:
        self._require_samples()
        return float(self._class_kl_sums().sum() / self.counts.sum())

    def per_class_cmi(self) -> Tensor:
        self._require_samples()
        return self._class_kl_sums() / self.counts  # NaN where a class is absent

    def log_likelihood(self) -> float:
        self._require_samples()
        return float(self.log_lik_sum / self.counts.sum())

    def mean_entropy(self) -> float:
        """Mean entropy of the outputs, -(1/N) sum_x sum_k P_x[k] log P_x[k], in nats (paper Fig. 7's
        "teacher's entropy", which CMI is unrelated to)."""
        self._require_samples()
        return float(-self.neg_entropy_sums.sum() / self.counts.sum())

    def accuracy(self) -> float:
        self._require_samples()
        return float(self.correct / self.counts.sum())
