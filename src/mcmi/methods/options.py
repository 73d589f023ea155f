"""The options each registered method takes (a recipe's ``method_args``), with their types.

Every method declares its options the same way: the dataclass of its class attribute ``options``
(``DKD.options is DKDConfig``), whose fields and defaults are the options, context values included
(CRD's ``num_data``, FitNet's ``image_shape``, HSAKD's ``teacher_heads``); the constructor takes
them as ``**options`` (:class:`~mcmi.methods.base.Method`). :func:`method_options` reads that
dataclass and nothing else.

:func:`check_method_args` is what a recipe goes through when it is loaded
(:func:`mcmi.experiments.train.check_run_config`): an unknown option is an error naming it, the
nearest valid names and all of them; each value is checked against (and converted to) its
option's type with the rules of :mod:`mcmi.config` (``lam: 1e-1`` is a float); then the checks of
the dataclass itself run on the values (``lam: -1`` for MCMI), so a bad value is a
:class:`~mcmi.config.ConfigError` at load time too, not a failure when training starts.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Mapping
from typing import Any

from mcmi.config import ConfigError, FieldError, coerce, did_you_mean
from mcmi.methods.base import method_class
from mcmi.methods.metadata import field_default


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a method: its type (``Any`` when unannotated) and default
    (``inspect.Parameter.empty`` when it has none)."""

    name: str
    type: Any
    default: Any


def _class(method: str | type) -> type:
    return method_class(method) if isinstance(method, str) else method


def options_dataclass(method: str | type) -> type:
    """The options dataclass of ``method`` (a registered name or a method class): its ``options``.
    Raises ``TypeError`` when it declares none (the test over every registered method catches a
    new method that cannot be checked)."""
    cls = _class(method)
    declared = getattr(cls, "options", None)
    if not (isinstance(declared, type) and dataclasses.is_dataclass(declared)):
        raise TypeError(f"method {getattr(cls, '__name__', cls)!r} declares no options dataclass: set the class "
                        f"attribute options = <a dataclass of its options> (got {declared!r})")
    return declared


def method_options(method: str | type) -> dict[str, Option]:
    """The options of ``method`` (a registered name or a method class), by name, in field order."""
    dc = options_dataclass(method)
    try:
        hints = typing.get_type_hints(dc)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: that option takes any value
        hints = {}
    out: dict[str, Option] = {}
    for f in dataclasses.fields(dc):
        out[f.name] = Option(f.name, hints.get(f.name, Any), field_default(f))
    return out


def method_defaults(method: str | type) -> dict[str, Any]:
    """The options of ``method`` that have a default, with it (e.g. DKD's ``beta: 8.0``)."""
    return {k: o.default for k, o in method_options(method).items() if o.default is not inspect.Parameter.empty}


def check_method_args(method: str, args: Mapping[str, Any], key: str = "method_args") -> dict[str, Any]:
    """``args`` checked against the options of registered method ``method``: a new dict with each
    value converted to its option's type, and the options dataclass's own checks passed. Raises
    :class:`~mcmi.config.ConfigError` (one line, ``method_args.<name>``, without the file:
    :func:`mcmi.config.build` adds it)."""
    options = method_options(method)
    out: dict[str, Any] = {}
    for name, value in args.items():
        if name not in options:
            names = sorted(options)
            raise ConfigError(f"{key}.{name}: method {method!r} has no option {str(name)!r}"
                              f"{did_you_mean(name, names)} (its options: {', '.join(names) or 'none'})")
        out[name] = coerce(options[name].type, value, f"{key}.{name}")
    missing = [n for n, o in options.items() if o.default is inspect.Parameter.empty and n not in out]
    if not missing:  # an option without a default may come from the run (context): checked when built
        try:
            options_dataclass(method)(**out)
        except FieldError as e:
            raise ConfigError(f"{key}.{e.key} {e.message}") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{key}: method {method!r}: {e}") from None
    return out


__all__ = ["Option", "check_method_args", "method_defaults", "method_options", "options_dataclass"]
