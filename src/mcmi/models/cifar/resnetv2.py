"""CIFAR ResNet-18 and ResNet-50 (He et al., "Deep Residual Learning for Image Recognition", CVPR
2016) as in the RepDistiller/CRD zoo (Tian et al., "Contrastive Representation Distillation", ICLR
2020; its ``resnetv2.ResNet18`` / ``ResNet50``): the ImageNet ResNets with a 3x3 stride-1 stem and
no max-pooling, so a 32x32 input reaches 4x4 after the fourth stage. ResNet-18 is the student of
the paper's semi-supervised CIFAR-10 study (A.9).

State-dict keys follow RepDistiller's except ``shortcut`` (here ``downsample``, torchvision's
name) and the final layer (``linear`` there, ``classifier`` here).
"""
from __future__ import annotations

from mcmi.models.base import register_model
from mcmi.models.imagenet.resnet import ImageNetResNet
from mcmi.models.resnet_blocks import BasicBlock, Bottleneck


@register_model("resnet18")
def resnet18(num_classes: int, **kwargs) -> ImageNetResNet:
    """CIFAR ResNet-18 (RepDistiller's ``ResNet18``); stages = [stem, stage1..stage4]."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, small_input=True, **kwargs)


@register_model("resnet50")
def resnet50(num_classes: int, **kwargs) -> ImageNetResNet:
    """CIFAR ResNet-50 (RepDistiller's ``ResNet50``); stages = [stem, stage1..stage4]."""
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes, small_input=True, **kwargs)
