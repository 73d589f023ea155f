"""Any ``nn.Module`` that maps images to logits, seen through mcmi's :class:`FeatureModel` interface.

Logit-based methods (KD, DKD, MCMI, MLL, soft targets) take such a module as it is. Feature-based
distillers (FitNet, AT, PKT, SP, CC, RKD, VID, CRD, ReviewKD, HSAKD) read intermediate features;
:func:`wrap` gives them those of any module through forward hooks on named submodules::

    teacher = mcmi.wrap(my_resnet, stages=["layer1", "layer2", "layer3"], classifier="fc")

- ``stages``: names as in ``model.named_modules()``; ``Features.stages`` are their outputs, in the
  order listed. ``stages[0]`` plays the role of the zoo's stem map: the methods that follow
  RepDistiller (AT, VID, ReviewKD, HSAKD) skip it, FitNet's ``hint_layer`` indexes the list.
  ``Features.preact`` holds the same maps (a hook sees a module's output only, not the values
  before its last ReLU).
- ``classifier``: the final layer; its input, flattened to (N, F), is ``Features.pooled``
  (captured by a forward pre-hook), ``num_features = F``. Default: the last ``nn.Linear``.
- ``num_classes``: the width of the logits the module returns, checked against the classifier's
  outputs and against the argument when one is given.

Wrong names are errors at wrap time that list the nearest valid names. Channels and sizes come
from one dry forward of a zero batch of ``input_shape`` in eval mode, after which every
submodule's train/eval flag and every buffer (batch-norm statistics) are as before.

Hooks are registered for the duration of one ``forward_features`` call and removed after it, so
the wrapped module itself is never changed: it can still be used, saved and loaded on its own,
and the adapter holds it as ``.module`` (state-dict keys ``module.*``). A map that the model
later modifies in place (an in-place ReLU applied to a tapped BatchNorm's output) is seen after
that change: tap the module whose output is not overwritten.

Zoo models (:class:`FeatureModel` subclasses) return their features themselves and are never
hooked: ``wrap`` returns them unchanged.
"""
from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mcmi.models.base import FeatureModel, Features, preserved_state, probe_input

__all__ = ["HookedModel", "LogitsModel", "as_logits_model", "infer_num_classes", "wrap"]


def wrap(
    model: nn.Module,
    stages: Sequence[str] | None = None,
    classifier: str | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, ...] = (3, 32, 32),
) -> FeatureModel:
    """``model`` as a :class:`FeatureModel` whose features are the outputs of the submodules
    named in ``stages`` and the input of ``classifier`` (see the module docstring). A
    :class:`FeatureModel` (a zoo model, or one wrapped before) is returned unchanged."""
    if isinstance(model, FeatureModel):
        if num_classes is not None and num_classes != model.num_classes:
            raise ValueError(f"wrap: num_classes={num_classes} but {type(model).__name__} has "
                             f"{model.num_classes} classes")
        own = getattr(model, "stage_names", None)
        if (stages is not None and list(stages) != own) or (
            classifier is not None and classifier != getattr(model, "classifier_name", None)
        ):
            warnings.warn(f"wrap: {type(model).__name__} is already a FeatureModel and returns its "
                          "own features; stages/classifier are ignored", stacklevel=2)
        return model
    return HookedModel(model, stages or (), classifier, num_classes, input_shape)


# ------------------------------------------------------------------------------ class counts
def _last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    found = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            found = (name, m)
    return found


def infer_num_classes(model: nn.Module) -> tuple[int | None, str]:
    """The number of classes of ``model`` and where it was read: a :class:`FeatureModel`'s
    ``num_classes``, an integer ``num_classes`` attribute, else the output width of the last
    ``nn.Linear`` in ``named_modules()`` order; ``(None, ...)`` when none applies."""
    source = getattr(model, "num_classes_source", None)
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and not isinstance(n, bool):
        return n, source or "its num_classes attribute"
    last = _last_linear(model)
    if last is not None:
        return int(last[1].out_features), f"its last nn.Linear {last[0]!r}"
    return None, "no num_classes attribute and no nn.Linear"


# --------------------------------------------------------------------------- logits only
_FEATURE_ATTRS = {"stage_channels": "stages", "num_features": "pooled features",
                  "classifier": "named classifier"}


class LogitsModel(FeatureModel):
    """A plain logits module for the logit-based methods: ``forward_features`` returns
    ``Features(logits)`` with no stages and no pooled vector. Distillers adapt a plain teacher
    with it by themselves (:func:`as_logits_model`); features need :func:`wrap`."""

    def __init__(self, module: nn.Module, num_classes: int | None = None) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
        self.module = module
        n, source = infer_num_classes(module)
        if num_classes is not None:
            n, source = int(num_classes), "the num_classes argument"
        self.num_classes = n  # type: ignore[assignment]
        self.num_classes_source = source

    def __getattr__(self, name: str) -> Any:
        if name in _FEATURE_ATTRS:
            raise AttributeError(f"{type(self.module).__name__} is used for its logits only and has "
                                 f"no {_FEATURE_ATTRS[name]}: use mcmi.wrap(model, "
                                 "stages=[...], classifier=...)")
        return super().__getattr__(name)

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)

    def forward_features(self, x: Tensor) -> Features:
        return Features(logits=self.module(x))


def as_logits_model(model: nn.Module) -> FeatureModel:
    """``model`` if it is a :class:`FeatureModel`, else a :class:`LogitsModel` around it."""
    return model if isinstance(model, FeatureModel) else LogitsModel(model)


