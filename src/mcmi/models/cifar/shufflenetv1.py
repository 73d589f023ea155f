"""CIFAR ShuffleNet V1 (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural
Network for Mobile Devices", CVPR 2018) in the RepDistiller/CRD variant (Tian et al., "Contrastive
Representation Distillation", ICLR 2020): ``ShuffleV1`` with 3 groups, stage widths 240/480/960 and
4/8/4 units, a 1x1 24-channel stem without max-pooling, every stage starting with a stride-2 unit.

Kept from the reference: a ReLU after the depthwise conv-BN, the first unit's grouped 1x1 conv
ungrouped (its input has only 24 channels), and PyTorch's default weight init (the reference sets
none). State-dict keys follow RepDistiller's except the classifier (``linear`` there).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool
from mcmi.models.base import FeatureModel, Features, register_model


class ShuffleUnit(nn.Module):
    """Grouped 1x1 conv-BN-ReLU, channel shuffle, 3x3 depthwise conv-BN-ReLU, grouped 1x1 conv-BN;
    stride 1: add the input; stride 2: concatenate a 3x3 average-pooled input. Then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid = out_ch // 4
        self.first_groups = 1 if in_ch == 24 else groups
        self.conv1 = nn.Conv2d(in_ch, mid, 1, groups=self.first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_ch, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def residual_sum(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        if self.first_groups > 1:
            out = torch.channel_shuffle(out, self.first_groups)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        return torch.cat([out, res], dim=1) if self.stride == 2 else out + res

    def forward(self, x: Tensor) -> Tensor:
        return self.residual_sum(x).relu_()

    def forward_preact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.residual_sum(x)
        return F.relu(pre), pre


class CifarShuffleNetV1(FeatureModel):
    """ShuffleNet V1 for 32x32 inputs. ``Features.stages`` = [stem (32x32), stage1 (16x16),
    stage2 (8x8), stage3 (4x4)] (RepDistiller's ``[f0, f1, f2, f3]``; ``f4`` is ``pooled``);
    ``preact`` = the stage maps before their final ReLU, after the post-ReLU stem (RepDistiller's
    ``preact=True`` list)."""

    def __init__(
        self,
        num_classes: int,
        out_channels: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_ch = 24
        layers = []
        for width, n in zip(out_channels, num_blocks):
            units = []
            for i in range(n):
                # The stride-2 unit concatenates its input, so its branch makes the rest.
                branch = width - in_ch if i == 0 else width
                units.append(ShuffleUnit(in_ch, branch, 2 if i == 0 else 1, groups))
                in_ch = width
            layers.append(nn.Sequential(*units))
        self.layer1, self.layer2, self.layer3 = layers
        self.classifier = nn.Linear(in_ch, num_classes)
        self.stage_channels = [24, *out_channels]
        self.num_features = in_ch
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Features:
        x = F.relu(self.bn1(self.conv1(x)))
        stages, preact = [x], [x]
        for layer in (self.layer1, self.layer2, self.layer3):
            for unit in layer[:-1]:
                x = unit(x)
            x, pre = layer[-1].forward_preact(x)
            stages.append(x)
            preact.append(pre)
        pooled = global_avg_pool(x)
        return Features(self.classifier(pooled), stages, preact, pooled)


@register_model("shufflenetv1")
def shufflenetv1(num_classes: int, **kwargs) -> CifarShuffleNetV1:
    """RepDistiller's ``ShuffleV1``."""
    return CifarShuffleNetV1(num_classes, **kwargs)
