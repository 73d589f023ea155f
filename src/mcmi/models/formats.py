"""Weight files of mcmi and of other toolkits: read any, tell its layout from its keys, write any.

Read (:func:`read_weights`): an mcmi checkpoint (a run's ``last.pt``/``best.pt``); a torch file
holding a state dict bare or under ``'model'`` (RepDistiller's ``train_teacher.py`` and
mdistiller's trainer: ``{'model': state_dict, 'epoch': ..., ...}``), ``'state_dict'``, ``'net'``
or ``'model_state_dict'``, with or without DataParallel's ``module.`` prefix; a ``.safetensors``
file. The layout (mcmi's own names, or the toolkit's of :mod:`mcmi.models.keymaps`) is the one
under which the keys are exactly the model's (:func:`to_mcmi`); loading is strict
(:func:`load_state_dict_strict`): a key left over on either side or a shape that differs is an
error listing them, never a partial load.

Write (:func:`write_weights`): ``mcmi`` (a checkpoint that ``model.weights=``/``teacher.weights=``
read), ``repdistiller`` (``{'model': state_dict}`` in RepDistiller's names), ``torchvision`` (a
bare state dict in torchvision's names), ``state_dict`` (bare, mcmi's names) and ``safetensors``
(mcmi's names, the architecture in the header's metadata).
"""
from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mcmi.checkpoint import (
    CheckpointError,
    check_checkpoint,
    is_mcmi_checkpoint,
    model_state_from_checkpoint,
    read_torch_file,
    save_checkpoint,
)
from mcmi.io import atomic_write, torch_save
from mcmi.models.keymaps import LAYOUTS, TOOLKITS, Layout, rename_keys
from mcmi.models.zoo import create_model, list_models

#: Where other toolkits' training scripts put the state dict inside the saved dict.
WRAPPER_KEYS = ("model", "state_dict", "net", "model_state_dict")
#: ``--to`` choices of ``mcmi convert``.
OUTPUT_FORMATS = ("mcmi", "repdistiller", "torchvision", "state_dict", "safetensors")
#: Objects besides tensors and containers that other toolkits save beside the weights (RepDistiller's
#: ``{'opt': argparse.Namespace, ...}`` in ``<model>_last.pth``); weights_only loading may rebuild them.
SAFE_GLOBALS = (argparse.Namespace,)
_SAFETENSORS_FORMAT = "mcmi-state-dict"
_BN_COUNTER = "num_batches_tracked"


class ConversionError(CheckpointError):
    """A weight file that cannot become (or be written from) the requested model."""


