"""Model zoo: ``create_model(name, num_classes)``; every model implements :class:`FeatureModel`."""
from mcmi.models.base import (
    MODELS,
    FeatureModel,
    Features,
    count_parameters,
    create_model,
    list_models,
    register_model,
)
from mcmi.models import mlp  # noqa: F401  (registers)
from mcmi.models import cifar, imagenet  # noqa: F401  (registers)

__all__ = [
    "MODELS",
    "FeatureModel",
    "Features",
    "count_parameters",
    "create_model",
    "list_models",
    "register_model",
]
