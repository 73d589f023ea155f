"""CIFAR MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
CVPR 2018) in the variant of the RepDistiller/CRD zoo (Tian et al., "Contrastive Representation
Distillation", ICLR 2020; from Jin et al., "Knowledge Distillation via Route Constrained
Optimization", ICCV 2019): ``mobile_half``, i.e. expansion 6 and width multiplier 0.5.

Differences from the ImageNet network, all kept from the reference: ReLU instead of ReLU6, the
expansion 1x1 conv is present even when the expansion ratio is 1, the second group has stride 1
(so a 32x32 input reaches 2x2), and the 1x1 head keeps 1280 channels for width <= 1. State-dict keys
follow RepDistiller's except the classifier (``classifier.0`` there, a bare ``classifier`` here).
"""
from __future__ import annotations

from torch import Tensor, nn

from mcmi.models._util import global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model

# expansion t, output channels c, repeats n, first stride s (RepDistiller's CIFAR setting)
SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
# Feature stages end after these groups (indices into ``blocks``): RepDistiller's f1..f4.
STAGE_ENDS = (1, 2, 4, 6)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (linear), identity shortcut when
    the stride is 1 and the width unchanged."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_res_connect = stride == 1 and in_ch == out_ch
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class CifarMobileNetV2(FeatureModel):
    """MobileNetV2 for 32x32 inputs.

    ``Features.stages`` = [stem (16x16), after group 1 (16x16), group 2 (8x8), group 4 (4x4),
    group 6 (2x2)]: RepDistiller's ``[f0, f1, f2, f3, f4]`` (16, 12, 16, 48, 160 channels for
    ``mobile_half``), the last one the 320*w-channel bottleneck before the 1x1 head, the map
    ReviewKD's ABF and HSAKD's heads read. ``pooled`` = the pooled 1x1 head (1280 channels,
    RepDistiller's ``f5``). Bottleneck outputs are linear and RepDistiller's ``preact=True``
    returns the same list, so ``preact`` equals ``stages``.
    """

    def __init__(self, num_classes: int, expand: int = 6, width: float = 0.5) -> None:
        super().__init__()
        in_ch = int(32 * width)
        self.conv1 = conv_bn_relu(3, in_ch, 3, stride=2)
        self.blocks = nn.ModuleList()
        stage_channels = [in_ch]
        for i, (t, c, n, s) in enumerate(SETTING):
            out_ch = int(c * width)
            t = expand if t != 1 else 1
            group = []
            for j in range(n):
                group.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                in_ch = out_ch
            self.blocks.append(nn.Sequential(*group))
            if i in STAGE_ENDS:
                stage_channels.append(out_ch)
        self.last_channel = int(1280 * width) if width > 1.0 else 1280
        self.conv2 = conv_bn_relu(in_ch, self.last_channel, 1)
        self.classifier = nn.Linear(self.last_channel, num_classes)
        self.stage_channels = stage_channels
        self.num_features = self.last_channel
        self.num_classes = num_classes
        init_weights_(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Features:
        x = self.conv1(x)
        stages = [x]
        for i, group in enumerate(self.blocks):
            x = group(x)
            if i in STAGE_ENDS:
                stages.append(x)
        pooled = global_avg_pool(self.conv2(x))
        return Features(self.classifier(pooled), stages, list(stages), pooled)


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int, **kwargs) -> CifarMobileNetV2:
    """RepDistiller's ``mobile_half`` (``MobileNetV2`` in its model dict): t=6, width 0.5."""
    return CifarMobileNetV2(num_classes, **kwargs)


@register_model("mobilenetv2_x0_1")
def mobilenetv2_x0_1(num_classes: int, **kwargs) -> CifarMobileNetV2:
    """Width multiplier 0.1: the "MobileNetV2-0.1" student of the binary tasks (paper A.13, Table 13)."""
    return CifarMobileNetV2(num_classes, **{"width": 0.1, **kwargs})
