"""The one interface of every training objective: teachers (MLL, MCMI) and distillers alike.

The trainer calls ``out = method(batch)`` and backpropagates ``sum(out.losses.values())``;
it never asks which method it runs (mdistiller's design, without its name branches).

A method also describes itself through class attributes (defaults on :class:`Method`), so no
other file lists methods by name: ``options`` (its options dataclass), ``display_name``,
``pair_defaults``, ``teacher_prep`` and ``test_options``.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from mcmi.data.batch import DEFAULT_FIELDS, as_batch, require_fields
from mcmi.methods.metadata import (
    NO_PAIR_DEFAULTS,
    FromModels,
    PairDefault,
    TeacherPrep,
    field_default,
)
from mcmi.models.base import FeatureModel
from mcmi.models.wrap import as_logits_model, infer_num_classes
from mcmi.registry import Registry

METHODS: Registry = Registry("method")

Batch = Mapping[str, Tensor]
C = TypeVar("C")
M = TypeVar("M", bound=type)


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a method class under ``name`` (a name taken twice is an error)
    and record it as the class's ``method_name``."""

    def add(cls: M) -> M:
        METHODS.register(name)(cls)
        cls.method_name = name
        return cls

    return add


def method_class(name: str) -> type[Method]:
    """The method class registered as ``name`` (an unknown name is a ``KeyError`` naming the
    nearest and every registered name)."""
    return METHODS.get(name)


def make_config(config_cls: type[C], overrides: Mapping[str, Any], method: str) -> C:
    """Build a method's options dataclass from keyword overrides; unknown names are a
    ``TypeError`` that lists the valid ones (a typo must not silently fall back to a default)."""
    names = {f.name for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"{method}: unknown option(s) {unknown}; valid: {sorted(names)}")
    return config_cls(**overrides)


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

    Options, one style for every method: the class attribute ``options`` is a dataclass of the
    method's options with their defaults; the constructor is ``Method(model, **options)``
    (distillers: ``Distiller(student, teacher, **options)``) and keeps them, validated, as
    ``self.cfg`` (an unknown name is a ``TypeError`` listing the valid ones). Recipes' ``method_args``
    are checked against the same dataclass (:mod:`mcmi.methods.options`). Values the training run
    supplies (CRD's ``num_data``, the ``image_shape`` of FitNet, ReviewKD and HSAKD) are options
    too. A class without ``options`` takes none; a registered one must declare it (tested).

    Self-description (class attributes, defaults here):

    - ``display_name``: what reports print (default: the class name);
    - ``pair_defaults``: a :class:`~mcmi.methods.metadata.PairTable` of weights per
      (teacher, student) pair (DKD, ReviewKD; empty by default);
    - ``teacher_prep``: a :class:`~mcmi.methods.metadata.TeacherPrep` run each teacher needs first
      (HSAKD), or None;
    - ``test_options``: options that make a fast instance on tiny models and batches of up to 8
      samples (indices below 8), for the tests over the registry; a
      :class:`~mcmi.methods.metadata.FromModels` value is computed from the models
      (:func:`resolve_test_options`).
    """

    options: ClassVar[type | None] = None
    method_name: ClassVar[str] = ""  # set by register_method
    display_name: ClassVar[str] = ""  # default: the class name (__init_subclass__)
    pair_defaults: ClassVar[Mapping[tuple[str, str], PairDefault]] = NO_PAIR_DEFAULTS
    teacher_prep: ClassVar[TeacherPrep | None] = None
    test_options: ClassVar[Mapping[str, Any]] = {}

    batch_keys: tuple[str, ...] = ("image", "label")
    tuple_fields: tuple[str, ...] = DEFAULT_FIELDS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.method_name = ""  # a registered name is its class's own, not its subclasses'
        if "display_name" not in cls.__dict__:
            cls.display_name = cls.__name__
        if cls.options is not None:
            _expose_options(cls)

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__()
        self.model = model
        self.cfg = self.make_options(options)

    @classmethod
    def make_options(cls, options: Mapping[str, Any]) -> Any:
        """``options`` as the class's options dataclass (None for a class that declares none and
        gets none); an unknown name is a ``TypeError`` listing the valid ones."""
        if cls.options is None:
            if options:
                raise TypeError(f"{cls.method_name or cls.__name__} takes no options, got {sorted(options)}")
            return None
        return make_config(cls.options, options, cls.method_name or cls.__name__)

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

    def __init__(self, student: nn.Module, teacher: nn.Module, **options: Any) -> None:
        super().__init__(student, **options)
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


def resolve_test_options(cls: type[Method], *models: nn.Module) -> dict[str, Any]:
    """``cls.test_options`` for a test instance built on ``models`` (``(student, teacher)`` or
    ``(model,)``): each :class:`~mcmi.methods.metadata.FromModels` value computed from them."""
    return {k: v.make(*models) if isinstance(v, FromModels) else v for k, v in cls.test_options.items()}


def _expose_options(cls: type[Method]) -> None:
    """Give ``cls`` an ``__init__`` whose signature lists the options as keyword-only parameters
    in place of ``**options``, so ``help(cls)`` shows them and callers that match arguments to
    ``inspect.signature(cls.__init__)`` (e.g. to pass a run's ``num_data`` only to methods that
    take it) see this class's options, not those of the class it inherits ``__init__`` from."""
    inherited = "__init__" not in cls.__dict__
    if inherited:
        def __init__(self: Method, *args: Any, **options: Any) -> None:
            super(cls, self).__init__(*args, **options)

        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = __init__  # type: ignore[method-assign]
    init = cls.__dict__["__init__"]
    try:
        # an inherited constructor's keyword-only parameters are its class's options: replaced
        sig = inspect.signature(super(cls, cls).__init__ if inherited else init)
    except (TypeError, ValueError):
        return
    params = [p for p in sig.parameters.values()
              if p.kind is not p.VAR_KEYWORD and not (inherited and p.kind is p.KEYWORD_ONLY)]
    if not inherited and len(params) == len(sig.parameters):
        return  # no **options: the constructor's own keywords are what it takes
    taken = {p.name for p in params}
    for f in dataclasses.fields(cls.options):  # type: ignore[arg-type]
        if f.name in taken:
            continue
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=field_default(f),
                                        annotation=f.type))
    init.__signature__ = sig.replace(parameters=params)
