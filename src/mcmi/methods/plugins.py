"""Methods from outside the package: the modules named in ``MCMI_PLUGINS`` and the installed
packages' entry points of group ``mcmi.methods``, loaded by :mod:`mcmi.methods` when it is imported.

A plugin is any module that registers methods when imported (``@register_method("name")`` on a
:class:`~mcmi.methods.base.Method` subclass with an ``options`` dataclass). Because loading happens
on import and reads the environment, every process that imports mcmi sees the same methods: the
processes a sweep starts inherit ``MCMI_PLUGINS``, and installed entry points are everywhere.

A plugin that fails to import is a :class:`PluginError`: one line naming the plugin, where it was
named (the variable or the distribution) and the error.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from mcmi.config import ConfigError
from mcmi.methods.base import METHODS, Method, register_method

log = logging.getLogger(__name__)

#: Comma-separated plugins: module names importable from ``sys.path``, or paths to ``.py`` files.
ENV_VAR = "MCMI_PLUGINS"
#: Entry-point group of installed packages' methods: ``name = "module"`` or ``name = "module:Class"``.
ENTRY_POINT_GROUP = "mcmi.methods"


class PluginError(ConfigError):
    """A method plugin that cannot be loaded. A :class:`~mcmi.config.ConfigError`, so the command
    line reports it as one line, like any other setting to fix."""


def _one_line(e: BaseException) -> str:
    text = "; ".join(part.strip() for part in str(e).splitlines() if part.strip())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _is_path(item: str) -> bool:
    return item.endswith(".py") or "/" in item or os.sep in item


def _load_file(item: str) -> ModuleType:
    """Import the ``.py`` file ``item`` as module ``<its stem>`` (as ``import <stem>`` would, with
    its folder on ``sys.path``), once."""
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        where = getattr(loaded, "__file__", None)
        if where is not None and Path(where).resolve() == path:
            return loaded
        raise ImportError(f"module name {name!r} is already taken by {where or 'a built-in module'}; "
                          "rename the plugin file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as a module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs: dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_env_plugins(environ: Mapping[str, str] | None = None) -> list[str]:
    """Import every plugin named in ``MCMI_PLUGINS`` (of ``environ``, default ``os.environ``);
    returns them. Raises :class:`PluginError` for the first that fails."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    items = [part.strip() for part in value.split(",") if part.strip()]
    for item in items:
        try:
            _load_file(item) if _is_path(item) else importlib.import_module(item)
        except Exception as e:  # noqa: BLE001 - any failure of a plugin is reported as its own
            raise PluginError(f"method plugin {item!r} (from {ENV_VAR}) failed to import: {_one_line(e)}") from e
    return items


def _registered(obj: Any) -> bool:
    return any(METHODS.get(n) is obj for n in METHODS.names())


def _load_entry_point(ep: EntryPoint) -> None:
    """Load ``ep``; an entry point naming a method class that its module does not register is
    registered under the entry point's name."""
    obj = ep.load()
    if isinstance(obj, type) and issubclass(obj, Method) and not _registered(obj):
        register_method(ep.name)(obj)


def load_entry_point_plugins() -> list[str]:
    """Load every installed entry point of group ``mcmi.methods``; returns their names. Raises
    :class:`PluginError` for the first that fails."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
        try:
            _load_entry_point(ep)
        except Exception as e:  # noqa: BLE001 - any failure of a plugin is reported as its own
            raise PluginError(f"method plugin {ep.name!r} (entry point {ep.value!r} of {dist}, group "
                              f"{ENTRY_POINT_GROUP}) failed to load: {_one_line(e)}") from e
        names.append(ep.name)
    return names


def load_plugins() -> list[str]:
    """Load the plugins of ``MCMI_PLUGINS``, then the installed entry points; returns what was
    loaded (logged at DEBUG)."""
    loaded = load_env_plugins() + load_entry_point_plugins()
    if loaded:
        log.debug("method plugins loaded: %s", ", ".join(loaded))
    return loaded


__all__ = ["ENTRY_POINT_GROUP", "ENV_VAR", "PluginError", "load_entry_point_plugins", "load_env_plugins",
           "load_plugins"]
