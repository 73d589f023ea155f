"""Measure CMI, LL and accuracy of saved outputs: a file with ``probs`` or ``logits`` and ``labels``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from mcmi.metrics.cmi import CMIState


def _load(path: Path) -> dict:
    if not path.exists():
        raise SystemExit(f"mcmi measure: {path} does not exist")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                return {k: torch.from_numpy(z[k]) for k in z.files}
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise SystemExit(f"mcmi measure: cannot read {path}: {e}")
    if not isinstance(obj, dict):
        raise SystemExit(f"mcmi measure: {path} must hold a mapping with 'probs' or 'logits' and 'labels'")
    return obj


def measure_file(path: str | Path, temperature: float = 1.0, per_class: bool = False) -> str:
    path = Path(path)
    d = _load(path)
    if "labels" not in d or not ({"probs", "logits"} & set(d)):
        raise SystemExit(f"mcmi measure: {path} needs keys 'labels' and 'probs' or 'logits'; found {sorted(d)}")
    labels = torch.as_tensor(d["labels"]).long()
    try:
        if "logits" in d:
            logits = torch.as_tensor(d["logits"]).double()
            state = CMIState.empty(logits.shape[1])
            state.update_logits(logits, labels, temperature)
        else:
            probs = torch.as_tensor(d["probs"]).double()
            state = CMIState.empty(probs.shape[1])
            state.update_probs(probs, labels)
        out = {"n": state.n, "accuracy": state.accuracy(), "log_likelihood": state.log_likelihood(), "cmi": state.cmi()}
        if per_class:
            out["per_class_cmi"] = [None if v != v else v for v in state.per_class_cmi().tolist()]
    except ValueError as e:
        raise SystemExit(f"mcmi measure: {path}: {e}")
    return json.dumps(out, indent=2)
