"""ImageNet ResNet-18/34/50 (He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016) in torchvision's layout (stride on the 3x3 conv of the bottleneck, "ResNet v1.5").

State-dict keys follow torchvision's ``resnet18/34/50`` except the final layer, named
``classifier`` here (``fc`` there), so torchvision checkpoints load after renaming ``fc.*``.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model
from mcmi.models.resnet_blocks import BasicBlock, Bottleneck, run_stage


class ImageNetResNet(FeatureModel):
    """7x7/2 stem conv-BN-ReLU, 3x3/2 max-pool, four stages (strides 1, 2, 2, 2), global average
    pooling, linear classifier.

    ``Features.stages`` = [stem before the max-pool (1/2 resolution), stage1 (1/4), stage2 (1/8),
    stage3 (1/16), stage4 (1/32)]; ``preact`` = the same before their final ReLU: mdistiller's
    ImageNet ResNet (``mdistiller/models/imagenet/resnet.py``: ``feats`` and ``preact_feats``).
    ``small_input=True`` swaps the stem for a 3x3 stride-1 conv without max-pooling (the CIFAR
    variant, RepDistiller's ``resnetv2.py``: stages at 1, 1, 1/2, 1/4, 1/8); its ``preact``
    then starts, as RepDistiller's ``preact=True`` list ``[f0, f1_pre, ...]``, with the
    post-ReLU stem.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int,
        zero_init_residual: bool = False,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.small_input = small_input
        if small_input:  # CIFAR stem (RepDistiller's resnetv2): 3x3 stride 1, no max-pool
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        in_ch = 64
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(block(in_ch, planes, 2 if (i > 0 and j == 0) else 1))
                in_ch = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.classifier = nn.Linear(in_ch, num_classes)
        self.stage_channels = [64] + [p * block.expansion for p in (64, 128, 256, 512)]
        self.num_features = in_ch
        self.num_classes = num_classes
        init_weights_(self)
        if zero_init_residual:  # torchvision's option: each residual branch starts at zero
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward_features(self, x: Tensor) -> Features:
        pre = self.bn1(self.conv1(x))
        x = F.relu(pre)
        stages, preact = [x], [x if self.small_input else pre]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x, pre = run_stage(stage, x)
            stages.append(x)
            preact.append(pre)
        pooled = global_avg_pool(x)
        return Features(self.classifier(pooled), stages, preact, pooled)


@register_model("imagenet_resnet18")
def imagenet_resnet18(num_classes: int, **kwargs) -> ImageNetResNet:
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, **kwargs)


@register_model("imagenet_resnet34")
def imagenet_resnet34(num_classes: int, **kwargs) -> ImageNetResNet:
    return ImageNetResNet(BasicBlock, (3, 4, 6, 3), num_classes, **kwargs)


@register_model("imagenet_resnet50")
def imagenet_resnet50(num_classes: int, **kwargs) -> ImageNetResNet:
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes, **kwargs)
