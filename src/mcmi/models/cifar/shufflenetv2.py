"""CIFAR ShuffleNet V2 (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018) in the RepDistiller/CRD variant (Tian et al., "Contrastive
Representation Distillation", ICLR 2020): ``ShuffleV2`` (net size 1: widths 116/232/464, a
1024-channel 1x1 head), a 1x1 24-channel stem without max-pooling, and each stage made of one
stride-2 down-sampling unit followed by 3/7/3 basic units (one more unit per stage than the paper).

Kept from the reference: PyTorch's default weight init (the reference sets none). State-dict keys
follow RepDistiller's except the classifier (``linear`` there).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool
from mcmi.models.base import FeatureModel, Features, register_model


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(out_ch)


class BasicUnit(nn.Module):
    """Split channels in half; the second half goes 1x1-BN-ReLU, 3x3 depthwise-BN,
    1x1-BN-ReLU; concatenate with the untouched first half; shuffle with 2 groups."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels // 2
        self.conv1, self.bn1 = _conv_bn(c, c, 1)
        self.conv2, self.bn2 = _conv_bn(c, c, 3, groups=c)
        self.conv3, self.bn3 = _conv_bn(c, c, 1)

    def _branch_preact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x.chunk(2, dim=1)
        out = F.relu(self.bn1(self.conv1(x2)), inplace=True)
        out = self.bn2(self.conv2(out))
        return x1, self.bn3(self.conv3(out))

    def forward(self, x: Tensor) -> Tensor:
        x1, pre = self._branch_preact(x)
        return torch.channel_shuffle(torch.cat([x1, pre.relu_()], dim=1), 2)

    def forward_preact(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(output, RepDistiller's ``preact``): the concatenation with the branch's last ReLU
        left out, *not* shuffled (RepDistiller shuffles only the output), so its channels are a
        permutation of the output's."""
        x1, pre = self._branch_preact(x)
        out = torch.channel_shuffle(torch.cat([x1, F.relu(pre)], dim=1), 2)
        return out, torch.cat([x1, pre], dim=1)


class DownUnit(nn.Module):
    """Stride-2 unit: left 3x3 depthwise-BN, 1x1-BN-ReLU; right 1x1-BN-ReLU, 3x3 depthwise
    stride 2-BN, 1x1-BN-ReLU; concatenate (each half ``out_ch / 2``) and shuffle."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = out_ch // 2
        self.conv1, self.bn1 = _conv_bn(in_ch, in_ch, 3, stride=2, groups=in_ch)
        self.conv2, self.bn2 = _conv_bn(in_ch, mid, 1)
        self.conv3, self.bn3 = _conv_bn(in_ch, mid, 1)
        self.conv4, self.bn4 = _conv_bn(mid, mid, 3, stride=2, groups=mid)
        self.conv5, self.bn5 = _conv_bn(mid, mid, 1)

    def forward(self, x: Tensor) -> Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))), inplace=True)
        right = F.relu(self.bn3(self.conv3(x)), inplace=True)
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))), inplace=True)
        return torch.channel_shuffle(torch.cat([left, right], dim=1), 2)


class CifarShuffleNetV2(FeatureModel):
    """ShuffleNet V2 for 32x32 inputs.

    ``Features.stages`` = [stem (32x32), stage1 (16x16), stage2 (8x8), stage3 (4x4)]:
    RepDistiller's ``[f0, f1, f2, f3]`` (24, 116, 232, 464 channels), the last one the stage-3 map
    before the 1x1 head, which ReviewKD's ABF and HSAKD's heads read; ``pooled`` = the pooled
    1x1 head (1024 channels, RepDistiller's ``f4``). ``preact`` = RepDistiller's ``preact=True``
    list: the post-ReLU stem, then each stage's last unit with its final branch ReLU left out,
    concatenated but not shuffled (the reference shuffles only the output).
    """

    def __init__(
        self,
        num_classes: int,
        out_channels: tuple[int, int, int, int] = (116, 232, 464, 1024),
        num_blocks: tuple[int, int, int] = (3, 7, 3),
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        in_ch = 24
        layers = []
        for width, n in zip(out_channels[:3], num_blocks):
            units = [DownUnit(in_ch, width), *(BasicUnit(width) for _ in range(n))]
            layers.append(nn.Sequential(*units))
            in_ch = width
        self.layer1, self.layer2, self.layer3 = layers
        self.conv2, self.bn2 = _conv_bn(in_ch, out_channels[3], 1)
        self.classifier = nn.Linear(out_channels[3], num_classes)
        self.stage_channels = [24, *out_channels[:3]]
        self.num_features = out_channels[3]
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
        pooled = global_avg_pool(F.relu(self.bn2(self.conv2(x))))
        return Features(self.classifier(pooled), stages, preact, pooled)


@register_model("shufflenetv2")
def shufflenetv2(num_classes: int, **kwargs) -> CifarShuffleNetV2:
    """RepDistiller's ``ShuffleV2``."""
    return CifarShuffleNetV2(num_classes, **kwargs)
