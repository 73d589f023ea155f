"""One-pass evaluation of a model: accuracy (top-1, top-5), LL (eq. 5), CMI (eq. 12), per-class
CMI, expected calibration error (ECE, 15 bins: :mod:`mcmi.metrics.calibration`) and the
confusion matrix (per-class accuracy, accuracy on a subset of classes: the zero-shot protocol of
the paper's Sec. 6.2 / A.11, which reports the dropped and the kept classes separately)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from mcmi.data.batch import as_batch, require_fields
from mcmi.metrics.calibration import CalibrationState
from mcmi.metrics.cmi import CMIState


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    predictions, labels = predictions.reshape(-1).long(), labels.reshape(-1).long()
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.numel()} predictions but {labels.numel()} labels")
    flat = labels * num_classes + predictions
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> list[float]:
    """Recall of every class (diagonal / row sum); NaN for a class without samples."""
    conf = torch.as_tensor(confusion, dtype=torch.float64)
    rows = conf.sum(1)
    return [float(d / r) if r > 0 else math.nan for d, r in zip(conf.diagonal(), rows)]


def accuracy_on_classes(confusion: Tensor, classes: Sequence[int]) -> float:
    """Top-1 accuracy over the samples whose true class is in ``classes`` (all predictions
    count, over the full head); NaN when those classes have no sample."""
    conf = torch.as_tensor(confusion, dtype=torch.float64)
    idx = torch.as_tensor(sorted(set(int(c) for c in classes)), dtype=torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= conf.shape[0]):
        raise ValueError(f"classes out of range [0, {conf.shape[0] - 1}]: {list(classes)}")
    n = conf[idx].sum()
    return float(conf[idx, idx].sum() / n) if n > 0 else math.nan


@dataclass
class EvalResult:
    accuracy: float
    log_likelihood: float
    cmi: float
    n: int
    per_class_cmi: list[float] = field(default_factory=list)
    confusion: Tensor | None = None  # (C, C) int64 on the CPU; rows: true class, columns: prediction
    entropy: float = math.nan  # mean output entropy (nats)
    top5: float = math.nan  # top-5 accuracy; NaN with fewer than 5 classes
    ece: float = math.nan  # expected calibration error, 15 equal-width bins (Guo et al. 2017)

    @property
    def per_class_accuracy(self) -> list[float]:
        return per_class_accuracy(self.confusion) if self.confusion is not None else []

    def accuracy_on(self, classes: Sequence[int]) -> float:
        """Accuracy over the samples of ``classes`` (e.g. the classes dropped for a student)."""
        if self.confusion is None:
            raise ValueError("this result has no confusion matrix")
        return accuracy_on_classes(self.confusion, classes)

    def as_dict(self, per_class: bool = False) -> dict:
        d = {"accuracy": self.accuracy, "log_likelihood": self.log_likelihood, "cmi": self.cmi,
             "entropy": self.entropy, "top5": self.top5, "ece": self.ece, "n": self.n}
        if per_class:
            d["per_class_cmi"] = self.per_class_cmi
            d["per_class_accuracy"] = self.per_class_accuracy
        return d


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Any],
    num_classes: int,
    device: torch.device | str = "cpu",
    temperature: float = 1.0,
    distributed: bool = False,
) -> EvalResult:
    """Accuracy (top-1, top-5), LL, CMI, ECE and confusion matrix of ``model`` over ``loader``
    (``(x, y)`` or ``(x, y, index)`` batches, as a torch ``DataLoader`` yields, or dicts with
    ``image``, ``label``).

    Exact, single pass, memory independent of the data set size (see :class:`CMIState`; the
    confusion matrix is C x C). The model is evaluated in eval mode and its previous mode
    restored. With ``distributed``, the statistics are all-reduced so every process returns the
    global figures.
    """
    was_training = model.training
    model.eval()
    state = CMIState.empty(num_classes, device)
    calibration = CalibrationState(num_classes, device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.float64, device=device)
    try:
        for raw in loader:
            batch = as_batch(raw)
            require_fields(batch, ("label",), "evaluate")
            logits = model(batch["image"].to(device, non_blocking=True))
            labels = batch["label"].to(device)
            state.update_logits(logits.float(), labels, temperature)
            calibration.update_logits(logits.float(), labels, temperature)
            flat = labels.long() * num_classes + logits.argmax(1)
            confusion += torch.bincount(flat, minlength=num_classes * num_classes).to(confusion.dtype)
    finally:
        model.train(was_training)
    if distributed:
        state.all_reduce()
        calibration.all_reduce()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(confusion)
    pc = state.per_class_cmi()
    return EvalResult(
        accuracy=state.accuracy(),
        log_likelihood=state.log_likelihood(),
        cmi=state.cmi(),
        n=state.n,
        per_class_cmi=[float(v) for v in pc],
        confusion=confusion.round().long().reshape(num_classes, num_classes).cpu(),
        entropy=state.mean_entropy(),
        top5=calibration.topk_accuracy(),
        ece=calibration.ece(),
    )
