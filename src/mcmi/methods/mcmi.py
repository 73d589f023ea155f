"""MCMI fine-tuning of a pretrained teacher (paper eq. 14, Sec. 4.2, A.8.1).

Maximizes ``LL + lambda * CMI``; as a loss to minimize: ``CE - lambda * mean KL(P_x || Q^y)``.
Centroid policies:

- ``"frozen"`` (default, as in the paper's code): Q^y is computed once in :meth:`prepare`, over
  the (augmented) training loader with the teacher in train mode, then held fixed.
  ``prepare`` has no side effect on the model: batch norm uses batch statistics in train mode
  (so the centroids are those of the paper's code), but every buffer, the running statistics
  ``running_mean``/``running_var``/``num_batches_tracked`` included, is restored bit for bit
  afterwards, and so is every submodule's train/eval flag. (The paper's code lets the centroid
  pass move the running statistics, which changes the teacher's eval-mode outputs before the
  first fine-tuning step.)
- ``"ema"``: Q^y starts as above and follows an exponential moving average of batch centroids;
  Q is clamped at 1e-8 before the log (the follow-up paper's choice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.config import FieldError
from mcmi.data.batch import as_batch, require_fields
from mcmi.losses.cmi import kl_to_centroids
from mcmi.methods.base import Batch, Method, StepOutput, register_method
from mcmi.metrics.cmi import CMIState
from mcmi.models.base import FeatureModel, preserved_state
from mcmi.models.wrap import infer_num_classes

_Q_FLOOR = 1e-8


@dataclass
class MCMIConfig:
    """``lam``: lambda of eq. 14, 0.15 by default (the paper tunes it per teacher, Table 6);
    ``centroids``: ``"frozen"`` (the paper's code) or ``"ema"`` with ``ema_momentum`` (module
    notes); ``centroid_mode``: the mode the model is in for the centroid pass, ``"train"`` (the
    paper's code) or ``"eval"``; ``num_classes``: the centroids' class count (default: the
    model's)."""

    lam: float = 0.15
    centroids: str = "frozen"
    ema_momentum: float = 0.99
    centroid_mode: str = "train"
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise FieldError("lam", f"must be >= 0 (MCMI maximizes CMI), got {self.lam}")
        if self.centroids not in ("frozen", "ema"):
            raise FieldError("centroids", f"must be 'frozen' or 'ema', got {self.centroids!r}")
        if self.centroid_mode not in ("train", "eval"):
            raise FieldError("centroid_mode", f"must be 'train' or 'eval', got {self.centroid_mode!r}")


@register_method("mcmi")
class MCMI(Method):
    """Fine-tunes ``model`` to maximize log-likelihood + ``lam`` * CMI (eq. 14); options:
    :class:`MCMIConfig`.

    ``model``: any ``nn.Module`` mapping images to logits. ``num_classes`` defaults to the
    model's (a zoo model's ``num_classes``, else the width of its last ``nn.Linear``); pass it
    for a model whose last ``nn.Linear`` is not its head. :meth:`prepare` checks it against the
    logits.
    """

    options = MCMIConfig
    display_name = "MCMI"

    def __init__(self, model, **options) -> None:
        super().__init__(model, **options)
        c = _num_classes(model, self.cfg.num_classes)
        self.register_buffer("centroids", torch.full((c, c), 1.0 / c))
        self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def prepare(self, loader: Iterable[Any]) -> None:
        """Q^y of eq. 13 over one pass of ``loader`` (batches ``(x, y)``, ``(x, y, index)`` or
        dicts); the paper's code keeps the teacher in train mode. The model's buffers (batch-norm
        running statistics) and train/eval flags are restored afterwards: no side effect."""
        if bool(self.prepared):
            return  # resumed run: the checkpoint already holds the centroids
        state = None
        device = self.centroids.device
        c = self.centroids.shape[0]
        with preserved_state(self.model):
            self.model.train(self.cfg.centroid_mode == "train")
            for raw in loader:
                batch = as_batch(raw)
                require_fields(batch, ("image", "label"), "MCMI.prepare")
                logits = self.model(batch["image"].to(device))
                if logits.dim() != 2 or logits.shape[1] != c:
                    raise ValueError(f"MCMI: the model returns logits of shape {tuple(logits.shape)} "
                                     f"but the centroids are for {c} classes (pass num_classes=)")
                if state is None:
                    state = CMIState.empty(c, device)
                state.update_logits(logits.float(), batch["label"].to(device))
        if state is None:
            raise ValueError("MCMI.prepare got an empty loader: cannot compute class centroids")
        state.all_reduce()  # under DDP each rank saw a shard: Q^y is over the whole training set
        self.set_centroids(state.centroids())

    def set_centroids(self, q: Tensor) -> None:
        missing = torch.isnan(q).any(1)
        if missing.any():
            # A class without training samples has no centroid; uniform keeps its KL term finite.
            q = torch.where(missing[:, None], torch.full_like(q, 1.0 / q.shape[1]), q)
        self.centroids.copy_(q.to(self.centroids.dtype))
        self.prepared.fill_(True)

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        if not bool(self.prepared):
            raise RuntimeError("MCMI needs its class centroids: call prepare(train_loader) first")
        labels = batch["label"]
        logits = self.model(batch["image"])
        ema = self.cfg.centroids == "ema"
        if ema and self.training:
            self._ema_update(logits.detach(), labels)
        log_q = torch.log(self.centroids.clamp_min(_Q_FLOOR)) if ema else torch.log(self.centroids)
        ce = F.cross_entropy(logits, labels)
        cmi = kl_to_centroids(logits, labels, log_q)
        # The minus sign is the method: eq. 14 *maximizes* CMI. A plus here minimizes it.
        return StepOutput(logits, {"ce": ce, "cmi": -self.cfg.lam * cmi})

    @torch.no_grad()
    def _ema_update(self, logits: Tensor, labels: Tensor) -> None:
        p = logits.float().softmax(1)
        c = self.centroids.shape[0]
        sums = torch.zeros(c, c, device=p.device).index_add_(0, labels, p)
        counts = torch.bincount(labels, minlength=c).float()
        present = counts > 0
        batch_q = sums[present] / counts[present, None]
        m = self.cfg.ema_momentum
        self.centroids[present] = m * self.centroids[present] + (1 - m) * batch_q


def _num_classes(model: Any, given: int | None) -> int:
    """The class count of MCMI's centroids: ``given``, else the model's own."""
    n, source = infer_num_classes(model)
    if given is not None:
        if isinstance(model, FeatureModel) and n is not None and int(given) != n:
            raise ValueError(f"MCMI: num_classes={given} but {type(model).__name__} has {n} classes "
                             f"({source})")
        n = int(given)
    if n is None or n < 1:
        raise ValueError(f"MCMI needs the number of classes: {type(model).__name__} has {source}; "
                         "pass num_classes=")
    return n
