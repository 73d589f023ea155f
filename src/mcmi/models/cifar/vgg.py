"""CIFAR VGG with batch norm (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015) in the RepDistiller/CRD variant (Tian et al.,
"Contrastive Representation Distillation", ICLR 2020): five blocks of 3x3 conv-BN-ReLU, max-pooling
between blocks, global average pooling and a single linear classifier (no FC stack).

RepDistiller's ``vgg8``/``vgg11``/... names denote its ``*_bn`` models, as here. State-dict keys
follow RepDistiller's.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from mcmi.models._util import global_avg_pool, init_weights_
from mcmi.models.base import FeatureModel, Features, register_model

# Per block, the widths of its 3x3 convolutions.
CONFIGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [
        [64, 64],
        [128, 128],
        [256, 256, 256, 256],
        [512, 512, 512, 512],
        [512, 512, 512, 512],
    ],
}


def make_block(widths: list[int], in_ch: int) -> nn.Sequential:
    """conv-BN-ReLU repeated, the last ReLU left out (the model applies it, keeping the preact)."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_ch, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
        in_ch = w
    return nn.Sequential(*layers[:-1])


class CifarVGG(FeatureModel):
    """VGG-BN for 32x32 (or 64x64) inputs.

    Blocks 0-3 are each followed by 2x2 max-pooling except that, as in RepDistiller, the pooling
    after block 3 is applied only to inputs of height >= 64 (so a 32x32 input ends at 4x4).
    ``Features.stages`` = the five block outputs after their final ReLU and before pooling
    (RepDistiller's ``[f0, ..., f4]``; ``f5``, the pooled vector, is ``pooled``); ``preact`` =
    the same before that ReLU, except the first (block 0), post-ReLU in RepDistiller's
    ``preact=True`` list too.
    """

    def __init__(self, cfg: list[list[int]], num_classes: int) -> None:
        super().__init__()
        in_chs = [3] + [widths[-1] for widths in cfg[:-1]]
        self.block0, self.block1, self.block2, self.block3, self.block4 = (
            make_block(widths, c) for widths, c in zip(cfg, in_chs)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.classifier = nn.Linear(cfg[-1][-1], num_classes)
        self.stage_channels = [widths[-1] for widths in cfg]
        self.num_features = cfg[-1][-1]
        self.num_classes = num_classes
        init_weights_(self, linear_std=0.01)

    def forward_features(self, x: Tensor) -> Features:
        pool_block3 = x.shape[-2] >= 64
        blocks = (self.block0, self.block1, self.block2, self.block3, self.block4)
        stages, preact = [], []
        for i, block in enumerate(blocks):
            if i > 0 and (i != 4 or pool_block3):
                x = self.pool(x)
            pre = block(x)
            x = F.relu(pre)
            stages.append(x)
            preact.append(pre if i > 0 else x)
        pooled = global_avg_pool(x)
        return Features(self.classifier(pooled), stages, preact, pooled)


def _factory(name: str):
    def build(num_classes: int, **kwargs) -> CifarVGG:
        return CifarVGG(CONFIGS[name], num_classes, **kwargs)

    build.__name__ = name
    build.__doc__ = f"{name} with batch norm (RepDistiller's ``{name}_bn``)."
    return register_model(name)(build)


vgg8 = _factory("vgg8")
vgg11 = _factory("vgg11")
vgg13 = _factory("vgg13")
vgg16 = _factory("vgg16")
vgg19 = _factory("vgg19")
