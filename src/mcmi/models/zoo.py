"""The model zoo: every family registered, and models built by name.

Importing this module imports each family (:mod:`~mcmi.models.cifar`,
:mod:`~mcmi.models.imagenet`, :mod:`~mcmi.models.mlp`), whose ``@register_model`` factories fill
:data:`~mcmi.models.base.MODELS`. The families import only :mod:`~mcmi.models.base` and shared
building blocks, never this module, so a name is registered exactly when this module is loaded.
"""
from __future__ import annotations

from typing import Any

from mcmi.models import cifar, imagenet, mlp  # noqa: F401  (registers the families)
from mcmi.models.base import MODELS, FeatureModel

__all__ = ["MODELS", "create_model", "list_models"]


def create_model(name: str, num_classes: int, **kwargs: Any) -> FeatureModel:
    """Build a registered model by name, e.g. ``create_model("resnet20", num_classes=100)``."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return MODELS.build(name, num_classes=num_classes, **kwargs)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()
