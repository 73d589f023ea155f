"""Model zoo: ``create_model(name, num_classes)``; every model implements :class:`FeatureModel`.
``load_model(path)`` reads any weight file: mcmi's, RepDistiller/mdistiller's, torchvision's, safetensors."""
from mcmi.models.base import MODELS, FeatureModel, Features, count_parameters, register_model
from mcmi.models.io import load_model
from mcmi.models.zoo import create_model, list_models

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
