"""HSAKD's auxiliary heads in the authors' form (Yang et al., "Hierarchical Self-supervised
Augmented Knowledge Distillation", IJCAI 2021; code github.com/winycg/HSAKD, the
``Auxiliary_Classifier`` of each ``models/*.py``).

The authors split a backbone into L stages, the ones whose outputs their ``is_feat`` lists hand
out, and attach a head to each output. The head on stage ``l``'s output is a copy of the
backbone's *later* stages ``l+1 .. L``; the head on the last stage's output is one more copy of
stage L with stride 1 and as many input as output channels. Each head ends with the part of the
backbone between its last stage and the global pooling (Wide ResNet: BN-ReLU; MobileNetV2: the
1x1 conv-BN-ReLU to 1280 channels; ShuffleNetV2: the 1x1 conv-BN-ReLU to 1024; none for the
ResNets, VGG and ShuffleNetV1), then global average pooling and a linear layer to 4 x classes
(the joint class x rotation labels of the 4-fold rotation augmentation). Stages per family:

- CIFAR ResNets (``resnet.py``), ResNet-18/50 (``resnetv2.py``), ImageNet ResNets
  (``resnet_imagenet.py``): ``layer1 .. layer3`` (or ``layer4``).
- Wide ResNets (``wrn.py``): ``block1 .. block3``; the last head's copy is a
  ``NetworkBlock(n, C, C, stride 1)``.
- VGG (``vgg.py``): block0, pool-block1, pool-block2 and pool-block3-block4 (the authors' last
  feature is block4's output: block 3 has no head of its own); the last head is block3 (with
  512 input channels) and block4, without pooling.
- MobileNetV2 (``mobilenetv2.py``): inverted-residual groups 0-1, 2, 3-4, 5-6 (RepDistiller's
  feature points, 12/16/48/160 channels at width 0.5); the last head starts groups 5-6 from the
  160-channel map at stride 1.
- ShuffleNetV1/V2 (``ShuffleNetv1.py``, ``ShuffleNetv2.py``): ``layer1 .. layer3``; the last
  head's first unit has stride 1 and keeps the width.

Heads are fresh instances: new modules of the zoo's own block classes, rebuilt from the
backbone's structure (widths, strides, block counts read off its convolutions), never copies of
its weights; so a teacher whose batch norms were folded into its convolutions
(:func:`mcmi.models.fold.fold_batchnorm`) gets the same heads as the unfolded one. Their
initialization is the authors' for that family (``init`` below).

Which of the model's ``Features.stages`` each head reads is found by shape: the output shapes of
the stages above (computed by running fresh stages on a probe image) are matched in order
against the maps the model exposes, a run of equal shapes resolving to its last map (a CIFAR
ResNet-56's stem and stage 1 are both 16 x 32 x 32; VGG's block 3 and block 4 are both
512 x 4 x 4). A model whose exposed maps lack a stage output the authors' heads read raises
:class:`HeadsUnavailable`, as does a model of another family; the caller then falls back to the
light heads (:func:`mcmi.methods.hsakd.build_aux_heads`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mcmi.models.base import FeatureModel, probe_features
from mcmi.models.cifar.mobilenetv2 import CifarMobileNetV2, InvertedResidual, conv_bn_relu
from mcmi.models.cifar.resnet import BasicBlock, CifarResNet
from mcmi.models.cifar.shufflenetv1 import CifarShuffleNetV1, ShuffleUnit
from mcmi.models.cifar.shufflenetv2 import BasicUnit, CifarShuffleNetV2, DownUnit
from mcmi.models.cifar.vgg import CifarVGG, make_block
from mcmi.models.cifar.wrn import NetworkBlock, WideResNet
from mcmi.models.imagenet.resnet import Bottleneck, ImageNetResNet

Modules = Callable[[], list[nn.Module]]


class HeadsUnavailable(ValueError):
    """The authors' heads cannot be built for this model (its family, or the maps it exposes)."""


class HSAKDHeads(nn.Module):
    """A hierarchy of HSAKD auxiliary heads: ``heads[i]`` reads ``Features.stages[map_indices[i]]``.

    ``forward(maps)`` takes one map per head (already selected) and returns one logit tensor per
    head; :meth:`select` picks the maps from a full ``Features.stages`` list. ``spec`` describes
    the heads (``form``: ``"authors"`` or ``"light"``, and what they were built from)."""

    form: str = ""

    def __init__(self, heads: Sequence[nn.Module], map_indices: Sequence[int], spec: dict) -> None:
        super().__init__()
        if len(heads) == 0 or len(heads) != len(map_indices):
            raise ValueError(f"need one map index per head: {len(heads)} heads, {len(map_indices)} indices")
        self.heads = nn.ModuleList(heads)
        self.map_indices = [int(i) for i in map_indices]
        self.spec = {"form": self.form, "map_indices": list(self.map_indices), **spec}

    def select(self, stages: Sequence[Tensor]) -> list[Tensor]:
        if max(self.map_indices) >= len(stages):
            raise ValueError(f"the heads read stages {self.map_indices}, the model gave {len(stages)}")
        return [stages[i] for i in self.map_indices]

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        if len(maps) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} stage maps, got {len(maps)}")
        return [head(m) for head, m in zip(self.heads, maps)]


