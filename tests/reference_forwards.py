"""RepDistiller's eval-mode ``forward(x, is_feat=True, preact=...)`` re-implemented functionally
(``F.conv2d``, ``F.batch_norm`` in eval mode, ``F.relu``, ...) from reading its model files
(github.com/HobbitLong/RepDistiller, ``models/``, commit b84f547), reading the weights from a
state dict under RepDistiller's key names. Public entry: :func:`reference_layouts.repdistiller_forward`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from reference_archs import (
    CIFAR_RESNETS,
    MOBILENET_FEATURE_GROUPS,
    MOBILENETS,
    RESNETV2S,
    SHUFFLE_V1,
    SHUFFLE_V2,
    VGGS,
    WRNS,
    canonical,
    family,
    mobilenet_blocks,
)
from torch import Tensor

BN_EPS = 1e-5  # nn.BatchNorm2d's default, used by every RepDistiller model


class _Ops:
    """Eval-mode layers reading their weights from a RepDistiller state dict."""

    def __init__(self, sd: dict[str, Tensor]) -> None:
        self.sd = sd

    def has(self, name: str) -> bool:
        return f"{name}.weight" in self.sd

    def conv(self, name: str, x: Tensor, stride: int = 1) -> Tensor:
        w = self.sd[f"{name}.weight"]
        k = w.shape[-1]
        groups = x.shape[1] // w.shape[1]
        return F.conv2d(x, w, self.sd.get(f"{name}.bias"), stride, (k - 1) // 2, 1, groups)

    def bn(self, name: str, x: Tensor) -> Tensor:
        sd = self.sd
        return F.batch_norm(
            x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
            sd[f"{name}.weight"], sd[f"{name}.bias"], training=False, momentum=0.0, eps=BN_EPS,
        )

    def conv_bn(self, conv: str, bn: str, x: Tensor, stride: int = 1) -> Tensor:
        return self.bn(bn, self.conv(conv, x, stride))

    def linear(self, name: str, x: Tensor) -> Tensor:
        return F.linear(x, self.sd[f"{name}.weight"], self.sd[f"{name}.bias"])


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """RepDistiller's ``ShuffleBlock``: (N, g, C/g, H, W) -> swap the two channel axes -> (N, C, H, W)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _fwd_resnet(o: _Ops, arch: str, x: Tensor, preact: bool):
    depth, _filters = CIFAR_RESNETS[arch]
    n = (depth - 2) // 6
    x = F.relu(o.conv_bn("conv1", "bn1", x))
    feats, pres = [x], [x]
    for li, stride in zip((1, 2, 3), (1, 2, 2)):
        for i in range(n):
            p, s = f"layer{li}.{i}", (stride if i == 0 else 1)
            out = F.relu(o.conv_bn(f"{p}.conv1", f"{p}.bn1", x, s))
            out = o.conv_bn(f"{p}.conv2", f"{p}.bn2", out)
            res = o.conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", x, s) if o.has(f"{p}.downsample.0") else x
            pre = out + res
            x = F.relu(pre)
        feats.append(x)
        pres.append(pre)  # the last block's (is_last) preact
    pooled = F.avg_pool2d(x, 8).flatten(1)  # nn.AvgPool2d(8)
    logits = o.linear("fc", pooled)
    return (pres if preact else feats) + [pooled], logits


def _fwd_wrn(o: _Ops, arch: str, x: Tensor, preact: bool):
    depth, _k = WRNS[arch]
    n = (depth - 4) // 6
    out = o.conv("conv1", x)
    feats = [out]
    for g, stride in zip((1, 2, 3), (1, 2, 2)):
        for i in range(n):
            p, s = f"block{g}.layer.{i}", (stride if i == 0 else 1)
            act = F.relu(o.bn(f"{p}.bn1", out))
            h = F.relu(o.bn(f"{p}.bn2", o.conv(f"{p}.conv1", act, s)))
            h = o.conv(f"{p}.conv2", h)
            # equalInOut: identity of the raw input; else the 1x1 shortcut of the activated one
            short = o.conv(f"{p}.convShortcut", act, s) if o.has(f"{p}.convShortcut") else out
            out = short + h
        feats.append(out)  # f1, f2, f3: the raw residual sums
    pooled = F.avg_pool2d(F.relu(o.bn("bn1", out)), 8).flatten(1)
    logits = o.linear("fc", pooled)
    if preact:  # block2.layer[0].bn1(f1), block3.layer[0].bn1(f2), bn1(f3)
        feats = [feats[0], o.bn("block2.layer.0.bn1", feats[1]),
                 o.bn("block3.layer.0.bn1", feats[2]), o.bn("bn1", feats[3])]
    return feats + [pooled], logits


