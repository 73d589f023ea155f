"""Model zoo: ``create_model(name, num_classes)``; every model implements :class:`FeatureModel`.
``load_model(path)`` reads any weight file: mcmi's, RepDistiller/mdistiller's, torchvision's, safetensors."""
from mcmi.models import (  # noqa: F401  (registers)
    cifar,
    imagenet,
    mlp,  # noqa: F401  (registers)
)
from mcmi.models.base import (
    MODELS,
    FeatureModel,
    Features,
    count_parameters,
    create_model,
    list_models,
    register_model,
)
from mcmi.models.io import load_model

__all__ = [
    "MODELS",
    "FeatureModel",
    "Features",
    "count_parameters",
    "create_model",
    "list_models",
    "load_model",
    "register_model",
]
