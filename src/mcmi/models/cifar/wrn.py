"""Wide ResNets (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016) as in the
RepDistiller/CRD zoo (Tian et al., "Contrastive Representation Distillation", ICLR 2020).

WRN-d-k has a 3x3 stem of 16 channels and three groups of ``(d - 4) / 6`` pre-activation blocks
(BN-ReLU-conv3x3-BN-ReLU-conv3x3) of widths 16k, 32k, 64k, then BN-ReLU, global average pooling and
a linear classifier. State-dict keys follow RepDistiller's except the final layer, ``classifier``
here (``fc`` there).
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model


class WideBlock(nn.Module):
    """Pre-activation basic block. When the width changes, the 1x1 projection shortcut reads the
    activated input ``relu(bn1(x))``; otherwise the shortcut is the raw input ``x``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_ch == out_ch
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward_activated(self, x: Tensor, act: Tensor) -> Tensor:
        """The block given its input ``x`` and ``act = relu(self.bn1(x))`` from the caller."""
        out = F.relu(self.bn2(self.conv1(act)), inplace=True)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal_in_out else self.convShortcut(act))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_activated(x, F.relu(self.bn1(x)))


class NetworkBlock(nn.Module):
    """A group of ``n`` WideBlocks; only the first one changes width or stride."""

    def __init__(self, n: int, in_ch: int, out_ch: int, stride: int, drop_rate: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBlock(in_ch if i == 0 else out_ch, out_ch, stride if i == 0 else 1, drop_rate)
                for i in range(n)
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(FeatureModel):
    """WRN-depth-widen for 32x32 inputs.

    The blocks are pre-activation, so a group's output is a raw residual sum, followed by the
    BN-ReLU that opens the next group (its first block's ``bn1``) or the final ``bn1``.
    As RepDistiller's and mdistiller's ``WideResNet`` (``forward(x, is_feat=True,
    preact=False)``): ``stages`` = [stem conv output (no BN/ReLU inside the stem), raw residual
    sums of group1, group2, group3]; ``preact`` = [stem, those sums after the BN that follows
    them, before its ReLU] (their ``preact=True`` list: ``block2.layer[0].bn1(f1)``,
    ``block3.layer[0].bn1(f2)``, ``bn1(f3)``). That BN-ReLU is computed once and reused by the
    next group; ``pooled`` is the average of ``relu(bn1(group3))``.
    """

    def __init__(self, depth: int, widen: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.classifier = nn.Linear(widths[3], num_classes)
        self.stage_channels = widths
        self.num_features = widths[3]
        self.num_classes = num_classes
        init_weights_(self, linear_zero_bias=True)

    def forward_features(self, x: Tensor) -> Features:
        x = self.conv1(x)
        stages, preact = [x], [x]
        groups = (self.block1, self.block2, self.block3)
        # BN that follows each group's sum = the first bn1 of the next group, or the final bn1.
        end_bns = (self.block2.layer[0].bn1, self.block3.layer[0].bn1, self.bn1)
        act: Tensor | None = None
        for group, end_bn in zip(groups, end_bns):
            for i, block in enumerate(group.layer):
                if i == 0 and act is not None:
                    x = block.forward_activated(x, act)  # its bn1 already ran as end_bn
                else:
                    x = block(x)
            pre = end_bn(x)
            act = F.relu(pre)
            stages.append(x)
            preact.append(pre)
        pooled = global_avg_pool(act)
        return Features(self.classifier(pooled), stages, preact, pooled)


@register_model("wrn_16_1")
def wrn_16_1(num_classes: int, **kwargs) -> WideResNet:
    return WideResNet(16, 1, num_classes, **kwargs)


@register_model("wrn_16_2")
def wrn_16_2(num_classes: int, **kwargs) -> WideResNet:
    return WideResNet(16, 2, num_classes, **kwargs)


@register_model("wrn_40_1")
def wrn_40_1(num_classes: int, **kwargs) -> WideResNet:
    return WideResNet(40, 1, num_classes, **kwargs)


@register_model("wrn_40_2")
def wrn_40_2(num_classes: int, **kwargs) -> WideResNet:
    return WideResNet(40, 2, num_classes, **kwargs)
