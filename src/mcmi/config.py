"""Recipes as files: YAML mapped onto dataclasses, strictly.

- ``_base_: other.yaml`` (or a list) inherits from files relative to the including file; later
  keys override earlier ones, nested mappings merge.
- Command-line overrides ``key=value`` or ``section.key=value`` take precedence; values are parsed
  as YAML (``lr=0.01``, ``seeds=[0,1,2]``, ``name=foo``).
- Unknown keys and values of the wrong type are errors that name the file and the key (and the
  nearest valid keys). A float key also takes a number YAML 1.1 reads as a string (``1e6``,
  ``5e-4``); anything else that is not a number is an error.
- ``__post_init__`` checks of a config class raise :class:`FieldError` (naming the field) or
  ``ValueError``; :func:`build` turns both into a :class:`ConfigError` naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe file or override that does not fit its config class."""


class FieldError(ConfigError):
    """A value a config class refuses in its ``__post_init__``; ``key`` is the field's name, so
    :func:`build` can name it in full (``train.lr``) together with the file."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key} {message}")


def require(ok: bool, key: str, value: Any, what: str) -> None:
    """Raise :class:`FieldError` ``"<key> <what>, got <value>"`` unless ``ok``.

    Write ``ok`` so that NaN fails it (``lr > 0``, not ``not lr <= 0``)."""
    if not ok:
        raise FieldError(key, f"{what}, got {value!r}")


def nearest(value: Any, choices: Sequence[Any], n: int = 3) -> list[str]:
    """The names of ``choices`` closest to ``value`` (difflib), best first; empty if none is close."""
    names = [str(c) for c in choices]
    found = difflib.get_close_matches(str(value), names, n=n, cutoff=0.6)
    if not found:  # a prefix or a part of a name ("resnet" -> resnet20, ...)
        found = [c for c in names if str(value) and (c.startswith(str(value)) or str(value) in c)][:n]
    return found


def did_you_mean(value: Any, choices: Sequence[Any]) -> str:
    """``"; did you mean 'a' or 'b'?"`` for the nearest names of ``choices``, or ``""``."""
    close = nearest(value, choices)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown_name(key: str, value: Any, kind: str, choices: Sequence[Any], limit: int = 40) -> str:
    """One line for a name that is not among ``choices``: the key, the value, the nearest names
    and (up to ``limit`` of) the valid ones."""
    names = sorted(str(c) for c in choices)
    listed = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return f"{key}={value!r}: unknown {kind}{did_you_mean(value, names)} (known: {listed or 'none'})"


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: line:column and the problem."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    return " ".join(f"{where}{problem}{f' ({context})' if context else ''}".split())


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML recipe with ``_base_`` inheritance resolved (a cycle is an error naming the
    files)."""
    path = Path(path)
    if not path.is_file():
        hint = f" (a _base_ of {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain[_chain.index(resolved):], resolved))
        raise ConfigError(f"{path}: _base_ cycle: {cycle}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of them, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, load_yaml(path.parent / base, (*_chain, resolved)))
    return deep_merge(merged, data)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``: dotted keys, as overrides name them
    (lists and other values are kept; an empty mapping is a value)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: {key!r} is not a key (section.key=value)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:i + 1])} is set to a value by another "
                                  "override, so it has no keys")
        node[parts[-1]] = value
    return out


def build(cls: type[T], data: Mapping[str, Any], source: str = "<config>", prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types recursively."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    if not isinstance(data, Mapping):
        raise ConfigError(_at(source, f"{prefix.rstrip('.') or cls.__name__} must be a mapping, got {data!r}"))
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        key = unknown[0]
        close = nearest(key, sorted(fields))
        hint = f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
        raise ConfigError(
            f"{source}: unknown key '{prefix}{key}' for {cls.__name__}{hint} (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {k: _coerce(hints[k], v, source, prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(_at(source, f"{prefix}{e.key} {e.message}")) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(_at(source, str(e))) from None


def _at(source: str, message: str) -> str:
    return f"{source}: {message}" if source else message


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    data: dict[str, Any] = load_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(overrides))
    source = str(path) if path else "<defaults>"
    if overrides:
        source += " + overrides"
    return build(cls, data, source)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """A config object as the YAML recipe that builds it (tuples as lists, keys in field order)."""

    def plain(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x if x is None or isinstance(x, (bool, int, float, str)) else str(x)

    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return yaml.safe_dump(plain(data), sort_keys=False, default_flow_style=None, width=100)


#: A number as YAML 1.1 may leave it a string: ``1e6``, ``5e-4``, ``-1E+3`` (no decimal point).
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def coerce(tp: Any, value: Any, key: str, source: str = "") -> Any:
    """``value`` checked against (and converted to) type ``tp`` for key ``key``: the rules of
    :func:`build` for one value (e.g. a method option)."""
    return _coerce(tp, value, source, key)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else _at(source, f"{key}: cannot be None"))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(_at(source, f"{key} must be a mapping, got {value!r}"))
        return build(tp, value, source, key + ".")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(_at(source, f"{key} must be a list, got {value!r}"))
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(_at(source, f"{key} must be a mapping, got {value!r}"))
        item = args[1] if len(args) == 2 else Any
        return {k: _coerce(item, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            return float(value)
        raise ConfigError(_at(source, f"{key} must be a number, got {value!r} ({type(value).__name__})"))
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(_at(source, f"{key} must be true or false, got {value!r}"))
    if tp in (int, str) and (not isinstance(value, tp) or isinstance(value, bool)):
        raise ConfigError(_at(source, f"{key} must be {tp.__name__}, got {value!r} ({type(value).__name__})"))
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(_at(source, f"{key} must be one of {list(args)}, got {value!r}"))
    return value
