"""Top-k accuracy and expected calibration error (ECE), batch and streaming forms.

ECE is the standard definition of Guo et al. (2017), "On Calibration of Modern Neural Networks",
eq. 3: a prediction's confidence is its largest probability, ``conf_x = max_k P_x[k]``, the
prediction is ``argmax_k P_x[k]``; ``[0, 1]`` is cut into ``M = 15`` equal-width bins
``B_m = ((m - 1) / M, m / M]`` (upper edge included) and

    ECE = sum_m |B_m| / n * | acc(B_m) - conf(B_m) |,

``acc(B_m)`` and ``conf(B_m)`` being the accuracy and the mean confidence of the samples in bin
``m`` (empty bins add nothing). ECE is a fraction in ``[0, 1]``, like accuracy.

Top-k accuracy: the fraction of samples whose label is among the ``k`` largest probabilities.
With fewer than ``k`` classes top-k is undefined and reported as NaN (``null`` in JSON, "–" in
tables), not as the trivially true 1.0: a binary task has no top-5.

The streaming form (:class:`CalibrationState`) keeps per-bin sums (count, confidence, hits) and
the top-k hit count. They add across batches and processes, so the figures are exact over a data
set in one pass, and a distributed evaluation needs one all-reduce, as
:class:`~mcmi.metrics.cmi.CMIState`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

ECE_BINS = 15
TOP_K = 5


def _bin_index(confidence: Tensor, n_bins: int) -> Tensor:
    """Bin of each confidence for the bins ``((m - 1) / M, m / M]``, ``m = 1..M`` (0-based)."""
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=confidence.device)
    # bucketize(right=False): i with edges[i - 1] < x <= edges[i] over the inner edges
    return torch.bucketize(confidence.double(), edges[1:-1], right=False)


class CalibrationState:
    """Summable statistics of top-k accuracy and ECE over a stream of batches (float64)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu", n_bins: int = ECE_BINS,
                 k: int = TOP_K) -> None:
        if n_bins < 1 or k < 1:
            raise ValueError(f"need n_bins >= 1 and k >= 1, got n_bins={n_bins}, k={k}")
        z = dict(dtype=torch.float64, device=device)
        self.num_classes, self.n_bins, self.k = int(num_classes), int(n_bins), int(k)
        self.bin_counts = torch.zeros(n_bins, **z)
        self.bin_confidence = torch.zeros(n_bins, **z)  # sum of the confidences in each bin
        self.bin_correct = torch.zeros(n_bins, **z)  # top-1 hits in each bin
        self.topk_correct = torch.zeros((), **z)

    _FIELDS = ("bin_counts", "bin_confidence", "bin_correct", "topk_correct")

    @property
    def n(self) -> int:
        return int(self.bin_counts.sum())

    @torch.no_grad()
    def update_logits(self, logits: Tensor, labels: Tensor, temperature: float = 1.0) -> None:
        """Add a batch of logits; softmax(logits / T) are the probabilities."""
        self.update_probs(torch.softmax(logits.double() / temperature, dim=1), labels)

    @torch.no_grad()
    def update_probs(self, probs: Tensor, labels: Tensor) -> None:
        """Add a batch of probabilities ``(N, C)`` with integer labels ``(N,)``."""
        if probs.dim() != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(f"probs must be (N, {self.num_classes}), got {tuple(probs.shape)}")
        if labels.shape != probs.shape[:1]:
            raise ValueError(f"labels must be ({probs.shape[0]},), got {tuple(labels.shape)}")
        device = self.bin_counts.device
        p = probs.to(device, torch.float64)
        labels = labels.to(device).long()
        confidence, prediction = p.max(1)
        correct = (prediction == labels).double()
        b = _bin_index(confidence, self.n_bins)
        self.bin_counts += torch.bincount(b, minlength=self.n_bins).double()
        self.bin_confidence.index_add_(0, b, confidence)
        self.bin_correct.index_add_(0, b, correct)
        if self.k <= self.num_classes:
            top = p.topk(self.k, dim=1).indices
            self.topk_correct += (top == labels[:, None]).any(1).sum()

    def merge(self, other: CalibrationState) -> CalibrationState:
        for name in self._FIELDS:
            getattr(self, name).add_(getattr(other, name))
        return self

    def all_reduce(self) -> CalibrationState:
        """Sum over all processes of the default group (no-op when not distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            flat = torch.cat([getattr(self, f).reshape(-1) for f in self._FIELDS])
            dist.all_reduce(flat)
            offset = 0
            for f in self._FIELDS:
                t = getattr(self, f)
                t.copy_(flat[offset: offset + t.numel()].view_as(t))
                offset += t.numel()
        return self

    def _require_samples(self) -> None:
        if self.n == 0:
            raise ValueError("empty input: no samples were added")

    def topk_accuracy(self) -> float:
        """Top-``k`` accuracy; NaN when there are fewer than ``k`` classes."""
        self._require_samples()
        if self.k > self.num_classes:
            return math.nan
        return float(self.topk_correct / self.bin_counts.sum())

    def ece(self) -> float:
        """Expected calibration error (Guo et al. 2017, ``n_bins`` equal-width bins)."""
        self._require_samples()
        gap = (self.bin_correct - self.bin_confidence).abs()  # = |B_m| * |acc(B_m) - conf(B_m)|
        return float(gap.sum() / self.bin_counts.sum())

    def reliability(self) -> list[dict[str, float]]:
        """Per bin: its edges, count, accuracy and mean confidence (NaN for empty bins): the
        reliability diagram's data."""
        out = []
        for m in range(self.n_bins):
            c = float(self.bin_counts[m])
            out.append({"lower": m / self.n_bins, "upper": (m + 1) / self.n_bins, "count": c,
                        "accuracy": float(self.bin_correct[m]) / c if c else math.nan,
                        "confidence": float(self.bin_confidence[m]) / c if c else math.nan})
        return out


def _probs_state(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS,
                 k: int = TOP_K) -> CalibrationState:
    if probs.dim() != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}")
    state = CalibrationState(probs.shape[1], probs.device, n_bins=n_bins, k=k)
    state.update_probs(probs, labels)
    return state


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    """ECE of probabilities ``probs`` (N, C) against ``labels`` (N,), ``n_bins`` equal bins."""
    return _probs_state(probs, labels, n_bins=n_bins).ece()


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = TOP_K) -> float:
    """Fraction of rows of ``scores`` (probabilities or logits, N x C) whose ``k`` largest entries
    contain the label; NaN when C < k."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be (N, C), got shape {tuple(scores.shape)}")
    if labels.shape != scores.shape[:1] or labels.numel() == 0:
        raise ValueError(
            f"labels must be ({scores.shape[0]},) and non-empty, got {tuple(labels.shape)}")
    if k > scores.shape[1]:
        return math.nan
    top = scores.topk(k, dim=1).indices
    return float((top == labels.to(top.device).long()[:, None]).any(1).double().mean())
