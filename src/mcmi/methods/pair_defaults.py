"""Per teacher/student pair weights of a distiller, each with its source.

The MCMI paper (A.8.2) takes DKD's beta and ReviewKD's loss weight "consistent with the official
implementation", i.e. per pair from the methods' authors' configs. Those configs cover only some
of the paper's Table 1 pairs, so each entry of a method's table (its class attribute
``pair_defaults``, a :class:`~mcmi.methods.metadata.PairTable` of
:class:`~mcmi.methods.metadata.PairDefault`) says where its value comes from:

- ``official``: the authors give a config for this very pair (file and value in ``source``);
- ``nearest-pair``: they do not; the value is the one they give for the nearest pair
  (``source_pair``), and ``reason`` says why that pair is the nearest.

Nearest pair, in this order: the same teacher with a student of the same family; else the same
teacher; else a teacher of the same family, or of similar stage widths, in a pair of the same
kind (same family / across architectures), preferring the value most of those pairs share.

A pair without an entry gets the method's option defaults (``DKDConfig``, ``ReviewKDConfig``);
reports mark those cells too (:func:`pair_default_status`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from mcmi.methods.base import METHODS, Method
from mcmi.methods.metadata import PairDefault, PairTable

OFFICIAL, NEAREST, CLASS_DEFAULT = "official", "nearest-pair", "class-default"


@dataclass(frozen=True)
class PairDefaultStatus:
    """How a method's per-pair weights are set for one pair (see :func:`pair_default_status`)."""

    method: str
    teacher: str
    student: str
    status: str  # official | nearest-pair | class-default
    values: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    source_pair: tuple[str, str] | None = None
    reason: str = ""

    @property
    def fallback(self) -> bool:
        return self.status != OFFICIAL


def _method(method: str | type[Method]) -> type[Method] | None:
    if not isinstance(method, str):
        return method
    return METHODS.get(method) if method in METHODS else None


def pair_table(method: str | type[Method]) -> Mapping[tuple[str, str], PairDefault]:
    """The ``pair_defaults`` of ``method`` (a registered name or a method class; empty when it
    sets no weights per pair or is unknown)."""
    cls = _method(method)
    table = getattr(cls, "pair_defaults", None)
    return table if isinstance(table, Mapping) else {}


def pair_default_entry(method: str | type[Method], teacher: str, student: str) -> PairDefault | None:
    """The ``pair_defaults`` entry of ``method`` for the pair (None: none listed)."""
    entry = pair_table(method).get((teacher, student))
    return entry if isinstance(entry, PairDefault) else None


def has_pair_defaults(method: str | type[Method]) -> bool:
    """Whether ``method`` sets weights per pair (its ``pair_defaults`` lists any pair)."""
    return bool(pair_table(method))


def pair_default_status(method: str, teacher: str, student: str, explicit: Mapping[str, Any] | None = None,
                        use_table: bool = True) -> PairDefaultStatus | None:
    """How ``method``'s per-pair weights are set for ``teacher -> student``: from the table
    (official or nearest-pair) or, for a pair it does not list (or without ``use_table``), the
    option defaults. Keys in ``explicit`` (method arguments the user set) are left out; None when
    the method has no per-pair weights or the user set all of them."""
    if not has_pair_defaults(method):
        return None
    explicit = explicit or {}
    entry = pair_default_entry(method, teacher, student) if use_table else None
    if entry is not None:
        values = {k: v for k, v in entry.values.items() if k not in explicit}
        if not values:
            return None
        return PairDefaultStatus(method, teacher, student, entry.status, values, entry.source,
                                 entry.source_pair, entry.reason)
    cls, table = _method(method), pair_table(method)
    keys = tuple(getattr(table, "weight_keys", ()) or sorted({k for e in table.values() for k in e.values}))
    defaults = {f.name: f.default for f in fields(cls.options)} if getattr(cls, "options", None) else {}
    values = {k: defaults[k] for k in keys if k in defaults and k not in explicit}
    if not values:
        return None
    source = getattr(table, "class_default_source", "") or f"{cls.__name__}'s option defaults"
    return PairDefaultStatus(method, teacher, student, CLASS_DEFAULT, values, source)


__all__ = ["CLASS_DEFAULT", "NEAREST", "OFFICIAL", "PairDefault", "PairDefaultStatus", "PairTable",
           "has_pair_defaults", "pair_default_entry", "pair_default_status", "pair_table"]
