"""CIFAR model zoo of RepDistiller/CRD (Tian et al., ICLR 2020); importing registers every model."""
from mcmi.models.cifar import (  # noqa: F401
    mobilenetv2,
    resnet,
    resnetv2,
    shufflenetv1,
    shufflenetv2,
    vgg,
    wrn,
)
