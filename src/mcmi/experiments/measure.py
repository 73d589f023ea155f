"""Measure CMI, LL and accuracy of saved outputs: a file with ``probs`` or ``logits`` and ``labels``.

The input is checked before anything is computed: a missing or unreadable file, missing keys,
shapes that do not fit ((N, C) outputs, (N,) integer labels in ``[0, C)``), and non-finite
values (a NaN or inf in the logits or probabilities) are :class:`~mcmi.data.DataError` s naming
the file and what is wrong. The output is standard JSON (no ``NaN`` tokens: an undefined
per-class value is ``null``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from mcmi.data import DataError
from mcmi.metrics.cmi import CMIState


def _load(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k]) for k in z.files}
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any reader failure is the file's
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {first})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: must hold a mapping with 'probs' or 'logits' and 'labels', got {type(obj).__name__}")
    return obj


def _tensor(d: dict, key: str, path: Path) -> torch.Tensor:
    try:
        return torch.as_tensor(d[key])
    except (TypeError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: {key!r} is not an array ({type(e).__name__}: {e})") from None


def read_outputs(path: str | Path) -> tuple[str, torch.Tensor, torch.Tensor]:
    """``(kind, outputs, labels)`` of a file for :func:`measure_file`, checked (module notes);
    ``kind`` is ``"logits"`` or ``"probs"``, outputs float64 (N, C), labels int64 (N,)."""
    path = Path(path)
    d = _load(path)
    if "labels" not in d or not ({"probs", "logits"} & set(d)):
        raise DataError(f"{path}: needs keys 'labels' and 'probs' or 'logits'; found {sorted(map(str, d))}")
    kind = "logits" if "logits" in d else "probs"
    out, labels = _tensor(d, kind, path), _tensor(d, "labels", path)
    if out.dim() != 2 or out.shape[0] == 0 or out.shape[1] < 2:
        raise DataError(f"{path}: {kind!r} must be (N, C) with N >= 1 samples and C >= 2 classes, "
                        f"got shape {tuple(out.shape)}")
    if not (out.dtype.is_floating_point or out.dtype in (torch.int32, torch.int64)):
        raise DataError(f"{path}: {kind!r} must be numbers, got dtype {out.dtype}")
    if labels.dim() != 1 or labels.shape[0] != out.shape[0]:
        raise DataError(f"{path}: 'labels' must be ({out.shape[0]},) to match {kind!r} {tuple(out.shape)}, "
                        f"got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.is_complex():
        raise DataError(f"{path}: 'labels' must be integer class indices, got dtype {labels.dtype}")
    out = out.double()
    bad = ~torch.isfinite(out)
    if bad.any():
        rows = bad.any(1).nonzero().reshape(-1)
        raise DataError(f"{path}: {kind!r} hold {int(bad.sum())} NaN or infinite values (in {len(rows)} rows, "
                        f"the first is row {int(rows[0])}): measure needs finite outputs")
    c = out.shape[1]
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= c:
        raise DataError(f"{path}: labels out of range: found values in [{lo}, {hi}], expected [0, {c - 1}] "
                        f"for {c} classes")
    return kind, out, labels.long()


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def measure_file(path: str | Path, temperature: float = 1.0, per_class: bool = False) -> str:
    """JSON of ``n``, ``accuracy``, ``log_likelihood`` (eq. 5), ``cmi`` (eq. 12) and, with
    ``per_class``, the per-class CMI of the outputs saved in ``path``."""
    path = Path(path)
    if not (math.isfinite(temperature) and temperature > 0):
        raise DataError(f"--temperature must be a positive number, got {temperature}")
    kind, outputs, labels = read_outputs(path)
    state = CMIState.empty(outputs.shape[1])
    try:
        if kind == "logits":
            state.update_logits(outputs, labels, temperature)
        else:
            state.update_probs(outputs, labels)
    except ValueError as e:  # probabilities that are not (rows off 1, negative values)
        raise DataError(f"{path}: {e}") from None
    out = {"n": state.n, "accuracy": state.accuracy(), "log_likelihood": state.log_likelihood(), "cmi": state.cmi()}
    out = {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in out.items()}
    if per_class:
        out["per_class_cmi"] = [_finite_or_none(v) for v in state.per_class_cmi().tolist()]
    return json.dumps(out, indent=2, allow_nan=False)
