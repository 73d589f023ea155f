"""ImageNet MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018) in torchvision's layout (``torchvision.models.mobilenet_v2``): ReLU6,
no expansion conv in the t=1 block, channels rounded to multiples of 8, dropout 0.2 before the
classifier.

State-dict keys follow torchvision's except the classifier: torchvision's ``classifier`` is
``Sequential(Dropout, Linear)`` (keys ``classifier.1.*``); here ``classifier`` is the Linear itself
and the dropout is ``self.dropout``.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import conv_bn_act, global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model

# expansion t, output channels c, repeats n, first stride s (paper Table 2)
SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
# Feature stages end after the groups with 24, 32, 96 and 320 channels: the feature points of
# RepDistiller's CIFAR MobileNetV2 (its f1..f4), as in this zoo's CIFAR MobileNetV2.
STAGE_END_GROUPS = (1, 2, 4, 6)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never going more than 10% below ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_bn_relu6(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """[1x1 expand-BN-ReLU6 if t > 1], 3x3 depthwise-BN-ReLU6, 1x1 project-BN (linear);
    identity shortcut when the stride is 1 and the width unchanged."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(in_ch * expand))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_relu6(in_ch, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class ImageNetMobileNetV2(FeatureModel):
    """MobileNetV2 for 224x224 inputs (any size divisible by 32 works).

    ``Features.stages`` = [stem (1/2), after the 24-channel group (1/4), the 32-channel group
    (1/8), the 96-channel group (1/16), the 320-channel group (1/32)] -- the same feature points
    as the CIFAR MobileNetV2 of this zoo (RepDistiller's ``f0..f4``; no reference code gives
    feature lists for this torchvision network). ``pooled`` = the pooled 1x1 head (1280).
    Bottleneck outputs are linear, so there ``preact`` equals ``stages``; for the stem it is the
    BN output before ReLU6.
    """

    def __init__(self, num_classes: int, width: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        in_ch = make_divisible(32 * width)
        self.last_channel = make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [conv_bn_relu6(3, in_ch, 3, stride=2)]
        self._stage_ends: list[int] = []  # indices into ``features`` ending a stage
        stage_channels = [in_ch]
        for g, (t, c, n, s) in enumerate(SETTING):
            out_ch = make_divisible(c * width)
            for j in range(n):
                features.append(InvertedResidual(in_ch, out_ch, s if j == 0 else 1, t))
                in_ch = out_ch
            if g in STAGE_END_GROUPS:
                self._stage_ends.append(len(features) - 1)
                stage_channels.append(out_ch)
        features.append(conv_bn_relu6(in_ch, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(self.last_channel, num_classes)
        self.stage_channels = stage_channels
        self.num_features = self.last_channel
        self.num_classes = num_classes
        init_weights_(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Features:
        """``pooled`` is taken before the dropout (in eval mode it is what the classifier reads)."""
        x, pre = conv_bn_act(self.features[0], x, F.relu6)
        stages, preact = [x], [pre]
        for i in range(1, len(self.features) - 1):
            x = self.features[i](x)
            if i in self._stage_ends:
                stages.append(x)
                preact.append(x)
        pooled = global_avg_pool(self.features[-1](x))
        return Features(self.classifier(self.dropout(pooled)), stages, preact, pooled)


@register_model("imagenet_mobilenetv2")
def imagenet_mobilenetv2(num_classes: int, **kwargs) -> ImageNetMobileNetV2:
    return ImageNetMobileNetV2(num_classes, **kwargs)
