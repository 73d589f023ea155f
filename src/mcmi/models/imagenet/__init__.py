"""ImageNet models in torchvision's layout; importing registers every model."""
from mcmi.models.imagenet import mobilenetv2, resnet  # noqa: F401
