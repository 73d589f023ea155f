"""The one interface every model of the zoo implements, and the model registry.

Distillers never attach hooks: a model returns its intermediate features itself
(mdistiller's convention), through :meth:`FeatureModel.forward_features`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mcmi.registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


@dataclass
class Features:
    """Everything a distiller may read from one forward pass.

    Attributes:
        logits: (N, num_classes) class scores.
        stages: feature maps from the stem to the last stage, in forward order; ``stages[-1]``
            is the map that is pooled. Post-activation.
        preact: the same maps before their final ReLU (equal to ``stages`` where a block ends
            without one). Pre-activation features are what FitNet/ReviewKD-style methods match.
        pooled: (N, num_features) the vector fed to the classifier.
    """

    logits: Tensor
    stages: list[Tensor] = field(default_factory=list)
    preact: list[Tensor] = field(default_factory=list)
    pooled: Tensor | None = None


class FeatureModel(nn.Module):
    """Base class of all models: ``forward`` returns logits, ``forward_features`` a :class:`Features`.

    Subclasses set ``stage_channels`` (channels of each entry of ``Features.stages``),
    ``num_features`` (width of ``Features.pooled``) and ``classifier`` (the final ``nn.Linear``),
    so distillers can build connectors without a dummy forward pass.
    """

    stage_channels: list[int]
    num_features: int
    num_classes: int
    classifier: nn.Module

    def forward_features(self, x: Tensor) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x).logits


def create_model(name: str, num_classes: int, **kwargs: Any) -> FeatureModel:
    """Build a registered model by name, e.g. ``create_model("resnet20", num_classes=100)``."""
    import mcmi.models  # noqa: F401  (registers the zoo)

    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODELS.build(name, num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    import mcmi.models  # noqa: F401

    return MODELS.names()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def probe_features(model: FeatureModel, image_shape: tuple[int, ...]) -> Features:
    """Run one tiny eval-mode forward (batch 2) to read feature shapes."""
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        return model.forward_features(torch.zeros(2, *image_shape, device=param.device))
    finally:
        model.train(was_training)
