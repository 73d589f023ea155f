"""Per teacher/student pair weights of a distiller, each with its source.

The MCMI paper (A.8.2) takes DKD's beta and ReviewKD's loss weight "consistent with the official
implementation", i.e. per pair from the methods' authors' configs. Those configs cover only some
of the paper's Table 1 pairs, so each entry of a method's ``PAIR_DEFAULTS`` says where its value
comes from:

- ``official``: the authors give a config for this very pair (file and value in ``source``);
- ``nearest-pair``: they do not; the value is the one they give for the nearest pair
  (``source_pair``), and ``reason`` says why that pair is the nearest.

Nearest pair, in this order: the same teacher with a student of the same family; else the same
teacher; else a teacher of the same family, or of similar stage widths, in a pair of the same
kind (same family / across architectures), preferring the value most of those pairs share.

A pair without an entry gets the method's class defaults (``DKDConfig``, ``ReviewKDConfig``);
reports mark those cells too (:func:`pair_default_status`).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OFFICIAL, NEAREST, CLASS_DEFAULT = "official", "nearest-pair", "class-default"


@dataclass(frozen=True)
class PairDefault:
    """Weights of one (teacher, student) pair and where they come from."""

    values: Mapping[str, Any]
    official: bool
    source: str  # file and value, e.g. "mdistiller configs/cifar100/dkd/res56_res20.yaml (DKD.BETA: 2.0)"
    source_pair: tuple[str, str] | None = None  # nearest-pair entries: the authors' pair used
    reason: str = ""  # nearest-pair entries: why that pair

    def __post_init__(self) -> None:
        if not self.official and self.source_pair is None:
            raise ValueError("a nearest-pair entry must name its source pair")

    @property
    def status(self) -> str:
        return OFFICIAL if self.official else NEAREST

    def describe(self) -> str:
        """One line: the values, the flag, the source (and the source pair for a fallback)."""
        values = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.values.items())
        if self.official:
            return f"{values}: official ({self.source})"
        t, s = self.source_pair or ("?", "?")
        return (f"{values}: no official config for this pair; the value of the nearest pair {t}→{s} "
                f"({self.source}){'; ' + self.reason if self.reason else ''}")


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


def method_module(method: str):
    """The module that defines registered ``method`` (None if unknown)."""
    from mcmi.methods import METHODS

    try:
        cls = METHODS.get(method)
    except KeyError:
        return None
    return sys.modules.get(getattr(cls, "__module__", ""))


def pair_default_entry(method: str, teacher: str, student: str) -> PairDefault | None:
    """The ``PAIR_DEFAULTS`` entry of ``method``'s module for the pair (None: none listed)."""
    table = getattr(method_module(method), "PAIR_DEFAULTS", None)
    entry = table.get((teacher, student)) if isinstance(table, Mapping) else None
    return entry if isinstance(entry, PairDefault) else None


def has_pair_defaults(method: str) -> bool:
    """Whether ``method`` sets weights per pair (its module has a ``PAIR_DEFAULTS`` table)."""
    return isinstance(getattr(method_module(method), "PAIR_DEFAULTS", None), Mapping)


def pair_default_status(method: str, teacher: str, student: str, explicit: Mapping[str, Any] | None = None,
                        use_table: bool = True) -> PairDefaultStatus | None:
    """How ``method``'s per-pair weights are set for ``teacher -> student``: from the table
    (official or nearest-pair) or, for a pair it does not list (or without ``use_table``), the
    class defaults. Keys in ``explicit`` (method arguments the user set) are left out; None when
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
    module = method_module(method)
    keys = tuple(getattr(module, "PAIR_WEIGHT_KEYS", ()))
    defaults = getattr(module, "CLASS_DEFAULT_SOURCE", "the method's class defaults")
    cfg_cls = getattr(module, "PAIR_CONFIG_CLASS", None)
    values = {k: getattr(cfg_cls, k) for k in keys if cfg_cls is not None and hasattr(cfg_cls, k) and k not in explicit}
    if not values:
        return None
    return PairDefaultStatus(method, teacher, student, CLASS_DEFAULT, values, defaults)


__all__ = ["CLASS_DEFAULT", "NEAREST", "OFFICIAL", "PairDefault", "PairDefaultStatus", "has_pair_defaults",
           "method_module", "pair_default_entry", "pair_default_status"]
