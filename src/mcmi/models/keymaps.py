"""State-dict key names of other toolkits for every model of the zoo, one explicit table per family.

The zoo's CIFAR models keep the module names of RepDistiller/CRD (Tian et al., ICLR 2020; its
``models/*.py``), whose files mdistiller (``mdistiller/models/cifar/*.py``) shares name for name;
the ImageNet models keep torchvision's (``torchvision/models/resnet.py``, ``mobilenetv2.py``).
What differs is listed here as renames of module paths, read from those files:

- CIFAR ResNets (``resnet8`` ... ``resnet32x4``, ``resnet.py``): ``fc`` -> ``classifier``
- Wide ResNets (``wrn_*``, ``wrn.py``): ``fc`` -> ``classifier``
- VGG-BN (``vgg*``, ``vgg.py``'s ``*_bn``): identical names
- MobileNetV2 (``mobile_half``, ``mobilenetv2.py``): ``classifier.0`` (a Sequential) -> ``classifier``
- ShuffleV1, ShuffleV2 (``ShuffleNetv1.py``, ``ShuffleNetv2.py``): ``linear`` -> ``classifier``
- ResNet18/50 (``resnetv2.py``): ``linear`` -> ``classifier``, ``<layer>.<block>.shortcut`` ->
  ``<layer>.<block>.downsample``
- torchvision ResNet-18/34/50: ``fc`` -> ``classifier``
- torchvision MobileNetV2: ``classifier.1`` (after the Dropout) -> ``classifier``

A rename is a pair of dot paths matched against a key's leading components, ``*`` standing for any
one component (copied across), so each rule reads the same both ways. Renaming alone proves
nothing: :func:`mcmi.models.formats.load_state_dict_strict` then requires the renamed keys to be
exactly the model's keys with the model's shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

Rename = tuple[str, str]  # (foreign path, mcmi path)

_FC: tuple[Rename, ...] = (("fc", "classifier"),)
_LINEAR: tuple[Rename, ...] = (("linear", "classifier"),)


@dataclass(frozen=True)
class Layout:
    """How one toolkit names the parameters of one of the zoo's architectures."""

    toolkit: str  # "repdistiller" (also mdistiller's) or "torchvision"
    reference: str  # the toolkit's name of the model
    renames: tuple[Rename, ...]


def _repdistiller(reference: str, renames: tuple[Rename, ...] = ()) -> Layout:
    return Layout("repdistiller", reference, renames)


#: arch -> its layout in the toolkit it comes from. RepDistiller's ``model_dict`` names in
#: ``reference`` (mdistiller's ``cifar_model_dict`` uses the same names and modules).
LAYOUTS: dict[str, Layout] = {
    **{a: _repdistiller(a, _FC) for a in ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44",
                                          "resnet56", "resnet110", "resnet8x4", "resnet32x4")},
    **{a: _repdistiller(a, _FC) for a in ("wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2")},
    **{a: _repdistiller(a) for a in ("vgg8", "vgg11", "vgg13", "vgg16", "vgg19")},
    "mobilenetv2": _repdistiller("MobileNetV2", (("classifier.0", "classifier"),)),
    "mobilenetv2_x0_1": _repdistiller("mobilenetv2_T_w(6, 0.1)", (("classifier.0", "classifier"),)),
    "shufflenetv1": _repdistiller("ShuffleV1", _LINEAR),
    "shufflenetv2": _repdistiller("ShuffleV2", _LINEAR),
    "resnet18": _repdistiller("ResNet18", (*_LINEAR, ("*.*.shortcut", "*.*.downsample"))),
    "resnet50": _repdistiller("ResNet50", (*_LINEAR, ("*.*.shortcut", "*.*.downsample"))),
    **{f"imagenet_{a}": Layout("torchvision", a, _FC) for a in ("resnet18", "resnet34", "resnet50")},
    "imagenet_mobilenetv2": Layout("torchvision", "mobilenet_v2", (("classifier.1", "classifier"),)),
}

TOOLKITS = ("repdistiller", "torchvision")


def _rename(key: str, src: str, dst: str) -> str | None:
    """``key`` with its leading components matching ``src`` replaced by ``dst``; None if no match."""
    parts, pat, out = key.split("."), src.split("."), dst.split(".")
    if len(parts) <= len(pat):  # a rule renames modules: the parameter name stays
        return None
    stars = []
    for p, q in zip(parts, pat):
        if q == "*":
            stars.append(p)
        elif p != q:
            return None
    filled = iter(stars)
    head = [next(filled) if q == "*" else q for q in out]
    return ".".join(head + parts[len(pat):])


def rename_key(key: str, layout: Layout, to_mcmi: bool) -> str:
    """One key renamed from ``layout``'s names to mcmi's (or back); the first matching rule wins."""
    for foreign, mine in layout.renames:
        src, dst = (foreign, mine) if to_mcmi else (mine, foreign)
        new = _rename(key, src, dst)
        if new is not None:
            return new
    return key


def rename_keys(keys, layout: Layout, to_mcmi: bool) -> dict[str, str]:
    """``{old key: new key}``; two keys landing on one name is an error naming both."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for k in keys:
        new = rename_key(k, layout, to_mcmi)
        if new in seen:
            raise ValueError(f"keys {seen[new]!r} and {k!r} both map to {new!r} in the {layout.toolkit} layout")
        seen[new] = k
        out[k] = new
    return out
