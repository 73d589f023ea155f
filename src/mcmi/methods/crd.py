"""Contrastive representation distillation (Tian et al., "Contrastive Representation
Distillation", ICLR 2020): NCE between L2-normalized 128-dim embeddings of the pooled features
and a momentum memory bank of every training sample (:mod:`mcmi.methods.crd_memory`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from mcmi.config import FieldError
from mcmi.data.batch import as_batch, require_fields
from mcmi.losses.crd import crd_loss
from mcmi.methods.base import Batch, Distiller, StepOutput, register_method
from mcmi.methods.crd_memory import ContrastMemory
from mcmi.methods.modules import NormalizedEmbed, classification_terms


@dataclass
class CRDConfig:
    """``crd_weight`` = 0.8: the MCMI paper's A.8.2, RepDistiller's ``-a 0 -b 0.8`` and mdistiller's
    ``CFG.CRD``; CE weight 1; ``feat_dim`` 128, ``num_negatives`` 16384 (``--nce_k``),
    ``temperature`` 0.07 (``--nce_t``), ``momentum`` 0.5 (``--nce_m``): RepDistiller's
    ``train_student.py`` defaults. ``negatives="class"`` is CRD's sampler (other classes only);
    ``"uniform"`` draws any other index; ``"shared"`` draws one uniform set per step for the whole
    batch (same expected loss as ``"uniform"``, much faster: see ContrastMemory). ``scoring``
    ("auto", "gather", "bank") picks how the per-anchor scores are computed; every choice gives the
    same scores (see ContrastMemory). ``kd_weight`` 1 with ``crd_weight`` 0.8 gives
    RepDistiller's "CRD+KD". ``checkpoint_memory=False`` keeps the (large) banks out of
    ``state_dict()``; a resumed run then restarts from a fresh bank. ``num_data``: the number of
    training samples (rows of the bank); the training run passes its training set's size.
    """

    num_data: int | None = None
    ce_weight: float = 1.0
    crd_weight: float = 0.8
    feat_dim: int = 128
    num_negatives: int = 16384
    temperature: float = 0.07
    momentum: float = 0.5
    negatives: str = "class"
    scoring: str = "auto"
    checkpoint_memory: bool = True
    kd_weight: float = 0.0
    temperature_kd: float = 4.0

    def __post_init__(self) -> None:
        # the bank's own checks, here too so that a recipe's bad value fails when it is loaded
        if self.num_data is not None and self.num_data < 2:
            raise FieldError("num_data", f"must be >= 2, got {self.num_data}")
        if self.num_negatives < 1:
            raise FieldError("num_negatives", f"must be >= 1, got {self.num_negatives}")
        if self.negatives not in ("class", "uniform", "shared"):
            raise FieldError("negatives", f"must be 'class', 'uniform' or 'shared', got {self.negatives!r}")
        if self.scoring not in ("auto", "gather", "bank"):
            raise FieldError("scoring", f"must be 'auto', 'gather' or 'bank', got {self.scoring!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise FieldError("momentum", f"must be in [0, 1), got {self.momentum}")


@register_method("crd")
class CRD(Distiller):
    """CRD distiller (Tian et al., ICLR 2020): ``ce_weight CE + crd_weight (NCE_student_anchor +
    NCE_teacher_anchor)``.

    Needs ``batch["index"]`` (each sample's index in ``[0, num_data)``, fixed across epochs) and
    the option ``num_data``, the training set size. With ``negatives="class"``, call :meth:`prepare` with the
    training loader before training (it reads the labels of all indices; see there). The memory
    bank's size is ``self.memory.memory_bytes`` (see :class:`~mcmi.methods.crd_memory.ContrastMemory`).
    A batch may carry ``contrast_index`` (N, K+1) to supply its own positives/negatives.
    """

    options = CRDConfig
    display_name = "CRD"
    test_options = {"num_data": 8, "num_negatives": 8}
    batch_keys = ("image", "label", "index")

    def __init__(self, student, teacher, **options) -> None:
        super().__init__(student, teacher, **options)
        cfg = self.cfg
        if cfg.num_data is None:
            raise TypeError("CRD needs num_data, the number of training samples (one memory-bank row each): "
                            "CRD(student, teacher, num_data=len(train_set))")
        self.num_data = int(cfg.num_data)
        self.embed_s = NormalizedEmbed(student.num_features, cfg.feat_dim)
        self.embed_t = NormalizedEmbed(teacher.num_features, cfg.feat_dim)
        self.memory = ContrastMemory(
            self.num_data,
            cfg.feat_dim,
            cfg.num_negatives,
            cfg.temperature,
            cfg.momentum,
            cfg.negatives,
            persistent=cfg.checkpoint_memory,
            scoring=cfg.scoring,
        )

    @property
    def memory_bytes(self) -> int:
        """Bytes of the memory bank: ``2 * num_data * feat_dim * 4`` + ``8 * num_data`` (labels)."""
        return self.memory.memory_bytes

    @torch.no_grad()
    def prepare(self, loader: Iterable[Any]) -> None:
        """Record the class of every training index for class-aware negatives.

        Fast path: ``loader.dataset.labels`` (or ``.targets``) of length ``num_data``; indices the
        loader does not yield (``loader.indices``, e.g. a few-shot subset) are excluded from the
        negatives. Otherwise one pass over ``loader`` reads ``label``/``index`` of every batch
        (``(x, y, index)`` tuples or dicts; no forward pass, so no model state changes); indices
        never seen are excluded. No-op for ``negatives="uniform"`` or when the labels are already
        known (resumed run).
        """
        if self.cfg.negatives != "class" or self.memory.has_labels:
            return
        labels = None
        dataset = getattr(loader, "dataset", None)
        for attr in ("labels", "targets"):
            values = getattr(dataset, attr, None)
            if values is not None and len(values) == self.num_data:
                labels = torch.as_tensor(values).reshape(-1).long().cpu().clone()
                break
        if labels is not None:
            subset = getattr(loader, "indices", None)
            if subset is not None:
                keep = torch.zeros(self.num_data, dtype=torch.bool)
                keep[torch.as_tensor(subset).reshape(-1).long().cpu()] = True
                labels[~keep] = -1
        else:
            labels = torch.full((self.num_data,), -1, dtype=torch.long)
            for raw in loader:
                batch = as_batch(raw)
                require_fields(batch, ("label", "index"), "CRD.prepare")
                idx = batch["index"].reshape(-1).long().cpu()
                if idx.numel() and int(idx.max()) >= self.num_data:
                    raise ValueError(f"batch index {int(idx.max())} >= num_data {self.num_data}")
                labels[idx] = batch["label"].reshape(-1).long().cpu()
        if not bool((labels >= 0).any()):
            raise ValueError("CRD.prepare found no labelled training index")
        self.memory.set_labels(labels)

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:
        cfg = self.cfg
        x, y = batch["image"], batch["label"]
        fs = self.student.forward_features(x)
        ft = self.teacher_forward(x)
        losses = classification_terms(
            fs.logits, y, cfg.ce_weight, ft.logits, cfg.kd_weight, cfg.temperature_kd
        )
        e_s, e_t = self.embed_s(fs.pooled), self.embed_t(ft.pooled)
        with torch.autocast(
            device_type=x.device.type, enabled=False
        ):  # exp(s / 0.07) overflows fp16
            scores_s, scores_t = self.memory(
                e_s.float(), e_t.float(), batch["index"], y, batch.get("contrast_index")
            )
            losses["crd"] = cfg.crd_weight * crd_loss(scores_s, scores_t, self.num_data)
        return StepOutput(fs.logits, losses)
