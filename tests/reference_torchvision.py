"""torchvision's ImageNet models as data: their state-dict layout and their eval-mode forward.

An independent, functional re-implementation (``F.conv2d``, ``F.batch_norm`` in eval mode, ...)
written from reading torchvision's model code (github.com/pytorch/vision,
``torchvision/models/mobilenetv2.py`` and ``resnet.py``; the layout has been stable since 0.2):

- ``mobilenet_v2``: ``features`` = ``[ConvNormActivation(3, 32, stride 2)]`` (keys ``.0`` conv,
  ``.1`` BN, ReLU6), 17 ``InvertedResidual`` (``conv`` = ``[ConvNormActivation pw]`` when the
  expansion is not 1, ``ConvNormActivation dw``, ``Conv2d`` pw-linear, ``BatchNorm2d``), a 1x1
  ``ConvNormActivation`` to 1280; ``classifier`` = ``Sequential(Dropout(0.2), Linear)``; channels
  ``_make_divisible(c * width, 8)``.
- ``resnet18``: 7x7/2 ``conv1``, ``bn1``, 3x3/2 max-pool, ``layer1..4`` of BasicBlocks
  (``conv1, bn1, conv2, bn2``, ``downsample.0/1`` on the first block of layers 2-4), ``fc``.

:func:`torchvision_state_dict` returns exactly the keys (in registration order) and shapes of
``torchvision.models.<arch>(num_classes=n).state_dict()`` with random weights and BN statistics;
:func:`torchvision_forward` is ``model.eval()(x)``. Nothing here imports mcmi (nor torchvision).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-5

# mobilenetv2.py: inverted_residual_setting (t, c, n, s)
MOBILENET_V2_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
ARCHS = ("mobilenet_v2", "resnet18")


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision.models._utils._make_divisible."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class _Builder:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, Tensor] = {}

    def conv(self, name: str, cin: int, cout: int, k: int, groups: int = 1) -> None:
        fan_in = (cin // groups) * k * k
        self.sd[f"{name}.weight"] = torch.randn(cout, cin // groups, k, k, generator=self.g) * math.sqrt(2 / fan_in)

    def bn(self, name: str, c: int) -> None:
        self.sd[f"{name}.weight"] = 0.5 + 0.5 * torch.rand(c, generator=self.g)
        self.sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=self.g)
        self.sd[f"{name}.running_mean"] = 0.1 * torch.randn(c, generator=self.g)
        self.sd[f"{name}.running_var"] = 0.5 + torch.rand(c, generator=self.g)
        self.sd[f"{name}.num_batches_tracked"] = torch.randint(1, 100_000, (), generator=self.g)

    def linear(self, name: str, cin: int, cout: int) -> None:
        self.sd[f"{name}.weight"] = torch.randn(cout, cin, generator=self.g) / math.sqrt(cin)
        self.sd[f"{name}.bias"] = 0.1 * torch.randn(cout, generator=self.g)


def _mobilenet_blocks(width: float = 1.0):
    """(index in features, in, out, stride, expand) per InvertedResidual, as MobileNetV2.__init__."""
    cin, idx, out = _make_divisible(32 * width), 1, []
    for t, c, n, s in MOBILENET_V2_SETTING:
        cout = _make_divisible(c * width)
        for i in range(n):
            out.append((idx, cin, cout, s if i == 0 else 1, t))
            cin, idx = cout, idx + 1
    return out


def _sd_mobilenet_v2(b: _Builder, num_classes: int) -> None:
    b.conv("features.0.0", 3, 32, 3)
    b.bn("features.0.1", 32)
    for idx, cin, cout, _s, t in _mobilenet_blocks():
        hidden = cin * t  # int(round(inp * expand_ratio)) there
        p, j = f"features.{idx}.conv", 0
        if t != 1:
            b.conv(f"{p}.0.0", cin, hidden, 1)
            b.bn(f"{p}.0.1", hidden)
            j = 1
        b.conv(f"{p}.{j}.0", hidden, hidden, 3, groups=hidden)
        b.bn(f"{p}.{j}.1", hidden)
        b.conv(f"{p}.{j + 1}", hidden, cout, 1)
        b.bn(f"{p}.{j + 2}", cout)
    b.conv("features.18.0", 320, 1280, 1)
    b.bn("features.18.1", 1280)
    b.linear("classifier.1", 1280, num_classes)


def _sd_resnet18(b: _Builder, num_classes: int) -> None:
    b.conv("conv1", 3, 64, 7)
    b.bn("bn1", 64)
    cin = 64
    for li, planes in enumerate((64, 128, 256, 512), 1):
        for i in range(2):
            p = f"layer{li}.{i}"
            stride = 2 if li > 1 and i == 0 else 1
            b.conv(f"{p}.conv1", cin, planes, 3)
            b.bn(f"{p}.bn1", planes)
            b.conv(f"{p}.conv2", planes, planes, 3)
            b.bn(f"{p}.bn2", planes)
            if stride != 1 or cin != planes:
                b.conv(f"{p}.downsample.0", cin, planes, 1)
                b.bn(f"{p}.downsample.1", planes)
            cin = planes
    b.linear("fc", 512, num_classes)


def torchvision_state_dict(arch: str, num_classes: int, seed: int = 0) -> dict[str, Tensor]:
    """Random weights under exactly the keys and shapes of ``torchvision.models.<arch>``."""
    b = _Builder(seed)
    {"mobilenet_v2": _sd_mobilenet_v2, "resnet18": _sd_resnet18}[arch](b, num_classes)
    return b.sd


def _bn(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], training=False, eps=BN_EPS)


def _conv(sd: dict[str, Tensor], name: str, x: Tensor, stride: int = 1, groups: int = 1) -> Tensor:
    w = sd[f"{name}.weight"]
    return F.conv2d(x, w, None, stride, (w.shape[-1] - 1) // 2, 1, groups)


def _fwd_mobilenet_v2(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    x = F.relu6(_bn(sd, "features.0.1", _conv(sd, "features.0.0", x, 2)))
    for idx, cin, cout, s, t in _mobilenet_blocks():
        p, j, hidden = f"features.{idx}.conv", 0, cin * t
        out = x
        if t != 1:
            out = F.relu6(_bn(sd, f"{p}.0.1", _conv(sd, f"{p}.0.0", out)))
            j = 1
        out = F.relu6(_bn(sd, f"{p}.{j}.1", _conv(sd, f"{p}.{j}.0", out, s, groups=hidden)))
        out = _bn(sd, f"{p}.{j + 2}", _conv(sd, f"{p}.{j + 1}", out))
        x = x + out if s == 1 and cin == cout else out
    x = F.relu6(_bn(sd, "features.18.1", _conv(sd, "features.18.0", x)))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])  # Dropout: identity in eval


def _fwd_resnet18(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    x = F.relu(_bn(sd, "bn1", _conv(sd, "conv1", x, 2)))
    x = F.max_pool2d(x, 3, 2, 1)
    for li in range(1, 5):
        for i in range(2):
            p = f"layer{li}.{i}"
            stride = 2 if li > 1 and i == 0 else 1
            out = F.relu(_bn(sd, f"{p}.bn1", _conv(sd, f"{p}.conv1", x, stride)))
            out = _bn(sd, f"{p}.bn2", _conv(sd, f"{p}.conv2", out))
            short = _bn(sd, f"{p}.downsample.1", _conv(sd, f"{p}.downsample.0", x, stride)) \
                if f"{p}.downsample.0.weight" in sd else x
            x = F.relu(out + short)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


@torch.no_grad()
def torchvision_forward(arch: str, sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """torchvision's eval-mode ``model(x)`` (logits) of ``arch`` with weights ``sd``."""
    return {"mobilenet_v2": _fwd_mobilenet_v2, "resnet18": _fwd_resnet18}[arch](sd, x)