# ---------------------------------------------------------------------------------- hooks
def _resolve(model: nn.Module, valid: list[str], name: Any, role: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"wrap: {role} names must be strings, got {name!r}")
    if name in valid:
        return name
    near = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    if near:
        hint = "nearest: " + ", ".join(repr(v) for v in near)
    else:
        shown = ", ".join(repr(v) for v in valid[:8])
        hint = f"valid names include {shown}" + (", ..." if len(valid) > 8 else "")
    raise ValueError(f"wrap: {type(model).__name__} has no submodule {name!r} ({role}); {hint}")


class HookedModel(FeatureModel):
    """A plain module whose features are read by forward hooks on named submodules; built by
    :func:`wrap` (see the module docstring for what each field of :class:`Features` holds)."""

    def __init__(
        self,
        module: nn.Module,
        stages: Sequence[str] = (),
        classifier: str | None = None,
        num_classes: int | None = None,
        input_shape: tuple[int, ...] = (3, 32, 32),
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"wrap: expected an nn.Module, got {type(module).__name__}")
        kind = type(module).__name__
        if isinstance(stages, str):
            stages = [stages]
        valid = [n for n, _ in module.named_modules(remove_duplicate=False) if n]
        names = [_resolve(module, valid, s, "stage") for s in stages]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"wrap: stage {repeated[0]!r} is listed more than once")
        if classifier is None:
            last = _last_linear(module)
            if last is None:
                raise ValueError(f"wrap: {kind} has no nn.Linear; name its final layer with "
                                 "classifier=")
            classifier = last[0]
        else:
            classifier = _resolve(module, valid, classifier, "classifier")
        self.module = module
        self.stage_names = names
        self.classifier_name = classifier
        self.input_shape = tuple(int(v) for v in input_shape)

        with torch.no_grad(), preserved_state(module):
            module.eval()
            feats, head_out = self._run(probe_input(module, self.input_shape), dry=True)
        width = int(feats.logits.shape[1])
        head_width = int(head_out.shape[-1])
        if head_width != width:
            raise ValueError(f"wrap: classifier {classifier!r} gives {head_width} outputs but {kind} "
                             f"returns {width} logits: name the final layer with classifier=")
        if num_classes is not None and int(num_classes) != width:
            raise ValueError(f"wrap: num_classes={num_classes} but {kind} returns {width} logits "
                             f"(classifier {classifier!r})")
        self.num_classes = width
        self.num_classes_source = f"the outputs of its classifier {classifier!r}"
        self.num_features = int(feats.pooled.shape[1])  # type: ignore[union-attr]
        self.stage_channels = [int(t.shape[1]) for t in feats.stages]
        self.stage_shapes = [tuple(int(v) for v in t.shape[1:]) for t in feats.stages]

    @property
    def classifier(self) -> nn.Module:  # type: ignore[override]
        return self.module.get_submodule(self.classifier_name)

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)

    def forward_features(self, x: Tensor) -> Features:
        return self._run(x)[0]

    def _run(self, x: Tensor, dry: bool = False) -> tuple[Features, Tensor]:
        """One forward with the hooks in place; ``dry`` (the wrap-time probe) checks that every
        tapped module runs exactly once and returns a tensor."""
        kind = type(self.module).__name__
        outs: dict[int, Any] = {}
        calls: dict[int, int] = {}
        head: dict[str, Any] = {}

        def stage_hook(i: int):
            def hook(mod: nn.Module, args: Any, out: Any) -> None:
                calls[i] = calls.get(i, 0) + 1
                outs.setdefault(i, out)
            return hook

        def head_pre_hook(mod: nn.Module, args: Any) -> None:
            head["calls"] = head.get("calls", 0) + 1
            head.setdefault("input", args[0] if args else None)

        def head_hook(mod: nn.Module, args: Any, out: Any) -> None:
            head.setdefault("output", out)

        clf = self.module.get_submodule(self.classifier_name)
        handles = [self.module.get_submodule(n).register_forward_hook(stage_hook(i))
                   for i, n in enumerate(self.stage_names)]
        handles.append(clf.register_forward_pre_hook(head_pre_hook))
        handles.append(clf.register_forward_hook(head_hook))
        try:
            logits = self.module(x)
        finally:
            for h in handles:
                h.remove()
        if dry:
            if not torch.is_tensor(logits) or logits.dim() != 2:
                got = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
                raise ValueError(f"wrap: {kind}.forward must return (N, num_classes) logits, got {got}")
            for i, n in enumerate(self.stage_names):
                if calls.get(i, 0) != 1:
                    raise ValueError(f"wrap: stage {n!r} ran {calls.get(i, 0)} times in one forward "
                                     "of the model (each tapped module must run exactly once)")
                if not torch.is_tensor(outs[i]) or outs[i].dim() < 2:
                    raise ValueError(f"wrap: stage {n!r} returns {type(outs[i]).__name__}, not an "
                                     "(N, C, ...) tensor")
            if head.get("calls", 0) != 1 or not torch.is_tensor(head.get("input")):
                raise ValueError(f"wrap: classifier {self.classifier_name!r} ran "
                                 f"{head.get('calls', 0)} times with a tensor input in one forward "
                                 "(it must run exactly once)")
            if not torch.is_tensor(head.get("output")):
                raise ValueError(f"wrap: classifier {self.classifier_name!r} does not return a tensor")
        missing = [n for i, n in enumerate(self.stage_names) if i not in outs]
        if missing or "input" not in head:
            raise RuntimeError(f"wrap: {missing[0] if missing else self.classifier_name!r} did not "
                               f"run in this forward of {kind}")
        pooled = head["input"]
        if pooled.dim() > 2:
            pooled = pooled.flatten(1)
        stages = [outs[i] for i in range(len(self.stage_names))]
        feats = Features(logits=logits, stages=stages, preact=list(stages), pooled=pooled)
        return feats, head.get("output")

    def extra_repr(self) -> str:
        return f"stages={self.stage_names}, classifier={self.classifier_name!r}"