@dataclass
class WeightsFile:
    """A weight file as read: its state dict (wrappers and ``module.`` removed) and what held it."""

    path: Path
    state_dict: dict[str, Tensor]
    container: str  # "mcmi checkpoint", "{'model': ...}", "state dict", "safetensors", ...
    meta: dict[str, Any] = field(default_factory=dict)  # mcmi's arch/num_classes/... where recorded

    @property
    def is_mcmi(self) -> bool:
        """Whether the file records its architecture (an mcmi checkpoint or safetensors file)."""
        return "arch" in self.meta


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _strip_module(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove DataParallel/DistributedDataParallel's ``module.`` prefix (when every key has it)."""
    while sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and head[:2] != b"PK"


def _read_safetensors(path: Path) -> WeightsFile:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        sd = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ConversionError(path, f"unreadable safetensors file ({type(e).__name__}: {e})") from e
    meta: dict[str, Any] = {}
    if header.get("format") == _SAFETENSORS_FORMAT:
        meta = {"arch": header["arch"], "num_classes": int(header["num_classes"]),
                "arch_args": json.loads(header.get("arch_args", "{}"))}
        if "normalization" in header:
            meta["normalization"] = json.loads(header["normalization"])
    return WeightsFile(path, _strip_module(dict(sd)), "safetensors", meta)


def read_weights(path: str | Path) -> WeightsFile:
    """Read any supported weight file (see the module docstring); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    if path.stat().st_size and _is_safetensors(path):
        return _read_safetensors(path)
    obj = read_torch_file(path, safe_globals=SAFE_GLOBALS)
    if is_mcmi_checkpoint(obj):
        state = check_checkpoint(path, obj)
        if "method" not in state:
            raise CheckpointError(path, "an mcmi checkpoint without model weights (no 'method' state)")
        return WeightsFile(path, model_state_from_checkpoint(state), "mcmi checkpoint", dict(state.get("meta", {})))
    if _is_state_dict(obj):
        return WeightsFile(path, _strip_module(dict(obj)), "state dict")
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if _is_state_dict(obj.get(key)):
                return WeightsFile(path, _strip_module(dict(obj[key])), f"{{{key!r}: ...}}")
    found = f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
    raise ConversionError(path, f"not an mcmi checkpoint and holds no state dict (bare or under "
                                f"{', '.join(map(repr, WRAPPER_KEYS))}; found {found})")


def short_keys(keys, n: int = 6) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return "[" + ", ".join(keys[:n]) + "]" + more


def key_mismatch(sd: Mapping[str, Tensor], expected: Mapping[str, Tensor],
                 display: Callable[[str], str] = str) -> str:
    """What keeps ``sd`` from loading strictly into a model whose state dict is ``expected``
    (``""`` when nothing): keys missing, keys left over, shapes that differ, each key shown as
    ``display(key)`` (the file's own names). A missing BatchNorm ``num_batches_tracked`` counter
    is not counted (files of PyTorch < 0.4.1 have none; it does not enter the forward pass)."""
    missing = [display(k) for k in expected if k not in sd and not k.endswith(_BN_COUNTER)]
    unexpected = [display(k) for k in sd if k not in expected]
    shapes = [f"{display(k)} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
              for k in sd if k in expected and sd[k].shape != expected[k].shape]
    parts = []
    if missing:
        parts.append(f"missing {short_keys(missing)}")
    if unexpected:
        parts.append(f"unexpected {short_keys(unexpected)}")
    if shapes:
        parts.append(f"shape (file vs model) {short_keys(shapes)}")
    return "; ".join(parts)


@dataclass
class Mapped:
    """A state dict renamed into mcmi's names from the layout it was read in."""

    layout: str  # "mcmi", a toolkit of keymaps.TOOLKITS, or "mcmi (= repdistiller)" where names agree
    state_dict: dict[str, Tensor]
    renames: Layout | None = None  # the rules applied (None: the names were mcmi's)

    def file_key(self, key: str) -> str:
        """The file's name of the mcmi key ``key``."""
        return key if self.renames is None else rename_keys([key], self.renames, to_mcmi=False)[key]


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, Tensor] | Mapped, path: str | Path, what: str) -> None:
    """``model.load_state_dict(sd, strict=True)`` after checking keys and shapes; an error listing
    every difference otherwise, in the file's key names (``what`` names the model in the message)."""
    mapped = sd if isinstance(sd, Mapped) else Mapped("mcmi", dict(sd))
    expected = model.state_dict()
    problem = key_mismatch(mapped.state_dict, expected, mapped.file_key)
    if problem:
        raise ConversionError(path, f"weights do not fit {what}: {problem}")
    full = dict(mapped.state_dict)
    for k in expected:
        if k not in full:  # only BatchNorm counters (key_mismatch allowed nothing else)
            full[k] = torch.zeros_like(expected[k])
    model.load_state_dict(full, strict=True)


def _candidates(sd: Mapping[str, Tensor], arch: str) -> list[Mapped]:
    """The state dict under each layout it might be in: mcmi's names, then the arch's toolkit's."""
    layout = LAYOUTS.get(arch)
    if layout is not None and not layout.renames:  # the same names in both (VGG)
        return [Mapped(f"mcmi (= {layout.toolkit})", dict(sd))]
    out = [Mapped("mcmi", dict(sd))]
    if layout is not None:
        try:
            names = rename_keys(sd, layout, to_mcmi=True)
        except ValueError:  # two keys on one name: not this layout
            return out
        out.append(Mapped(layout.toolkit, {names[k]: v for k, v in sd.items()}, layout))
    return out


def to_mcmi(sd: Mapping[str, Tensor], arch: str, model_keys: Mapping[str, Tensor]) -> Mapped:
    """``sd`` in mcmi's names, read in the layout whose names are exactly the model's keys.

    When none is, the nearest one (most keys in common) is returned, for the strict load to report
    what differs.
    """
    cands = _candidates(sd, arch)
    for cand in cands:
        missing = set(model_keys) - set(cand.state_dict)
        if set(cand.state_dict) <= set(model_keys) and all(k.endswith(_BN_COUNTER) for k in missing):
            return cand
    return max(cands, key=lambda c: len(set(c.state_dict) & set(model_keys)))