class StageCopyHead(nn.Module):
    """One head of the authors' form: ``extractor`` (fresh copies of later stages, then the
    backbone's pre-pooling tail), global average pooling, ``fc``."""

    def __init__(self, extractor: nn.Sequential, channels: int, num_outputs: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.fc = nn.Linear(channels, num_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.extractor(x).mean(dim=(2, 3)))


class AuthorsHeads(HSAKDHeads):
    """The authors' heads (module docstring); build them with :func:`build_authors_heads`."""

    form = "authors"


@dataclass
class StagePlan:
    """A backbone cut into the authors' stages: builders of fresh modules for the stem (only to
    probe shapes), each stage, the stride-1 copy of the last stage and the pre-pooling tail."""

    family: str
    stem: Modules
    stages: list[Modules]
    last_stride1: Modules
    tail: Modules = list
    init: tuple[str, str] = ("kaiming", "default")  # (convs/BN, linear): the authors' per family


# ------------------------------------------------------------------- fresh modules, per family
def _seq(*builders: Modules) -> Modules:
    return lambda: [m for b in builders for m in b()]


def _stem_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """A convolution of ``conv``'s geometry (for shape probing only)."""
    return nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                     conv.padding, groups=conv.groups, bias=False)


def _residual_block(block: nn.Module, in_ch: int | None = None, stride: int | None = None) -> nn.Module:
    """A fresh ``BasicBlock``/``Bottleneck`` like ``block`` (optionally other input/stride)."""
    planes = block.conv1.out_channels
    if isinstance(block, Bottleneck):
        return Bottleneck(in_ch or block.conv1.in_channels, planes, stride or block.conv2.stride[0])
    return BasicBlock(in_ch or block.conv1.in_channels, planes, stride or block.conv1.stride[0])


def _resnet_plan(model: nn.Module, image_shape: tuple[int, ...]) -> StagePlan:
    layers = [model.layer1, model.layer2, model.layer3] + (
        [model.layer4] if isinstance(model, ImageNetResNet) else [])

    def stage(layer: nn.Sequential) -> Modules:
        return lambda: [nn.Sequential(*(_residual_block(b) for b in layer))]

    def last() -> list[nn.Module]:
        out = layers[-1][-1].conv1.out_channels * (4 if isinstance(layers[-1][0], Bottleneck) else 1)
        return [nn.Sequential(*(_residual_block(b, out, 1) for b in layers[-1]))]

    def stem() -> list[nn.Module]:
        c = model.conv1.out_channels
        pool = [nn.MaxPool2d(3, 2, 1)] if isinstance(getattr(model, "maxpool", None), nn.MaxPool2d) else []
        return [_stem_conv(model.conv1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), *pool]

    linear = "zero_bias" if isinstance(model, CifarResNet) else "default"
    return StagePlan("resnet", stem, [stage(layer) for layer in layers], last, init=("kaiming", linear))


def _wrn_plan(model: WideResNet, image_shape: tuple[int, ...]) -> StagePlan:
    groups = [model.block1, model.block2, model.block3]

    def stage(g: NetworkBlock, in_ch: int | None = None, stride: int | None = None) -> Modules:
        first = g.layer[0]
        return lambda: [NetworkBlock(len(g.layer), in_ch or first.conv1.in_channels,
                                     first.conv1.out_channels, stride or first.conv1.stride[0], 0.0)]

    c = model.num_features
    return StagePlan(
        "wrn", lambda: [_stem_conv(model.conv1)], [stage(g) for g in groups],
        stage(groups[-1], c, 1), lambda: [nn.BatchNorm2d(c), nn.ReLU(inplace=True)],
        init=("kaiming", "zero_bias"))


def _vgg_plan(model: CifarVGG, image_shape: tuple[int, ...]) -> StagePlan:
    blocks = [model.block0, model.block1, model.block2, model.block3, model.block4]
    widths = [[m.out_channels for m in b if isinstance(m, nn.Conv2d)] for b in blocks]
    ins = [3] + [w[-1] for w in widths[:-1]]

    def block(i: int, in_ch: int | None = None) -> Modules:
        return lambda: [make_block(widths[i], ins[i] if in_ch is None else in_ch), nn.ReLU(inplace=True)]

    def pool() -> list[nn.Module]:
        return [nn.MaxPool2d(kernel_size=2, stride=2)]

    pool3 = [pool] if image_shape[-2] >= 64 else []  # the backbone pools after block 3 only then
    stages = [block(0), _seq(pool, block(1)), _seq(pool, block(2)), _seq(pool, block(3), *pool3, block(4))]
    # PyTorch's default init: the authors' VGG heads define an init function but never call it
    return StagePlan("vgg", list, stages, _seq(block(3, widths[4][-1]), block(4)), init=("default", "default"))


