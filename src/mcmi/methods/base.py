"""The one interface of every training objective: teachers (MLL, MCMI) and distillers alike.

The trainer calls ``out = method(batch)`` and backpropagates ``sum(out.losses.values())``;
it never asks which method it runs (mdistiller's design, without its name branches).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor, nn

from mcmi.data.batch import DEFAULT_FIELDS, as_batch, require_fields
from mcmi.models.base import FeatureModel
from mcmi.models.wrap import as_logits_model, infer_num_classes
from mcmi.registry import Registry

METHODS: Registry = Registry("method")
register_method = METHODS.register

Batch = Mapping[str, Tensor]


@dataclass
class StepOutput:
    """What one training step of a method produces: the trained model's logits and named losses
    (each already weighted; their sum is what is minimized)."""

    logits: Tensor
    losses: dict[str, Tensor]

    @property
    def total(self) -> Tensor:
        return torch.stack(list(self.losses.values())).sum()


class Method(nn.Module):
    """A training objective for ``self.model``.

    Subclasses implement :meth:`forward`. Extra trainable modules (connectors, embeddings,
    auxiliary heads) are ordinary submodules, so ``method.trainable_parameters()`` hands them to
    the optimizer and ``method.state_dict()`` puts them into checkpoints without per-method code.

    ``batch_keys`` lists the fields a method reads (e.g. CRD also needs ``index``); mcmi's
    data loaders always provide ``index``.

    Batches: ``method(batch)`` takes what a torch ``DataLoader`` yields, ``(x, y)``,
    ``(x, y, index)`` or a dict (:func:`mcmi.data.batch.as_batch`, tuple positions named by
    ``tuple_fields``), and :meth:`forward` always gets the dict. A batch without a field of
    :meth:`required_fields` is a one-line error naming the field and how to provide it.
    """

    batch_keys: tuple[str, ...] = ("image", "label")
    tuple_fields: tuple[str, ...] = DEFAULT_FIELDS

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def __call__(self, batch: Any, *args: Any, **kwargs: Any) -> StepOutput:
        batch = as_batch(batch, self.tuple_fields)
        require_fields(batch, self.required_fields(), type(self).__name__)
        return super().__call__(batch, *args, **kwargs)

    def required_fields(self) -> tuple[str, ...]:
        """The batch fields this method's :meth:`forward` reads (default: ``batch_keys``)."""
        return self.batch_keys

    def forward(self, batch: Batch, epoch: int = 0) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, loader: Iterable[Any]) -> None:
        """One-off setup before training (MCMI centroids, CRD memory bank, ...). Default: none.
        ``loader`` yields batches of any form :func:`~mcmi.data.batch.as_batch` accepts."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def extra_state_for_checkpoint(self) -> dict[str, Any]:
        """Non-parameter state that must survive a resume (buffers are saved automatically)."""
        return {}


class Distiller(Method):
    """A method with a frozen teacher: kept in eval mode, no gradients, excluded from the optimizer.

    The teacher is stored outside ``_modules`` bookkeeping for the optimizer via
    ``requires_grad_(False)``; it stays a submodule so ``.to(device)`` moves it.

    ``teacher_signal`` says what of the teacher the loss reads: ``"logits"`` (only its logits of
    the augmented input, e.g. KD, DKD: such methods take precomputed logits from
    ``batch["teacher_logits"]`` when a loader supplies them, see
    :mod:`mcmi.data.teacher_cache`) or ``"features"`` (intermediate features: always a live
    teacher forward).

    Models: a ``"logits"`` method takes any ``nn.Module`` that maps images to logits (a plain
    teacher is adapted by :class:`~mcmi.models.wrap.LogitsModel`; the student is only called).
    A ``"features"`` method needs :class:`~mcmi.models.base.FeatureModel` s: the zoo's, or any
    module through :func:`mcmi.wrap`; a plain module is a one-line error saying so. The number of
    classes of both must agree (see :func:`~mcmi.models.wrap.infer_num_classes`).
    """

    teacher_signal: str = "features"

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        super().__init__(student)
        if self.teacher_signal == "logits":
            teacher = as_logits_model(teacher)
        else:
            require_features(self, student, "student")
            require_features(self, teacher, "teacher")
        check_num_classes(student, teacher)
        self.teacher = teacher
        self.teacher.requires_grad_(False)
        self.teacher.eval()

    @property
    def student(self) -> nn.Module:
        return self.model

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics of the teacher must never move
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # The teacher is an input, not a result: checkpoints hold the student and extra heads.
        full = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        return {k: v for k, v in full.items() if not k.startswith(prefix + "teacher.")}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        teacher_state = {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}
        return super().load_state_dict({**state_dict, **teacher_state}, strict=strict, assign=assign)

    @torch.no_grad()
    def teacher_forward(self, x: Tensor):
        return self.teacher.forward_features(x)

    def teacher_logits(self, batch: Batch) -> Tensor:
        """The teacher's logits of ``batch["image"]``: the cached ``batch["teacher_logits"]``
        when present and this method's ``teacher_signal`` is ``"logits"``, else a live forward."""
        cached = batch.get("teacher_logits") if self.teacher_signal == "logits" else None
        if cached is not None:
            return cached
        return self.teacher_forward(batch["image"]).logits


def require_features(method: Any, model: nn.Module, role: str) -> None:
    """Raise a one-line ``TypeError`` unless ``model`` returns features (a
    :class:`~mcmi.models.base.FeatureModel`), saying how to wrap a plain module."""
    if not isinstance(model, FeatureModel):
        name = method if isinstance(method, str) else type(method).__name__
        raise TypeError(
            f"{name} reads the {role}'s intermediate features, but {type(model).__name__} is a plain "
            "nn.Module: use mcmi.wrap(model, stages=[...], classifier=...) (names as in "
            "model.named_modules())"
        )


def check_num_classes(student: nn.Module, teacher: nn.Module) -> None:
    """Raise ``ValueError`` when the class counts of ``student`` and ``teacher`` are both known
    and differ, naming each count and where it was read."""
    (ns, src_s), (nt, src_t) = infer_num_classes(student), infer_num_classes(teacher)
    if ns is not None and nt is not None and ns != nt:
        raise ValueError(
            f"student and teacher disagree on the number of classes: student {ns} ({src_s}), "
            f"teacher {nt} ({src_t})"
        )
