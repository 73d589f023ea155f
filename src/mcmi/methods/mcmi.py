"""MCMI fine-tuning of a pretrained teacher (paper eq. 14, Sec. 4.2, A.8.1).

Maximizes ``LL + lambda * CMI``; as a loss to minimize: ``CE - lambda * mean KL(P_x || Q^y)``.
Centroid policies:

- ``"frozen"`` (default, as in the paper's code): Q^y is computed once in :meth:`prepare`, over
  the (augmented) training loader with the teacher in train mode, then held fixed.
- ``"ema"``: Q^y starts as above and follows an exponential moving average of batch centroids;
  Q is clamped at 1e-8 before the log (the follow-up paper's choice).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from mcmi.losses.cmi import kl_to_centroids
from mcmi.methods.base import Batch, Method, StepOutput, register_method
from mcmi.metrics.cmi import CMIState

_Q_FLOOR = 1e-8


@register_method("mcmi")
class MCMI(Method):
    """Fine-tunes ``model`` to maximize log-likelihood + ``lam`` * CMI (eq. 14)."""

    def __init__(
        self,
        model,
        lam: float = 0.15,
        centroids: str = "frozen",
        ema_momentum: float = 0.99,
        centroid_mode: str = "train",
    ) -> None:
        super().__init__(model)
        if lam < 0:
            raise ValueError(f"lam must be >= 0 (MCMI maximizes CMI), got {lam}")
        if centroids not in ("frozen", "ema"):
            raise ValueError(f"centroids must be 'frozen' or 'ema', got {centroids!r}")
        if centroid_mode not in ("train", "eval"):
            raise ValueError(f"centroid_mode must be 'train' or 'eval', got {centroid_mode!r}")
        self.lam = lam
        self.policy = centroids
        self.ema_momentum = ema_momentum
        self.centroid_mode = centroid_mode
        c = model.num_classes
        self.register_buffer("centroids", torch.full((c, c), 1.0 / c))
        self.register_buffer("prepared", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def prepare(self, loader: Iterable[Batch]) -> None:
        """Q^y of eq. 13 over one pass of ``loader``; the paper's code keeps the teacher in train mode."""
        if bool(self.prepared):
            return  # resumed run: the checkpoint already holds the centroids
        was_training = self.model.training
        self.model.train(self.centroid_mode == "train")
        state = None
        device = self.centroids.device
        for batch in loader:
            logits = self.model(batch["image"].to(device))
            if state is None:
                state = CMIState.empty(logits.shape[1], device)
            state.update_logits(logits.float(), batch["label"].to(device))
        self.model.train(was_training)
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
        if self.policy == "ema" and self.training:
            self._ema_update(logits.detach(), labels)
        log_q = torch.log(self.centroids.clamp_min(_Q_FLOOR)) if self.policy == "ema" else torch.log(self.centroids)
        ce = F.cross_entropy(logits, labels)
        cmi = kl_to_centroids(logits, labels, log_q)
        # The minus sign is the method: eq. 14 *maximizes* CMI. A plus here minimizes it.
        return StepOutput(logits, {"ce": ce, "cmi": -self.lam * cmi})

    @torch.no_grad()
    def _ema_update(self, logits: Tensor, labels: Tensor) -> None:
        p = logits.float().softmax(1)
        c = self.centroids.shape[0]
        sums = torch.zeros(c, c, device=p.device).index_add_(0, labels, p)
        counts = torch.bincount(labels, minlength=c).float()
        present = counts > 0
        batch_q = sums[present] / counts[present, None]
        m = self.ema_momentum
        self.centroids[present] = m * self.centroids[present] + (1 - m) * batch_q
