"""What a method says about itself besides its loss: per-pair weights, a teacher preparation run
and the options of a fast test instance. Plain data, imported by :mod:`mcmi.methods.base`
(which declares these as class attributes of every method) and nothing else of mcmi.

- :class:`PairDefault` / :class:`PairTable`: a method's weights per (teacher, student) pair, each
  with its source (the MCMI paper's A.8.2 takes DKD's beta and ReviewKD's weight per pair "consistent
  with the official implementation"; see :mod:`mcmi.methods.pair_defaults`).
- :class:`TeacherPrep`: a run a distiller needs on each teacher first (HSAKD's auxiliary heads).
- :class:`FromModels`: a test option computed from the models (HSAKD's ``teacher_heads``).
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Pair = tuple[str, str]


@dataclass(frozen=True)
class PairDefault:
    """Weights of one (teacher, student) pair and where they come from.

    ``official``: the authors give a config for this very pair (file and value in ``source``);
    otherwise the value is the one they give for the nearest pair ``source_pair``, and ``reason``
    says why that pair is the nearest."""

    values: Mapping[str, Any]
    official: bool
    source: str  # file and value, e.g. "mdistiller configs/cifar100/dkd/res56_res20.yaml (DKD.BETA: 2.0)"
    source_pair: Pair | None = None  # nearest-pair entries: the authors' pair used
    reason: str = ""  # nearest-pair entries: why that pair

    def __post_init__(self) -> None:
        if not self.official and self.source_pair is None:
            raise ValueError("a nearest-pair entry must name its source pair")

    @property
    def status(self) -> str:
        return "official" if self.official else "nearest-pair"

    def describe(self) -> str:
        """One line: the values, the flag, the source (and the source pair for a fallback)."""
        values = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.values.items())
        if self.official:
            return f"{values}: official ({self.source})"
        t, s = self.source_pair or ("?", "?")
        return (f"{values}: no official config for this pair; the value of the nearest pair {t}→{s} "
                f"({self.source}){'; ' + self.reason if self.reason else ''}")


class PairTable(Mapping[Pair, PairDefault]):
    """A method's :class:`PairDefault` per (teacher, student) pair of zoo names, read-only.

    ``weight_keys``: the options the table is about (DKD: ``beta``); a pair it does not list keeps
    the method's option defaults for them, which reports mark (default: every key of the entries).
    ``class_default_source``: where those defaults come from, for the reports."""

    def __init__(self, entries: Mapping[Pair, PairDefault] | None = None, weight_keys: Sequence[str] = (),
                 class_default_source: str = "") -> None:
        self._entries = dict(entries or {})
        bad = [p for p, e in self._entries.items() if not isinstance(e, PairDefault)]
        if bad:
            raise TypeError(f"pair table entries must be PairDefault, got {type(self._entries[bad[0]]).__name__} "
                            f"for {bad[0]}")
        self.weight_keys: tuple[str, ...] = tuple(weight_keys) or tuple(
            sorted({k for e in self._entries.values() for k in e.values}))
        self.class_default_source = class_default_source

    def __getitem__(self, pair: Pair) -> PairDefault:
        return self._entries[tuple(pair)]  # type: ignore[index]

    def __iter__(self) -> Iterator[Pair]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def values_for(self, teacher: str, student: str) -> dict[str, Any]:
        """The weights of the pair (``{}`` when the table does not list it)."""
        entry = self._entries.get((teacher, student))
        return dict(entry.values) if entry is not None else {}

    def __repr__(self) -> str:
        return f"PairTable({len(self)} pairs, weight_keys={list(self.weight_keys)})"


#: The table of a method without per-pair weights.
NO_PAIR_DEFAULTS = PairTable()


@dataclass(frozen=True)
class TeacherPrep:
    """A run a distiller needs on each teacher before distilling: ``method`` (a registered teacher
    objective) trains on the teacher, and the distiller gets that run's checkpoint as option
    ``arg``; ``recipe_field`` names the grid's field holding that run's recipe."""

    method: str
    arg: str
    recipe_field: str


@dataclass(frozen=True)
class FromModels:
    """A value of a method's ``test_options`` computed from the models the test instance is built
    with: ``make(*models)`` (``(student, teacher)`` for a distiller, ``(model,)`` otherwise)."""

    make: Callable[..., Any]


def field_default(f: dataclasses.Field) -> Any:
    """An options dataclass field's default (its factory called), or ``inspect.Parameter.empty``
    for a field without one."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


__all__ = ["NO_PAIR_DEFAULTS", "FromModels", "Pair", "PairDefault", "PairTable", "TeacherPrep", "field_default"]
