"""RepDistiller's CIFAR models as data: their state-dict layout and their eval-mode feature lists.

An independent, functional re-implementation (``F.conv2d``, ``F.batch_norm`` in eval mode,
``F.relu``, ...) written from reading RepDistiller's model code (Tian et al., "Contrastive
Representation Distillation", ICLR 2020; github.com/HobbitLong/RepDistiller, ``models/``,
commit b84f547): ``resnet.py``, ``wrn.py``, ``vgg.py``, ``mobilenetv2.py``, ``ShuffleNetv1.py``,
``ShuffleNetv2.py`` and ``resnetv2.py``. mdistiller's CIFAR models
(github.com/megvii-research/mdistiller, ``mdistiller/models/cifar/``) have the same module names
and compute the same maps. Nothing here imports mcmi: the tests compare the zoo against it.

- :func:`repdistiller_state_dict` returns a state dict with exactly the keys (in registration
  order) and shapes of ``model_dict[arch](num_classes=n).state_dict()``, filled with random
  weights: convolutions and linear layers drawn at a variance-preserving scale, BN weight/bias,
  running mean, positive running variance and ``num_batches_tracked`` all random.
- :func:`repdistiller_forward` (in :mod:`reference_forwards`, re-exported here) is their
  ``model.eval(); model(x, is_feat=True, preact=...)``: ``(feats, logits)``, ``feats`` ending
  with the pooled vector, exactly as their code returns it.
- :func:`repdistiller_checkpoint` wraps a state dict the way their ``train_teacher.py`` saves it
  (``torch.save({'epoch': ..., 'model': model.state_dict(), ...}, path)``).

Architectures take mcmi's zoo names (``resnet56``, ``wrn_40_2``, ``vgg13`` ...) or RepDistiller's
``model_dict`` names (``MobileNetV2``, ``ShuffleV1``, ``ShuffleV2``, ``ResNet50``; its ``vgg13``
is ``vgg13_bn``, as here; ``ResNet18`` is ``resnetv2.ResNet18``, outside ``model_dict``). The
tables of the architectures are in :mod:`reference_archs`. Inputs must be 32x32 (their pooling
kernels are fixed for CIFAR).
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from reference_archs import (  # noqa: F401  (re-exported for the converter's tests)
    ALIASES,
    CIFAR_RESNETS,
    MOBILENETS,
    REFERENCE_ARCHS,
    RESNETV2S,
    SHUFFLE_V1,
    SHUFFLE_V2,
    VGGS,
    WRNS,
    canonical,
    family,
    mobilenet_blocks,
    reference_channels,
)
from reference_forwards import channel_shuffle, repdistiller_forward  # noqa: F401  (re-exported)
from torch import Tensor

RESIDUAL_GAIN = 0.3  # scale of the last layer of residual branches: deep nets stay O(1)


# ------------------------------------------------------------------------------ state dicts
class _StateBuilder:
    """Appends parameters and buffers in module-registration order, with random values."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.sd: dict[str, Tensor] = {}

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.g)

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.g)

    def conv(
        self, name: str, cin: int, cout: int, k: int, groups: int = 1, bias: bool = False,
        gain: float = 1.0,
    ) -> None:
        fan_in = (cin // groups) * k * k
        std = gain * math.sqrt(2.0 / fan_in)  # He: variance-preserving through a ReLU
        self.sd[f"{name}.weight"] = self._randn(cout, cin // groups, k, k) * std
        if bias:
            self.sd[f"{name}.bias"] = 0.1 * self._randn(cout)

    def bn(self, name: str, c: int, gain: float = 1.0) -> None:
        # nn.BatchNorm2d's state: weight, bias, running_mean, running_var, num_batches_tracked
        self.sd[f"{name}.weight"] = gain * (0.5 + 0.5 * self._rand(c))
        self.sd[f"{name}.bias"] = 0.1 * self._randn(c)
        self.sd[f"{name}.running_mean"] = 0.1 * self._randn(c)
        self.sd[f"{name}.running_var"] = 0.5 + self._rand(c)  # positive
        self.sd[f"{name}.num_batches_tracked"] = torch.randint(
            1, 200_000, (), generator=self.g, dtype=torch.long
        )

    def linear(self, name: str, cin: int, cout: int) -> None:
        self.sd[f"{name}.weight"] = self._randn(cout, cin) / math.sqrt(cin)
        self.sd[f"{name}.bias"] = 0.1 * self._randn(cout)


def _sd_resnet(b: _StateBuilder, arch: str, num_classes: int) -> None:
    depth, filters = CIFAR_RESNETS[arch]
    n = (depth - 2) // 6
    b.conv("conv1", 3, filters[0], 3)
    b.bn("bn1", filters[0])
    inplanes = filters[0]
    for li, (planes, stride) in enumerate(zip(filters[1:], (1, 2, 2)), start=1):
        for i in range(n):
            p = f"layer{li}.{i}"
            s = stride if i == 0 else 1
            b.conv(f"{p}.conv1", inplanes, planes, 3)
            b.bn(f"{p}.bn1", planes)
            b.conv(f"{p}.conv2", planes, planes, 3)
            b.bn(f"{p}.bn2", planes, gain=RESIDUAL_GAIN)
            if i == 0 and (s != 1 or inplanes != planes):  # _make_layer's downsample
                b.conv(f"{p}.downsample.0", inplanes, planes, 1)
                b.bn(f"{p}.downsample.1", planes)
            inplanes = planes
    b.linear("fc", filters[3], num_classes)


def _sd_wrn(b: _StateBuilder, arch: str, num_classes: int) -> None:
    depth, k = WRNS[arch]
    n = (depth - 4) // 6
    ch = [16, 16 * k, 32 * k, 64 * k]
    b.conv("conv1", 3, ch[0], 3)
    for g in range(1, 4):
        for i in range(n):
            cin = ch[g - 1] if i == 0 else ch[g]
            p = f"block{g}.layer.{i}"
            b.bn(f"{p}.bn1", cin)
            b.conv(f"{p}.conv1", cin, ch[g], 3)
            b.bn(f"{p}.bn2", ch[g])
            b.conv(f"{p}.conv2", ch[g], ch[g], 3, gain=RESIDUAL_GAIN)
            if cin != ch[g]:  # convShortcut exists only when not equalInOut
                b.conv(f"{p}.convShortcut", cin, ch[g], 1)
    b.bn("bn1", ch[3])
    b.linear("fc", ch[3], num_classes)


def _sd_vgg(b: _StateBuilder, arch: str, num_classes: int) -> None:
    cfg = VGGS[arch]
    cin = 3
    for bi, widths in enumerate(cfg):
        for j, w in enumerate(widths):  # [conv, bn, relu] per width, last relu dropped
            b.conv(f"block{bi}.{3 * j}", cin, w, 3, bias=True)
            b.bn(f"block{bi}.{3 * j + 1}", w)
            cin = w
    b.linear("classifier", 512, num_classes)


def _sd_mobilenetv2(b: _StateBuilder, arch: str, num_classes: int) -> None:
    width = MOBILENETS[arch]
    stem = int(32 * width)
    b.conv("conv1.0", 3, stem, 3)
    b.bn("conv1.1", stem)
    cout = stem
    for g, j, cin, cout, _s, t in mobilenet_blocks(width):
        p = f"blocks.{g}.{j}.conv"
        hidden = cin * t
        b.conv(f"{p}.0", cin, hidden, 1)
        b.bn(f"{p}.1", hidden)
        b.conv(f"{p}.3", hidden, hidden, 3, groups=hidden)
        b.bn(f"{p}.4", hidden)
        b.conv(f"{p}.6", hidden, cout, 1)
        b.bn(f"{p}.7", cout)
    last = int(1280 * width) if width > 1.0 else 1280
    b.conv("conv2.0", cout, last, 1)
    b.bn("conv2.1", last)
    b.linear("classifier.0", last, num_classes)


def _sd_shufflenetv1(b: _StateBuilder, arch: str, num_classes: int) -> None:
    groups = SHUFFLE_V1["groups"]
    b.conv("conv1", 3, 24, 1)
    b.bn("bn1", 24)
    in_planes = 24
    for li, (out_planes, nb) in enumerate(zip(SHUFFLE_V1["out_planes"], SHUFFLE_V1["num_blocks"]), 1):
        for i in range(nb):
            p = f"layer{li}.{i}"
            branch = out_planes - (in_planes if i == 0 else 0)
            mid = int(branch / 4)
            g = 1 if in_planes == 24 else groups
            b.conv(f"{p}.conv1", in_planes, mid, 1, groups=g)
            b.bn(f"{p}.bn1", mid)
            b.conv(f"{p}.conv2", mid, mid, 3, groups=mid)
            b.bn(f"{p}.bn2", mid)
            b.conv(f"{p}.conv3", mid, branch, 1, groups=groups)
            b.bn(f"{p}.bn3", branch)
            in_planes = out_planes
    b.linear("linear", SHUFFLE_V1["out_planes"][2], num_classes)


def _sd_shufflenetv2(b: _StateBuilder, arch: str, num_classes: int) -> None:
    out_ch, nbs = SHUFFLE_V2["out_channels"], SHUFFLE_V2["num_blocks"]
    b.conv("conv1", 3, 24, 1)
    b.bn("bn1", 24)
    cin = 24
    for li, (cout, nb) in enumerate(zip(out_ch[:3], nbs), 1):
        p = f"layer{li}.0"  # DownBlock
        mid = cout // 2
        b.conv(f"{p}.conv1", cin, cin, 3, groups=cin)
        b.bn(f"{p}.bn1", cin)
        b.conv(f"{p}.conv2", cin, mid, 1)
        b.bn(f"{p}.bn2", mid)
        b.conv(f"{p}.conv3", cin, mid, 1)
        b.bn(f"{p}.bn3", mid)
        b.conv(f"{p}.conv4", mid, mid, 3, groups=mid)
        b.bn(f"{p}.bn4", mid)
        b.conv(f"{p}.conv5", mid, mid, 1)
        b.bn(f"{p}.bn5", mid)
        half = int(cout * 0.5)
        for i in range(1, nb + 1):  # BasicBlocks on the second half of the channels
            p = f"layer{li}.{i}"
            b.conv(f"{p}.conv1", half, half, 1)
            b.bn(f"{p}.bn1", half)
            b.conv(f"{p}.conv2", half, half, 3, groups=half)
            b.bn(f"{p}.bn2", half)
            b.conv(f"{p}.conv3", half, half, 1)
            b.bn(f"{p}.bn3", half)
        cin = cout
    b.conv("conv2", out_ch[2], out_ch[3], 1)
    b.bn("bn2", out_ch[3])
    b.linear("linear", out_ch[3], num_classes)


def _sd_resnetv2(b: _StateBuilder, arch: str, num_classes: int) -> None:
    kind, nums = RESNETV2S[arch]
    expansion = 4 if kind == "bottleneck" else 1
    b.conv("conv1", 3, 64, 3)
    b.bn("bn1", 64)
    in_planes = 64
    for li, (planes, n, stride) in enumerate(zip((64, 128, 256, 512), nums, (1, 2, 2, 2)), 1):
        for i in range(n):
            p = f"layer{li}.{i}"
            s = stride if i == 0 else 1
            if kind == "bottleneck":
                b.conv(f"{p}.conv1", in_planes, planes, 1)
                b.bn(f"{p}.bn1", planes)
                b.conv(f"{p}.conv2", planes, planes, 3)
                b.bn(f"{p}.bn2", planes)
                b.conv(f"{p}.conv3", planes, planes * 4, 1)
                b.bn(f"{p}.bn3", planes * 4, gain=RESIDUAL_GAIN)
            else:
                b.conv(f"{p}.conv1", in_planes, planes, 3)
                b.bn(f"{p}.bn1", planes)
                b.conv(f"{p}.conv2", planes, planes, 3)
                b.bn(f"{p}.bn2", planes, gain=RESIDUAL_GAIN)
            if s != 1 or in_planes != planes * expansion:
                b.conv(f"{p}.shortcut.0", in_planes, planes * expansion, 1)
                b.bn(f"{p}.shortcut.1", planes * expansion)
            in_planes = planes * expansion
    b.linear("linear", 512 * expansion, num_classes)


_STATE_BUILDERS: dict[str, Callable[[_StateBuilder, str, int], None]] = {
    "resnet": _sd_resnet,
    "wrn": _sd_wrn,
    "vgg": _sd_vgg,
    "mobilenetv2": _sd_mobilenetv2,
    "shufflenetv1": _sd_shufflenetv1,
    "shufflenetv2": _sd_shufflenetv2,
    "resnetv2": _sd_resnetv2,
}


def repdistiller_state_dict(arch: str, num_classes: int, seed: int = 0) -> dict[str, Tensor]:
    """Random weights under exactly the keys and shapes of RepDistiller's ``arch`` model."""
    name = canonical(arch)
    b = _StateBuilder(seed)
    _STATE_BUILDERS[family(name)](b, name, num_classes)
    return b.sd


def repdistiller_checkpoint(sd: dict[str, Tensor], kind: str = "best", epoch: int = 240) -> dict:
    """``sd`` wrapped as RepDistiller's ``train_teacher.py`` saves it: ``kind`` ``"best"``
    (``{epoch, model, best_acc, optimizer}``), ``"epoch"`` (``{epoch, model, accuracy,
    optimizer}``, its ``ckpt_epoch_*.pth``) or ``"last"`` (``{opt, model, optimizer}``, with the
    argparse ``Namespace`` that makes ``torch.load(weights_only=True)`` refuse the file)."""
    optimizer = {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
                                                "params": list(range(len(sd)))}]}
    acc = torch.tensor(75.0)
    if kind == "best":
        return {"epoch": epoch, "model": sd, "best_acc": acc, "optimizer": optimizer}
    if kind == "epoch":
        return {"epoch": epoch, "model": sd, "accuracy": acc, "optimizer": optimizer}
    if kind == "last":
        opt = argparse.Namespace(model="unknown", epochs=epoch, learning_rate=0.05)
        return {"opt": opt, "model": sd, "optimizer": optimizer}
    raise ValueError(f"kind must be 'best', 'epoch' or 'last', got {kind!r}")
