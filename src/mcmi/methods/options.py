"""The options each registered method takes (a recipe's ``method_args``), with their types.

Methods declare their options in one of two ways, and :func:`method_options` reads both:

- keyword arguments of the constructor (``KD(student, teacher, ce_weight=0.1, ...)``,
  ``MCMI(model, lam=0.15, ...)``): their names, annotated types and defaults;
- ``**weights`` (or any ``**kwargs``) collected into the options dataclass at the top of the
  method's file (``DKD(student, teacher, **weights)`` with :class:`~mcmi.methods.dkd.DKDConfig`):
  the dataclass's fields. The dataclass is the class attribute ``options`` when a method sets
  one, else the dataclass ``<ClassName>Config`` of the method's module (``DKD`` -> ``DKDConfig``).

Explicit constructor arguments beside ``**weights`` (CRD's ``num_data``, FitNet's
``image_shape``, HSAKD's ``teacher_heads``) are options too. The models (``model``, ``student``,
``teacher``) are not.

:func:`check_method_args` is what a recipe goes through when it is loaded: an unknown option is
an error naming it, the nearest valid names and all of them; each value is checked against (and
converted to) its option's type with the rules of :mod:`mcmi.config` (``lam: 1e-1`` is a float).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
import typing
from collections.abc import Mapping
from typing import Any

from mcmi.config import ConfigError, coerce, did_you_mean

#: Constructor parameters that are the method's models, not options.
MODEL_PARAMS = frozenset({"self", "model", "student", "teacher"})


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: its type (``Any`` when unannotated) and default
    (``inspect.Parameter.empty`` when it has none, e.g. CRD's ``num_data``, which training
    fills in)."""

    name: str
    type: Any
    default: Any


def _method_class(method: str | type) -> type:
    if isinstance(method, str):
        from mcmi.methods import METHODS

        return METHODS.get(method)
    return method


def options_dataclass(cls: type) -> type | None:
    """The dataclass that a method's ``**kwargs`` are built into (see the module notes), or None."""
    declared = getattr(cls, "options", None)
    if dataclasses.is_dataclass(declared):
        return declared
    module = sys.modules.get(getattr(cls, "__module__", ""), None)
    found = getattr(module, f"{cls.__name__}Config", None)
    return found if dataclasses.is_dataclass(found) and isinstance(found, type) else None


def _hints(obj: Any) -> dict[str, Any]:
    """The resolved annotations of ``obj``; one that does not resolve (a name imported only for
    type checking) counts as ``Any``, the others keep their types."""
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - resolved name by name below
        logging.getLogger(__name__).debug("annotations of %r resolved one by one", obj)
    out: dict[str, Any] = {}
    globalns = getattr(obj, "__globals__", None) or vars(sys.modules.get(getattr(obj, "__module__", ""), object))
    for name, ann in getattr(obj, "__annotations__", {}).items():
        try:
            out[name] = eval(ann, dict(globalns)) if isinstance(ann, str) else ann  # an annotation string
        except Exception:  # noqa: BLE001
            out[name] = Any
    return out


def method_options(method: str | type) -> dict[str, Option]:
    """The options of ``method`` (a registered name or a method class), by name.

    Raises ``TypeError`` for a method whose ``**kwargs`` have no options dataclass (so the test
    over every registered method catches a new method that cannot be checked)."""
    cls = _method_class(method)
    init = cls.__init__
    sig = inspect.signature(init)
    hints = _hints(init)
    out: dict[str, Option] = {}
    for name, p in sig.parameters.items():
        if name in MODEL_PARAMS or p.kind is p.VAR_POSITIONAL:
            continue
        if p.kind is p.VAR_KEYWORD:
            dc = options_dataclass(cls)
            if dc is None:
                raise TypeError(f"method {cls.__name__} takes **{name} but declares no options dataclass "
                                f"(set {cls.__name__}.options or define {cls.__name__}Config in its module)")
            dc_hints = _hints(dc)
            for f in dataclasses.fields(dc):
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
                    else inspect.Parameter.empty)
                out.setdefault(f.name, Option(f.name, dc_hints.get(f.name, Any), default))
            continue
        out[name] = Option(name, hints.get(name, Any), p.default)
    return out


def method_defaults(method: str | type) -> dict[str, Any]:
    """The options of ``method`` that have a default, with it (e.g. DKD's ``beta: 8.0``)."""
    return {k: o.default for k, o in method_options(method).items() if o.default is not inspect.Parameter.empty}


def check_method_args(method: str, args: Mapping[str, Any], key: str = "method_args") -> dict[str, Any]:
    """``args`` checked against the options of registered method ``method``: a new dict with each
    value converted to its option's type. Raises :class:`~mcmi.config.ConfigError` (one line,
    ``method_args.<name>``, without the file: :func:`mcmi.config.build` adds it)."""
    options = method_options(method)
    out: dict[str, Any] = {}
    for name, value in args.items():
        if name not in options:
            names = sorted(options)
            raise ConfigError(f"{key}.{name}: method {method!r} has no option {str(name)!r}"
                              f"{did_you_mean(name, names)} (its options: {', '.join(names) or 'none'})")
        out[name] = coerce(options[name].type, value, f"{key}.{name}")
    return out


__all__ = ["MODEL_PARAMS", "Option", "check_method_args", "method_defaults", "method_options", "options_dataclass"]