def _fwd_vgg(o: _Ops, arch: str, x: Tensor, preact: bool):
    cfg = VGGS[arch]
    h = x.shape[2]

    def block(bi: int, x: Tensor) -> Tensor:
        for j in range(len(cfg[bi])):
            x = o.conv_bn(f"block{bi}.{3 * j}", f"block{bi}.{3 * j + 1}", x)
            if j < len(cfg[bi]) - 1:
                x = F.relu(x)
        return x

    x = F.relu(block(0, x))
    feats, pres = [x], [x]
    for bi in range(1, 5):
        if bi < 4 or h == 64:  # pool0..pool2 always, pool3 only for 64x64 inputs
            x = F.max_pool2d(x, 2, 2)
        pre = block(bi, x)
        x = F.relu(pre)
        feats.append(x)
        pres.append(pre)
    pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
    logits = o.linear("classifier", pooled)
    return (pres if preact else feats) + [pooled], logits


def _fwd_mobilenetv2(o: _Ops, arch: str, x: Tensor, preact: bool):
    width = MOBILENETS[arch]
    x = F.relu(o.conv_bn("conv1.0", "conv1.1", x, 2))  # conv_bn(3, 32w, stride 2)
    feats = [x]
    blocks = mobilenet_blocks(width)
    for gi, (g, j, cin, cout, s, _t) in enumerate(blocks):
        p = f"blocks.{g}.{j}.conv"
        h = F.relu(o.conv_bn(f"{p}.0", f"{p}.1", x))
        h = F.relu(o.conv_bn(f"{p}.3", f"{p}.4", h, s))
        h = o.conv_bn(f"{p}.6", f"{p}.7", h)
        x = x + h if (s == 1 and cin == cout) else h
        last_of_group = gi + 1 == len(blocks) or blocks[gi + 1][0] != g
        if last_of_group and g in MOBILENET_FEATURE_GROUPS:
            feats.append(x)
    out = F.relu(o.conv_bn("conv2.0", "conv2.1", x))
    k = 32 // (32 // 2)  # H = input_size // (32 // 2), input_size = 32
    pooled = F.avg_pool2d(out, k, ceil_mode=True).flatten(1)
    logits = o.linear("classifier.0", pooled)
    return feats + [pooled], logits  # preact is ignored by their forward


def _fwd_shufflenetv1(o: _Ops, arch: str, x: Tensor, preact: bool):
    groups = SHUFFLE_V1["groups"]
    x = F.relu(o.conv_bn("conv1", "bn1", x))
    feats, pres = [x], [x]
    for li, nb in enumerate(SHUFFLE_V1["num_blocks"], 1):
        for i in range(nb):
            p, stride = f"layer{li}.{i}", (2 if i == 0 else 1)
            g = 1 if x.shape[1] == 24 else groups
            out = F.relu(o.conv_bn(f"{p}.conv1", f"{p}.bn1", x))
            out = channel_shuffle(out, g)
            out = F.relu(o.conv_bn(f"{p}.conv2", f"{p}.bn2", out, stride))
            out = o.conv_bn(f"{p}.conv3", f"{p}.bn3", out)
            res = F.avg_pool2d(x, 3, 2, 1) if stride == 2 else x
            pre = torch.cat([out, res], 1) if stride == 2 else out + res
            x = F.relu(pre)
        feats.append(x)
        pres.append(pre)
    pooled = F.avg_pool2d(x, 4).flatten(1)
    logits = o.linear("linear", pooled)
    return (pres if preact else feats) + [pooled], logits


