"""One-pass evaluation of a model: accuracy, LL (eq. 5), CMI (eq. 12) and per-class CMI."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

from mcmi.metrics.cmi import CMIState


@dataclass
class EvalResult:
    accuracy: float
    log_likelihood: float
    cmi: float
    n: int
    per_class_cmi: list[float] = field(default_factory=list)

    def as_dict(self, per_class: bool = False) -> dict:
        d = {"accuracy": self.accuracy, "log_likelihood": self.log_likelihood, "cmi": self.cmi, "n": self.n}
        if per_class:
            d["per_class_cmi"] = self.per_class_cmi
        return d


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Mapping[str, Tensor]],
    num_classes: int,
    device: torch.device | str = "cpu",
    temperature: float = 1.0,
    distributed: bool = False,
) -> EvalResult:
    """Accuracy, LL and CMI of ``model`` over ``loader`` (dict batches with ``image``, ``label``).

    Exact, single pass, memory independent of the data set size (see :class:`CMIState`).
    The model is evaluated in eval mode and its previous mode restored. With ``distributed``,
    the statistics are all-reduced so every process returns the global figures.
    """
    was_training = model.training
    model.eval()
    state = CMIState.empty(num_classes, device)
    try:
        for batch in loader:
            logits = model(batch["image"].to(device, non_blocking=True))
            state.update_logits(logits.float(), batch["label"].to(device), temperature)
    finally:
        model.train(was_training)
    if distributed:
        state.all_reduce()
    pc = state.per_class_cmi()
    return EvalResult(
        accuracy=state.accuracy(),
        log_likelihood=state.log_likelihood(),
        cmi=state.cmi(),
        n=state.n,
        per_class_cmi=[float(v) for v in pc],
    )
