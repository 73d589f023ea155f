"""The one interface every model of the zoo implements, and the model registry.

The families register into :data:`MODELS` with :func:`register_model`; building by name
(``create_model``) lives in :mod:`mcmi.models.zoo`, which imports every family.

Distillers never attach hooks: a model returns its intermediate features itself
(mdistiller's convention), through :meth:`FeatureModel.forward_features`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from mcmi.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


@dataclass
class Features:
    """Everything a distiller may read from one forward pass.

    The layout is the reference code's, entry by entry. RepDistiller's (Tian et al., ICLR 2020;
    github.com/HobbitLong/RepDistiller, ``models/``) ``feats, logits = model(x, is_feat=True,
    preact=False)`` maps onto mcmi as::

        stages == feats[:-1]      # the stem map feats[0] included: stages[0] is the stem
        pooled == feats[-1]       # the pooled vector, feats' last entry, is kept apart
        logits == logits

    and ``feats_pre, _ = model(x, is_feat=True, preact=True)`` as ``preact == feats_pre[:-1]``.
    mdistiller's (github.com/megvii-research/mdistiller) ``feats["feats"]``,
    ``feats["preact_feats"]`` and ``feats["pooled_feat"]`` are ``stages``, ``preact`` and
    ``pooled``. Reference method code therefore translates index for index: RepDistiller's
    ``feat[1:-1]`` (AT, VID) is ``stages[1:]``, ``feat[-2]`` (SP) is ``stages[-1]``,
    ``feat[hint_layer]`` (FitNet) is ``stages[hint_layer]``, ``feat[-1]`` (CRD, RKD, PKT, CC) is
    ``pooled``; ReviewKD's levels are ``stages[1:]`` plus ``pooled`` (teacher: ``preact[1:]``).

    Consequences of following the references rather than a uniform rule:

    - ``stages[-1]`` is not always the map that is pooled. Wide ResNets hand the raw residual
      sums (BN-ReLU follows each group: the next group's first ``bn1`` or the final ``bn1``);
      MobileNetV2 and ShuffleNetV2 hand the last bottleneck/stage map (160/464 channels for
      ``mobilenetv2``/``shufflenetv2``), and ``pooled`` is the pooled 1x1 head (1280/1024).
    - ``preact`` is whatever the reference returns with ``preact=True``: the map before the
      block's final ReLU (ResNets, VGG, ShuffleNets), the map after the following BN and before
      its ReLU (Wide ResNets: ``bn(stages[i])``), the map itself where the reference has no
      pre-activation variant (MobileNetV2, and every CIFAR model's stem entry, which the
      references put unchanged in both lists: post-ReLU, or the bare stem conv for Wide ResNets).
      ShuffleNetV2's stage preacts are RepDistiller's unshuffled concatenation (a channel
      permutation of the output's order). The ImageNet ResNets follow mdistiller's ImageNet
      ResNet, whose ``preact_feats[0]`` is the stem's BN output before ReLU; the ImageNet
      MobileNetV2 (no reference with feature lists) uses the CIFAR MobileNetV2's feature points.
    - The stem entry ``stages[0]`` is part of the list, as in both references; the methods that
      skip it (AT, VID, ReviewKD, HSAKD) use ``stages[1:]`` as the references' ``feat[1:...]``.

    Attributes:
        logits: (N, num_classes) class scores.
        stages: the reference's feature maps from the stem to the last stage, in forward order.
        preact: the reference's ``preact=True`` maps, one per entry of ``stages``.
        pooled: (N, num_features) the vector fed to the classifier.

    For any other module adapted by :func:`mcmi.models.wrap.wrap`: ``stages`` are the outputs of
    the named submodules in the order named, ``preact`` the same maps (forward hooks see module
    outputs only), ``pooled`` the classifier's input, flattened.
    """

    logits: Tensor
    stages: list[Tensor] = field(default_factory=list)
    preact: list[Tensor] = field(default_factory=list)
    pooled: Tensor | None = None


class FeatureModel(nn.Module):
    """Base class of all models: ``forward`` returns logits, ``forward_features`` a :class:`Features`.

    Subclasses set ``stage_channels`` (channels of each entry of ``Features.stages``, the same as
    ``Features.preact``'s), ``num_features`` (width of ``Features.pooled``) and ``classifier``
    (the final ``nn.Linear``), so distillers can build connectors without a dummy forward pass.
    """

    stage_channels: list[int]
    num_features: int
    num_classes: int
    classifier: nn.Module

    def forward_features(self, x: Tensor) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).logits


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextmanager
def preserved_state(model: nn.Module, buffers: bool = True) -> Iterator[None]:
    """Undo on exit what running ``model`` may change: every submodule's train/eval flag (set
    back one by one, so a model with some submodules in eval mode stays so) and, with
    ``buffers``, the value of every buffer (batch-norm ``running_mean``/``running_var``/
    ``num_batches_tracked`` included), restored bit for bit in place."""
    modes = [(m, m.training) for m in model.modules()]
    saved = [(name, b.detach().clone()) for name, b in model.named_buffers()] if buffers else []
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag
        if saved:
            current = dict(model.named_buffers())
            with torch.no_grad():
                for name, value in saved:
                    if name in current:
                        current[name].copy_(value)


def probe_input(model: nn.Module, image_shape: tuple[int, ...], n: int = 2) -> Tensor:
    """A zero batch of ``n`` images of ``image_shape`` on the model's device, in its float dtype."""
    ref = next(iter(model.parameters()), None)
    if ref is None:
        ref = next(iter(model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    return torch.zeros(n, *image_shape, device=device, dtype=dtype)


@torch.no_grad()
def probe_features(model: FeatureModel, image_shape: tuple[int, ...]) -> Features:
    """Run one tiny eval-mode forward (batch 2) to read feature shapes; the model's modes and
    buffers are left as they were."""
    with preserved_state(model):
        model.eval()
        return model.forward_features(probe_input(model, image_shape))
