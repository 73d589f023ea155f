"""Load a trained model from any weight file, and convert between the formats of
:mod:`mcmi.models.formats`: mcmi checkpoints (a run's ``last.pt`` / ``best.pt``), RepDistiller /
mdistiller teacher files, torchvision-layout and plain state dicts, safetensors."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcmi.checkpoint import CheckpointError
from mcmi.models import formats
from mcmi.models.base import FeatureModel
from mcmi.models.zoo import MODELS, create_model

log = logging.getLogger(__name__)


def _close(a: Sequence[float], b: Sequence[float], tol: float = 1e-4) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.4f}" for v in values) + ")"


@dataclass
class LoadedModel:
    """A model read from a file, with what an mcmi checkpoint written from it records."""

    model: FeatureModel
    arch: str
    num_classes: int
    layout: str  # the names the file used: "mcmi", "repdistiller", "torchvision", ...
    container: str  # what held them: "mcmi checkpoint", "{'model': ...}", "state dict", ...
    meta: dict[str, Any]


def _check_normalization(path, meta: dict[str, Any], normalization) -> None:
    saved_norm = meta.get("normalization")
    if normalization is not None and saved_norm is not None:
        mean, std = ([float(v) for v in x] for x in normalization)
        if not (_close(mean, saved_norm["mean"]) and _close(std, saved_norm["std"])):
            log.warning("%s was trained on %r with inputs normalized by mean %s, std %s; this run normalizes by "
                        "mean %s, std %s: the model sees inputs unlike those it learned on", path, meta.get("data"),
                        _fmt(saved_norm["mean"]), _fmt(saved_norm["std"]), _fmt(mean), _fmt(std))


def load_weights(path: str | Path, arch: str | None = None, num_classes: int | None = None,
                 normalization: tuple[Sequence[float], Sequence[float]] | None = None,
                 arch_args: dict[str, Any] | None = None) -> LoadedModel:
    """The model of weight file ``path`` in eval mode, and how the file held it.

    An mcmi checkpoint (or a safetensors file written by mcmi) records its architecture and class
    count: ``arch`` / ``num_classes``, when given, must match them. Any other file needs ``arch``
    (a registered name, e.g. ``resnet56``); ``num_classes`` is read from the classifier weight and,
    when given, must match it. ``arch_args`` (foreign files only) go to :func:`create_model`.
    Keys are mapped from the layout they are in and must then be exactly the model's, with its
    shapes: anything else is a :class:`~mcmi.models.formats.ConversionError` listing the keys.

    ``normalization``: the ``(mean, std)`` the caller will feed the model with; when the file
    records other statistics (it was trained on other data, e.g. a Tiny-ImageNet teacher on
    CIFAR-100, both 100 classes) a warning names the file and both.
    """
    wf = formats.read_weights(path)
    if wf.is_mcmi:
        meta = dict(wf.meta)
        saved_arch, saved_classes = meta.get("arch"), meta.get("num_classes")
        if saved_classes is None:
            raise CheckpointError(path, "has no 'num_classes' metadata: not a model checkpoint of mcmi train runs")
        if arch is not None and arch != saved_arch:
            raise CheckpointError(path, f"holds a {saved_arch!r} model, expected {arch!r}")
        if num_classes is not None and num_classes != saved_classes:
            raise CheckpointError(path, f"model has {saved_classes} classes, the data set has {num_classes}")
        _check_normalization(path, meta, normalization)
        model = create_model(saved_arch, num_classes=int(saved_classes), **meta.get("arch_args", {}))
        formats.load_state_dict_strict(model, wf.state_dict, path, repr(saved_arch))
        return LoadedModel(model.eval(), saved_arch, int(saved_classes), "mcmi", wf.container, meta)
    if wf.container == "mcmi checkpoint":
        raise CheckpointError(path, "has no 'arch'/'num_classes' metadata: not a model checkpoint of mcmi train runs")
    sd = wf.state_dict
    if arch is None:
        fits = formats.fitting_archs(sd)
        hint = f"; its keys and shapes fit {', '.join(fits)}" if fits else ""
        raise formats.ConversionError(path, f"holds a {wf.container} without its architecture: give it "
                                            f"(arch=..., --arch NAME){hint}")
    if arch not in MODELS:
        raise formats.ConversionError(path, f"unknown architecture {arch!r}; known: {', '.join(MODELS.names())}")
    found = formats.infer_num_classes(sd, arch)
    if num_classes is None:
        if found is None:
            raise formats.ConversionError(path, f"no classifier weight to read the class count from: give "
                                                f"num_classes (--num-classes N); keys {formats.short_keys(sd)}")
        num_classes = found[0]
    elif found is not None and found[0] != num_classes:
        n, key = found
        raise formats.ConversionError(path, f"expected {num_classes} classes, found {n} (its classifier "
                                            f"{key} has shape {tuple(sd[key].shape)})")
    model = create_model(arch, num_classes=num_classes, **(arch_args or {}))
    mapped = formats.to_mcmi(sd, arch, model.state_dict())
    layout = mapped.layout
    try:
        formats.load_state_dict_strict(model, mapped, path, f"{arch!r} (read in the {layout} layout)")
    except formats.ConversionError as e:
        fits = [f for f in formats.fitting_archs(sd) if not f.startswith(f"{arch} ")]
        if not fits:
            raise
        raise formats.ConversionError(path, f"{e.reason}; the file fits {', '.join(fits)}") from e
    meta = {"method": "converted", "model": type(model).__name__, "num_classes": num_classes, "arch": arch,
            "arch_args": dict(arch_args or {}), "source": str(path), "source_layout": layout}
    return LoadedModel(model.eval(), arch, num_classes, layout, wf.container, meta)


def load_model(path: str | Path, arch: str | None = None, num_classes: int | None = None,
               normalization: tuple[Sequence[float], Sequence[float]] | None = None,
               arch_args: dict[str, Any] | None = None) -> FeatureModel:
    """The model saved in ``path``, in eval mode: any file :func:`load_weights` reads.

    ``load_model("runs/t/last.pt")``; ``load_model("ckpt_epoch_240.pth", arch="resnet56")`` for a
    RepDistiller/mdistiller teacher; ``load_model("resnet18.pth", arch="imagenet_resnet18")`` for a
    torchvision state dict.
    """
    return load_weights(path, arch, num_classes, normalization, arch_args).model


def convert(src: str | Path, dst: str | Path, arch: str | None = None, num_classes: int | None = None,
            to: str | None = None) -> LoadedModel:
    """Read ``src`` (any file :func:`load_weights` reads) and write it to ``dst`` as ``to``.

    ``to``: ``mcmi`` (a checkpoint for ``model.weights=``/``teacher.weights=``; the default, or
    ``safetensors`` when ``dst`` ends in ``.safetensors``), ``repdistiller``, ``torchvision``,
    ``state_dict`` or ``safetensors`` (see :func:`mcmi.models.formats.write_weights`).
    """
    to = to or ("safetensors" if str(dst).endswith(".safetensors") else "mcmi")
    if to not in formats.OUTPUT_FORMATS:
        raise formats.ConversionError(dst, f"unknown output format {to!r}; known: {', '.join(formats.OUTPUT_FORMATS)}")
    loaded = load_weights(src, arch, num_classes)
    try:
        formats.write_weights(dst, loaded.model, loaded.arch, to, loaded.meta)
    except ValueError as e:
        raise formats.ConversionError(src, str(e)) from e
    return loaded