def _fwd_shufflenetv2(o: _Ops, arch: str, x: Tensor, preact: bool):
    x = F.relu(o.conv_bn("conv1", "bn1", x))
    feats, pres = [x], [x]
    for li, nb in enumerate(SHUFFLE_V2["num_blocks"], 1):
        p = f"layer{li}.0"
        left = o.conv_bn(f"{p}.conv1", f"{p}.bn1", x, 2)
        left = F.relu(o.conv_bn(f"{p}.conv2", f"{p}.bn2", left))
        right = F.relu(o.conv_bn(f"{p}.conv3", f"{p}.bn3", x))
        right = o.conv_bn(f"{p}.conv4", f"{p}.bn4", right, 2)
        right = F.relu(o.conv_bn(f"{p}.conv5", f"{p}.bn5", right))
        x = channel_shuffle(torch.cat([left, right], 1), 2)
        for i in range(1, nb + 1):
            p = f"layer{li}.{i}"
            c = int(x.shape[1] * 0.5)
            x1, x2 = x[:, :c], x[:, c:]
            h = F.relu(o.conv_bn(f"{p}.conv1", f"{p}.bn1", x2))
            h = o.conv_bn(f"{p}.conv2", f"{p}.bn2", h)
            branch_pre = o.conv_bn(f"{p}.conv3", f"{p}.bn3", h)
            pre = torch.cat([x1, branch_pre], 1)  # not shuffled
            x = channel_shuffle(torch.cat([x1, F.relu(branch_pre)], 1), 2)
        feats.append(x)
        pres.append(pre)
    out = F.relu(o.conv_bn("conv2", "bn2", x))
    pooled = F.avg_pool2d(out, 4).flatten(1)
    logits = o.linear("linear", pooled)
    return (pres if preact else feats) + [pooled], logits


def _fwd_resnetv2(o: _Ops, arch: str, x: Tensor, preact: bool):
    kind, nums = RESNETV2S[arch]
    x = F.relu(o.conv_bn("conv1", "bn1", x))
    feats, pres = [x], [x]
    for li, (n, stride) in enumerate(zip(nums, (1, 2, 2, 2)), 1):
        for i in range(n):
            p, s = f"layer{li}.{i}", (stride if i == 0 else 1)
            if kind == "bottleneck":
                out = F.relu(o.conv_bn(f"{p}.conv1", f"{p}.bn1", x))
                out = F.relu(o.conv_bn(f"{p}.conv2", f"{p}.bn2", out, s))
                out = o.conv_bn(f"{p}.conv3", f"{p}.bn3", out)
            else:
                out = F.relu(o.conv_bn(f"{p}.conv1", f"{p}.bn1", x, s))
                out = o.conv_bn(f"{p}.conv2", f"{p}.bn2", out)
            short = o.conv_bn(f"{p}.shortcut.0", f"{p}.shortcut.1", x, s) if o.has(f"{p}.shortcut.0") else x
            pre = out + short
            x = F.relu(pre)
        feats.append(x)
        pres.append(pre)
    pooled = F.adaptive_avg_pool2d(x, 1).flatten(1)
    logits = o.linear("linear", pooled)
    return (pres if preact else feats) + [pooled], logits


_FORWARDS = {
    "resnet": _fwd_resnet,
    "wrn": _fwd_wrn,
    "vgg": _fwd_vgg,
    "mobilenetv2": _fwd_mobilenetv2,
    "shufflenetv1": _fwd_shufflenetv1,
    "shufflenetv2": _fwd_shufflenetv2,
    "resnetv2": _fwd_resnetv2,
}


@torch.no_grad()
def repdistiller_forward(
    arch: str, sd: dict[str, Tensor], x: Tensor, preact: bool = False
) -> tuple[list[Tensor], Tensor]:
    """RepDistiller's eval-mode ``model(x, is_feat=True, preact=preact)`` of ``arch`` with weights
    ``sd`` (its key names): ``(feats, logits)``, ``feats[-1]`` the pooled vector. ``x``: 32x32."""
    if x.dim() != 4 or tuple(x.shape[-2:]) != (32, 32):
        raise ValueError(f"RepDistiller's CIFAR models take (N, 3, 32, 32) inputs, got {tuple(x.shape)}")
    name = canonical(arch)
    return _FORWARDS[family(name)](_Ops(sd), name, x, preact)
