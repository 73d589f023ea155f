"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2)
in the variant of the RepDistiller/CRD zoo (Tian et al., "Contrastive Representation
Distillation", ICLR 2020): a 3x3 stem, three stages of BasicBlocks, 1x1-conv projection shortcuts.

``resnet{8,14,20,32,44,56,110}`` use widths 16/16/32/64; ``resnet8x4`` and ``resnet32x4`` use
32/64/128/256 (stem/stage1/stage2/stage3). State-dict keys follow RepDistiller's except the final
layer, named ``classifier`` here (``fc`` there).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model
from mcmi.models.resnet_blocks import BasicBlock, conv3x3, run_stage


class CifarResNet(FeatureModel):
    """CIFAR ResNet of depth ``6n + 2``: stem conv-BN-ReLU, three stages of ``n`` BasicBlocks
    (strides 1, 2, 2), global average pooling, linear classifier.

    ``Features.stages`` = [stem, stage1, stage2, stage3] (32x32, 32x32, 16x16, 8x8 for CIFAR), as
    RepDistiller's ``[f0, f1, f2, f3]`` (``f4``, the pooled vector, is ``pooled``); ``preact``
    holds the stage maps before their final ReLU and, as RepDistiller's ``preact=True`` list,
    the post-ReLU stem.
    """

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = conv3x3(3, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_ch = widths[0]
        stages = []
        for width, stride in zip(widths[1:], (1, 2, 2)):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_ch, width, stride if i == 0 else 1))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.classifier = nn.Linear(in_ch, num_classes)
        self.stage_channels = list(widths)
        self.num_features = in_ch
        self.num_classes = num_classes
        init_weights_(self)

    def forward_features(self, x: Tensor) -> Features:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for stage in (self.layer1, self.layer2, self.layer3):
            x, pre = run_stage(stage, x)
            stages.append(x)
            preact.append(pre)
        pooled = global_avg_pool(x)
        return Features(self.classifier(pooled), stages, preact, pooled)


_SMALL = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


@register_model("resnet8")
def resnet8(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(8, _SMALL, num_classes, **kwargs)


@register_model("resnet14")
def resnet14(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(14, _SMALL, num_classes, **kwargs)


@register_model("resnet20")
def resnet20(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(20, _SMALL, num_classes, **kwargs)


@register_model("resnet32")
def resnet32(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(32, _SMALL, num_classes, **kwargs)


@register_model("resnet44")
def resnet44(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(44, _SMALL, num_classes, **kwargs)


@register_model("resnet56")
def resnet56(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(56, _SMALL, num_classes, **kwargs)


@register_model("resnet110")
def resnet110(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(110, _SMALL, num_classes, **kwargs)


@register_model("resnet8x4")
def resnet8x4(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(8, _WIDE, num_classes, **kwargs)


@register_model("resnet32x4")
def resnet32x4(num_classes: int, **kwargs) -> CifarResNet:
    return CifarResNet(32, _WIDE, num_classes, **kwargs)