def _mobilenetv2_plan(model: CifarMobileNetV2, image_shape: tuple[int, ...]) -> StagePlan:
    groups = list(model.blocks)
    cuts = [(0, 2), (2, 3), (3, 5), (5, 7)]  # the authors' (and RepDistiller's) feature points
    if len(groups) != 7:
        raise HeadsUnavailable(f"expected 7 inverted-residual groups, found {len(groups)}")

    def fresh(b: InvertedResidual, in_ch: int | None = None, stride: int | None = None) -> nn.Module:
        c_in = b.conv[0].in_channels
        return InvertedResidual(in_ch or c_in, b.conv[6].out_channels, stride or b.conv[3].stride[0],
                                b.conv[0].out_channels // c_in)

    def stage(lo: int, hi: int) -> Modules:
        return lambda: [nn.Sequential(*(fresh(b) for b in g)) for g in groups[lo:hi]]

    def last() -> list[nn.Module]:
        c = groups[6][-1].conv[6].out_channels  # the 160-channel map the last head reads
        g5 = groups[5]
        first = nn.Sequential(fresh(g5[0], c, 1), *(fresh(b) for b in g5[1:]))
        return [first, nn.Sequential(*(fresh(b) for b in groups[6]))]

    head = model.conv2[0]
    return StagePlan(
        "mobilenetv2", lambda: [conv_bn_relu(3, model.conv1[0].out_channels, 3, model.conv1[0].stride[0])],
        [stage(lo, hi) for lo, hi in cuts], last,
        lambda: [conv_bn_relu(head.in_channels, head.out_channels, 1)], init=("kaiming", "normal_0.01"))


def _shuffle_stem(model: nn.Module) -> Modules:
    return lambda: [_stem_conv(model.conv1), nn.BatchNorm2d(model.conv1.out_channels), nn.ReLU(inplace=True)]


def _shufflenetv1_plan(model: CifarShuffleNetV1, image_shape: tuple[int, ...]) -> StagePlan:
    layers = [model.layer1, model.layer2, model.layer3]

    def unit(u: ShuffleUnit) -> nn.Module:
        return ShuffleUnit(u.conv1.in_channels, u.conv3.out_channels, u.stride, u.conv3.groups)

    def stage(layer: nn.Sequential) -> Modules:
        return lambda: [nn.Sequential(*(unit(u) for u in layer))]

    def last() -> list[nn.Module]:  # the authors' ``downsample=False``: stride 1, width kept
        c, groups = model.num_features, layers[-1][0].conv3.groups
        return [nn.Sequential(*(ShuffleUnit(c, c, 1, groups) for _ in layers[-1]))]

    return StagePlan("shufflenetv1", _shuffle_stem(model), [stage(layer) for layer in layers], last,
                     init=("kaiming", "zero_bias"))


def _shufflenetv2_plan(model: CifarShuffleNetV2, image_shape: tuple[int, ...]) -> StagePlan:
    layers = [model.layer1, model.layer2, model.layer3]

    def stage(layer: nn.Sequential, stride1: bool = False) -> Modules:
        def build() -> list[nn.Module]:
            down, units = layer[0], layer[1:]
            width = down.conv2.out_channels + down.conv5.out_channels
            first = DownUnit(width if stride1 else down.conv1.in_channels, width)
            if stride1:  # the authors' DownBlock(C, C, stride=1): both depthwise convs at stride 1
                first.conv1.stride = first.conv4.stride = (1, 1)
            return [nn.Sequential(first, *(BasicUnit(u.conv1.in_channels * 2) for u in units))]
        return build

    head = model.conv2
    return StagePlan(
        "shufflenetv2", _shuffle_stem(model), [stage(layer) for layer in layers], stage(layers[-1], True),
        lambda: [nn.Conv2d(head.in_channels, head.out_channels, 1, bias=False),
                 nn.BatchNorm2d(head.out_channels), nn.ReLU(inplace=True)],
        init=("default", "default"))  # the authors' ShuffleNetV2 heads set no init


PLANS: list[tuple[type, Callable[[nn.Module, tuple[int, ...]], StagePlan]]] = [
    (CifarResNet, _resnet_plan),
    (ImageNetResNet, _resnet_plan),
    (WideResNet, _wrn_plan),
    (CifarVGG, _vgg_plan),
    (CifarMobileNetV2, _mobilenetv2_plan),
    (CifarShuffleNetV1, _shufflenetv1_plan),
    (CifarShuffleNetV2, _shufflenetv2_plan),
]


def stage_plan(model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> StagePlan:
    """The authors' stage decomposition of a zoo ``model`` (:class:`HeadsUnavailable` otherwise)."""
    for cls, plan in PLANS:
        if isinstance(model, cls):
            try:
                return plan(model, image_shape)
            except (AttributeError, IndexError, TypeError) as err:
                raise HeadsUnavailable(f"{type(model).__name__} has not the zoo layout ({err})") from None
    raise HeadsUnavailable(
        f"{type(model).__name__} is not a ResNet, Wide ResNet, VGG, MobileNetV2 or ShuffleNet of "
        "the zoo, the families whose heads the HSAKD authors define")


# --------------------------------------------------------------------------------- the heads
def _init_authors_(head: nn.Module, init: tuple[str, str]) -> None:
    """The authors' head init: convs ``normal(0, sqrt(2 / (k*k*out)))`` (= Kaiming fan-out) and
    BN 1/0 where ``init[0] == "kaiming"``; linear layers ``"zero_bias"`` (CIFAR ResNet, WRN,
    ShuffleNetV1), ``"normal_0.01"`` (MobileNetV2: weights N(0, 0.01^2), biases 0) or PyTorch's
    default."""
    conv_init, linear_init = init
    for m in head.modules():
        if isinstance(m, nn.Conv2d) and conv_init == "kaiming":
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and conv_init == "kaiming":
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_init != "default":
            if linear_init == "normal_0.01":
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def _stage_shapes(plan: StagePlan, image_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """(C, H, W) of each stage output for one image of ``image_shape`` (fresh CPU modules)."""
    x = torch.zeros(1, *image_shape)
    shapes = []
    for part in [plan.stem] + plan.stages:
        seq = nn.Sequential(*part()).eval()
        x = seq(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes[1:]


def match_maps(expected: Sequence[tuple[int, ...]], exposed: Sequence[tuple[int, ...]]) -> list[int]:
    """Indices into ``exposed`` of the maps of shapes ``expected``, matched in order; a run of
    equal shapes resolves to its last entry (see the module docstring)."""
    out, j = [], 0
    for k, shape in enumerate(expected):
        while j < len(exposed) and tuple(exposed[j]) != tuple(shape):
            j += 1
        if j == len(exposed):
            raise HeadsUnavailable(
                f"the model exposes no map of shape {tuple(shape)} (stage {k + 1} of the authors' "
                f"{len(expected)}) after those already matched; it exposes {[tuple(s) for s in exposed]}")
        while j + 1 < len(exposed) and tuple(exposed[j + 1]) == tuple(shape):
            j += 1
        out.append(j)
        j += 1
    return out


def build_authors_heads(model: FeatureModel, image_shape: tuple[int, ...] = (3, 32, 32)) -> AuthorsHeads:
    """The HSAKD authors' heads for a zoo ``model`` (module docstring), ``4 * num_classes``
    outputs each; :class:`HeadsUnavailable` where they cannot be built."""
    from mcmi.losses.hsakd import NUM_ROTATIONS

    plan = stage_plan(model, tuple(image_shape))
    try:
        expected = _stage_shapes(plan, tuple(image_shape))
    except (AttributeError, IndexError, TypeError, RuntimeError) as err:
        raise HeadsUnavailable(f"{type(model).__name__}'s stages do not run as the zoo's ({err})") from None
    exposed = [tuple(m.shape[1:]) for m in probe_features(model, tuple(image_shape)).stages]
    indices = match_maps(expected, exposed)
    num_outputs = NUM_ROTATIONS * model.num_classes
    heads, channels = [], []
    last = len(plan.stages) - 1
    for k, shape in enumerate(expected):
        later = plan.last_stride1() if k == last else [m for b in plan.stages[k + 1:] for m in b()]
        extractor = nn.Sequential(*later, *plan.tail())
        with torch.no_grad():  # the head's width; also checks that it runs on its map
            c = int(extractor.eval()(torch.zeros(1, *shape)).shape[1])
        head = StageCopyHead(extractor.train(), c, num_outputs)
        _init_authors_(head, plan.init)
        heads.append(head)
        channels.append(c)
    return AuthorsHeads(heads, indices, {
        "family": plan.family, "in_shapes": [list(s) for s in expected],
        "out_channels": channels, "num_outputs": num_outputs})


__all__ = ["AuthorsHeads", "HSAKDHeads", "HeadsUnavailable", "StageCopyHead", "StagePlan",
           "build_authors_heads", "match_maps", "stage_plan"]