def infer_num_classes(sd: Mapping[str, Tensor], arch: str) -> tuple[int, str] | None:
    """``(rows of the classifier weight, the file's name of it)`` under whichever layout names it."""
    for cand in _candidates(sd, arch):
        w = cand.state_dict.get("classifier.weight")
        if w is not None and w.dim() == 2:
            return int(w.shape[0]), cand.file_key("classifier.weight")
    return None


@functools.cache
def _meta_state_dict(arch: str) -> dict[str, Tensor] | None:
    """``arch``'s state dict on the meta device (shapes only; 2 classes), or None for a model that
    needs arguments beyond ``num_classes``. Cached: a process builds each architecture once."""
    try:
        with torch.device("meta"):
            return create_model(arch, num_classes=2).state_dict()
    except (TypeError, ValueError):
        return None


def _shapes_for(arch: str, num_classes: int) -> dict[str, Tensor] | None:
    """:func:`_meta_state_dict` with the classifier resized to ``num_classes`` rows."""
    keys = _meta_state_dict(arch)
    if keys is None or "classifier.weight" not in keys:
        return keys
    w, out = keys["classifier.weight"], dict(keys)
    out["classifier.weight"] = torch.empty(num_classes, *w.shape[1:], device="meta")
    if "classifier.bias" in keys:
        out["classifier.bias"] = torch.empty(num_classes, device="meta")
    return out


def fitting_archs(sd: Mapping[str, Tensor]) -> list[str]:
    """Registered architectures (with the layout) into which ``sd`` loads strictly, for hints.

    Only architectures whose layout names the file's classifier are built (on the meta device)."""
    out = []
    for arch in list_models():
        found = infer_num_classes(sd, arch)
        keys = _shapes_for(arch, found[0]) if found else None
        if keys is None:
            continue
        mapped = to_mcmi(sd, arch, keys)
        if not key_mismatch(mapped.state_dict, keys):
            out.append(f"{arch} ({mapped.layout})")
    return out


def export_state_dict(model: nn.Module, arch: str, to: str) -> dict[str, Tensor]:
    """The model's state dict in the names of ``to`` (a toolkit, or mcmi's own for the others)."""
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if to not in TOOLKITS:
        return sd
    layout: Layout | None = LAYOUTS.get(arch)
    if layout is None or layout.toolkit != to:
        where = f"it is a {layout.toolkit} model: use --to {layout.toolkit}" if layout else "it exists only in mcmi"
        raise ValueError(f"{arch!r} has no {to} layout ({where})")
    names = rename_keys(sd, layout, to_mcmi=False)
    return {names[k]: v for k, v in sd.items()}


def write_weights(path: str | Path, model: nn.Module, arch: str, to: str, meta: Mapping[str, Any]) -> Path:
    """Write ``model`` as ``to`` (one of :data:`OUTPUT_FORMATS`); ``meta``: arch, num_classes,
    arch_args and what else an mcmi checkpoint should record."""
    if to not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {to!r}; known: {', '.join(OUTPUT_FORMATS)}")
    sd = export_state_dict(model, arch, to)
    path = Path(path)
    if to == "mcmi":
        return save_checkpoint(path, {"kind": "model", "meta": dict(meta),
                                      "method": {f"model.{k}": v for k, v in sd.items()}}, keep_previous=False)
    if to == "repdistiller":
        return torch_save(path, {"model": sd})  # RepDistiller/mdistiller read torch.load(f)['model']
    if to == "safetensors":
        from safetensors.torch import save

        header = {"format": _SAFETENSORS_FORMAT, "arch": arch, "num_classes": str(meta["num_classes"]),
                  "arch_args": json.dumps(meta.get("arch_args") or {})}
        if meta.get("normalization"):
            header["normalization"] = json.dumps(meta["normalization"])
        data = save({k: v.clone() for k, v in sd.items()}, metadata=header)  # no shared storage
        return atomic_write(path, lambda f: f.write(data))
    return torch_save(path, sd)  # torchvision, state_dict: the bare dict
