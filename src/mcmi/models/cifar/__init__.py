"""CIFAR model zoo of RepDistiller/CRD (Tian et al., ICLR 2020); importing registers every model."""
from mcmi.models.cifar import mobilenetv2, resnet, shufflenetv1, shufflenetv2, vgg, wrn  # noqa: F401
