"""RepDistiller's CIFAR architectures as tables (github.com/HobbitLong/RepDistiller, ``models/``,
commit b84f547), shared by :mod:`reference_layouts` (state dicts) and :mod:`reference_forwards`
(feature lists). Written from reading their model files; nothing here imports mcmi.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- architectures
# resnet.py: ResNet(depth, num_filters, 'basicblock')
CIFAR_RESNETS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    **{f"resnet{d}": (d, (16, 16, 32, 64)) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}
# wrn.py: WideResNet(depth, widen_factor)
WRNS: dict[str, tuple[int, int]] = {
    "wrn_16_1": (16, 1),
    "wrn_16_2": (16, 2),
    "wrn_40_1": (40, 1),
    "wrn_40_2": (40, 2),
}
# vgg.py: cfg 'S', 'A', 'B', 'D', 'E' with batch_norm=True (model_dict's vgg8..vgg19 are *_bn)
VGGS: dict[str, list[list[int]]] = {
    "vgg8": [[64], [128], [256], [512], [512]],
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}
# mobilenetv2.py: mobilenetv2_T_w(T=6, W); mobile_half is W = 0.5
MOBILENETS: dict[str, float] = {"mobilenetv2": 0.5, "mobilenetv2_x0_1": 0.1}
MOBILENET_SETTING = [  # t (1 = keep; else T), c, n, s
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
MOBILENET_FEATURE_GROUPS = (1, 2, 4, 6)  # f1..f4 are taken after blocks[1], [2], [4], [6]
# ShuffleNetv1.py: ShuffleV1 = cfg out_planes (240, 480, 960), num_blocks (4, 8, 4), groups 3
SHUFFLE_V1 = {"out_planes": (240, 480, 960), "num_blocks": (4, 8, 4), "groups": 3}
# ShuffleNetv2.py: ShuffleV2 = net_size 1
SHUFFLE_V2 = {"out_channels": (116, 232, 464, 1024), "num_blocks": (3, 7, 3)}
# resnetv2.py: ResNet18 (BasicBlock, [2, 2, 2, 2]), ResNet50 (Bottleneck, [3, 4, 6, 3])
RESNETV2S: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

ALIASES = {
    "MobileNetV2": "mobilenetv2",
    "mobile_half": "mobilenetv2",
    "ShuffleV1": "shufflenetv1",
    "ShuffleV2": "shufflenetv2",
    "ResNet18": "resnet18",
    "ResNet50": "resnet50",
    **{f"vgg{d}_bn": f"vgg{d}" for d in (8, 11, 13, 16, 19)},
}

REFERENCE_ARCHS: tuple[str, ...] = (
    *CIFAR_RESNETS,
    *WRNS,
    *VGGS,
    *MOBILENETS,
    "shufflenetv1",
    "shufflenetv2",
    *RESNETV2S,
)


def canonical(arch: str) -> str:
    name = ALIASES.get(arch, arch)
    if name not in REFERENCE_ARCHS:
        raise KeyError(f"no RepDistiller layout for {arch!r}; known: {', '.join(REFERENCE_ARCHS)}")
    return name


def family(arch: str) -> str:
    name = canonical(arch)
    if name in CIFAR_RESNETS:
        return "resnet"
    if name in WRNS:
        return "wrn"
    if name in VGGS:
        return "vgg"
    if name in MOBILENETS:
        return "mobilenetv2"
    if name in RESNETV2S:
        return "resnetv2"
    return name  # shufflenetv1, shufflenetv2


def mobilenet_blocks(width: float) -> list[tuple[int, int, int, int, int, int]]:
    """(group, index, in, out, stride, expand) per InvertedResidual, as MobileNetV2.__init__."""
    blocks = []
    cin = int(32 * width)
    for g, (t, c, n, s) in enumerate(MOBILENET_SETTING):
        t = 6 if t != 1 else 1
        cout = int(c * width)
        for j in range(n):
            blocks.append((g, j, cin, cout, s if j == 0 else 1, t))
            cin = cout
    return blocks


#: ``stage_channels`` of each architecture as RepDistiller's ``feats[:-1]`` (stem first), and the
#: pooled width (``feats[-1]``), read from the model files named in each family's comment above.
def reference_channels(arch: str) -> tuple[list[int], int]:
    name = canonical(arch)
    fam = family(name)
    if fam == "resnet":
        return list(CIFAR_RESNETS[name][1]), CIFAR_RESNETS[name][1][3]
    if fam == "wrn":
        k = WRNS[name][1]
        return [16, 16 * k, 32 * k, 64 * k], 64 * k
    if fam == "vgg":
        return [w[-1] for w in VGGS[name]], 512
    if fam == "mobilenetv2":
        w = MOBILENETS[name]
        return [int(32 * w)] + [int(MOBILENET_SETTING[g][1] * w) for g in MOBILENET_FEATURE_GROUPS], 1280
    if fam == "shufflenetv1":
        return [24, *SHUFFLE_V1["out_planes"]], SHUFFLE_V1["out_planes"][2]
    if fam == "shufflenetv2":
        return [24, *SHUFFLE_V2["out_channels"][:3]], SHUFFLE_V2["out_channels"][3]
    kind, _ = RESNETV2S[name]
    e = 4 if kind == "bottleneck" else 1
    return [64, 64 * e, 128 * e, 256 * e, 512 * e], 512 * e
