"""The residual blocks of the ResNets (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016), shared by the CIFAR family (:mod:`mcmi.models.cifar.resnet`, ``resnetv2``) and the
ImageNet one (:mod:`mcmi.models.imagenet.resnet`), so the ImageNet family does not depend on the
CIFAR one (the reverse, one way, remains: ``resnetv2`` reuses the ImageNet ResNet class).

Each block has ``forward_preact`` returning ``(output, output before the final ReLU)``, which
:func:`run_stage` uses to give models their ``Features.preact`` maps.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (identity, or 1x1 conv-BN when the shape changes),
    followed by ReLU: the block of the CIFAR ResNets and of the ImageNet ResNet-18/34."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def residual_sum(self, x: Tensor) -> Tensor:
        """The block's output before its final ReLU."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.residual_sum(x).relu_()  # the sum is a fresh tensor: in place is safe

    def forward_preact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.residual_sum(x)
        return F.relu(pre), pre


class Bottleneck(nn.Module):
    """1x1 reduce-BN-ReLU, 3x3 (strided) conv-BN-ReLU, 1x1 expand (x4)-BN, plus shortcut, ReLU."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def residual_sum(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.residual_sum(x).relu_()

    def forward_preact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.residual_sum(x)
        return F.relu(pre), pre


def run_stage(stage: nn.Sequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run a stage of blocks, returning the last block's ``(output, pre-ReLU output)``."""
    for block in stage[:-1]:
        x = block(x)
    return stage[-1].forward_preact(x)
