"""The one batch normalizer: what a torch ``DataLoader`` yields, as the dict every method reads.

Accepted forms (every public entry point, ``evaluate``, ``Method.prepare``, ``method(batch)`` and
the ``Trainer``, goes through :func:`as_batch`):

- ``(x, y)`` / ``[x, y]``: images and labels, e.g. ``DataLoader(TensorDataset(x, y))``;
- ``(x, y, index)``: plus each sample's index in the training set (CRD's memory bank needs it),
  e.g. ``DataLoader(TensorDataset(x, y, torch.arange(len(x))))``;
- a mapping with ``image`` and any of ``label``, ``index``, ``target``, ``teacher_logits``,
  ``contrast_index`` (mcmi's own loaders): used as it is.

Tuple positions map to ``fields`` (``("image", "label", "index")`` by default; a method that reads
other fields, e.g. :class:`~mcmi.methods.kd.SoftTarget`'s per-sample ``target``, names its own).
Anything else, a 1-tuple or a bare tensor included, is a :class:`BatchError` saying which forms
are accepted. :func:`require_fields` turns a missing field into a one-line error that names it and
says how to provide it.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["DEFAULT_FIELDS", "BatchError", "as_batch", "require_fields"]

DEFAULT_FIELDS: tuple[str, ...] = ("image", "label", "index")

_FORMS = "(x, y), (x, y, index) or a dict with an 'image' entry"

#: How to provide each field a method may need, for the error of :func:`require_fields`.
_HINTS = {
    "image": "batches are (x, y) or (x, y, index) tuples, or dicts with 'image'",
    "label": "use (x, y) batches, e.g. DataLoader(TensorDataset(x, y)), or dicts with 'label'",
    "index": ("use a dataset that returns (x, y, index), e.g. "
              "DataLoader(TensorDataset(x, y, torch.arange(len(x)))), or dicts with 'index'"),
    "target": "use dicts with 'target' (one distribution per sample) or (x, target) tuples",
}


class BatchError(ValueError):
    """A batch of a form no entry point accepts, or without a field the caller needs."""


def as_batch(batch: Any, fields: tuple[str, ...] = DEFAULT_FIELDS) -> dict[str, Any]:
    """``batch`` as a dict: a dict with ``image`` is returned as it is (no copy), another
    mapping as a new dict, a 2- to ``len(fields)``-tuple or list by position (``fields``).
    Non-tensor entries of a tuple (e.g. a list of ints) become tensors."""
    if isinstance(batch, Mapping):
        if "image" not in batch:
            keys = ", ".join(repr(k) for k in batch) or "none"
            raise BatchError(f"batch dict has no 'image' entry (keys: {keys}); expected {_FORMS}")
        return batch if type(batch) is dict else dict(batch)
    if isinstance(batch, (tuple, list)):
        if not 2 <= len(batch) <= len(fields):
            raise BatchError(f"a batch must be {_FORMS}; got a {type(batch).__name__} of "
                             f"{len(batch)} item(s)")
        return {k: v if torch.is_tensor(v) else torch.as_tensor(v) for k, v in zip(fields, batch)}
    raise BatchError(f"a batch must be {_FORMS}; got {type(batch).__name__}")


def require_fields(batch: Mapping[str, Any], fields: Iterable[str], who: str) -> None:
    """Raise :class:`BatchError` naming the first of ``fields`` that ``batch`` lacks, who needs
    it and how to provide it."""
    for field in fields:
        if field not in batch or batch[field] is None:
            has = ", ".join(repr(k) for k in batch)
            hint = _HINTS.get(field, f"add {field!r} to the batches")
            raise BatchError(f"{who} needs the batch field {field!r}, which this batch lacks "
                             f"(it has {has}): {hint}")
