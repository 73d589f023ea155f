"""The recipes shipped with mcmi (package data under ``mcmi/configs``), found the same way from a
checkout, an editable install and an installed wheel.

A recipe is named by its path under that folder, with or without ``.yaml``
(``teachers/resnet56_cifar100``); experiment grids also by their bare name
(``table1_tinyimagenet_cpu`` for ``experiments/table1_tinyimagenet_cpu.yaml``). A path that exists
is taken as given.
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from mcmi.config import ConfigError, deep_merge, load_yaml

RECIPES = Path(str(resources.files("mcmi") / "configs"))


def find_recipe(name: str | Path) -> Path:
    """The file of recipe ``name``: an existing path, else a recipe shipped with mcmi.

    Raises :class:`~mcmi.config.ConfigError` naming the recipe and where it was looked for."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    s = str(name)
    stem = s if s.endswith((".yaml", ".yml")) else f"{s}.yaml"
    for cand in (RECIPES / s, RECIPES / stem, RECIPES / "experiments" / stem):
        if cand.is_file():
            return cand
    raise ConfigError(f"recipe {s!r} not found (looked in the working folder and {RECIPES}; "
                      "`mcmi recipes` lists the shipped ones)")


def list_recipes() -> list[str]:
    """Names of the shipped recipes (paths under ``mcmi/configs`` without ``.yaml``), sorted."""
    return sorted(str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.rglob("*.yaml"))


def load_recipe(recipe: str | Mapping[str, Any]) -> dict[str, Any]:
    """A recipe as one mapping: a name or path (:func:`find_recipe`, its ``_base_`` files merged
    first), or an inline mapping whose ``_base_`` names such files."""
    if isinstance(recipe, str):
        return load_yaml(find_recipe(recipe))
    data = dict(recipe)
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, load_yaml(find_recipe(base)))
    return deep_merge(merged, data)
