"""Defaults that depend on which student is trained, applied wherever a student is trained.

Two kinds, both applied by :func:`apply_student_defaults` (the one place that decides them):

- the student's initial learning rate by architecture (:data:`STUDENT_LR`: 0.01 for
  MobileNetV2 and the ShuffleNets, A.8.2 and RepDistiller's ``train_student.py``, which the
  paper's code keeps), where every other CIFAR model starts at the shared schedule's 0.05;
- a distiller's weights per teacher/student pair (the method class's ``pair_defaults``: DKD's
  beta, ReviewKD's loss weight; :mod:`mcmi.methods.pair_defaults` says where each comes from).

Callers: ``mcmi distill`` and ``mcmi sweep --recipe`` (through :func:`load_run_config`, when the
recipe names a teacher) and the experiment grids (Table 1 and every grid built on it, for its
students and student baselines: :class:`mcmi.grid.builder.RunBuilder`).

**Explicit settings always win.** A key counts as set explicitly when it comes from

- a command-line override (``key=value``, ``--out``, a ``--grid`` point),
- a recipe file other than the schedules shipped under mcmi's ``configs/_base_/`` -- the file
  named with ``--config`` and any base it includes from elsewhere -- or an inline grid recipe,
- in a grid: ``student_lr`` (per student), ``method_args`` and ``pair_method_args``.

The shipped ``_base_/`` files hold the paper's shared schedule (lr 0.05 for every CIFAR model,
the teacher's recipe that ``cifar_student.yaml`` inherits); their values and the dataclass
defaults are defaults, which the per-student ones refine. So ``mcmi distill --config
_base_/cifar_student.yaml model.name=mobilenetv2 ...`` trains at lr 0.01, while a user recipe
with ``train: {lr: 0.05}`` or the override ``train.lr=0.05`` trains at 0.05. This is decided on
the recipe data before the dataclass is built (:func:`recipe_explicit_keys`): a built
:class:`~mcmi.experiments.train.RunConfig` no longer knows which values were written down, so
:func:`~mcmi.experiments.train.run_training` applies nothing itself.

Each application logs one INFO line naming the values and their sources; a grid logs one line
for all its runs (:func:`summarize_applied`; the per-run lines at DEBUG). The same line is logged
once per process.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcmi.methods.pair_defaults import CLASS_DEFAULT, pair_default_status

log = logging.getLogger(__name__)

#: Initial learning rate of these students (A.8.2; RepDistiller's ``train_student.py`` and the
#: paper's ``CIFAT-100KD/train_student.py``: ``if opt.model_s in ['MobileNetV2', 'ShuffleV1',
#: 'ShuffleV2']: opt.learning_rate = 0.01``). ``mobilenetv2_x0_1`` is mcmi's narrow MobileNetV2.
STUDENT_LR: dict[str, float] = {"mobilenetv2": 0.01, "mobilenetv2_x0_1": 0.01, "shufflenetv1": 0.01,
                                "shufflenetv2": 0.01}
STUDENT_LR_SOURCE = ("A.8.2 / RepDistiller train_student.py (kept by the paper's code): lr 0.01 for "
                     "MobileNetV2 and ShuffleNets")

_logged: set[str] = set()


@dataclass(frozen=True)
class AppliedDefault:
    """One default written into a run's settings: dotted ``key``, ``value``, where it comes from,
    and ``status`` (``student-lr``, or the pair weight's ``official`` / ``nearest-pair``)."""

    key: str
    value: Any
    source: str
    status: str

    def describe(self) -> str:
        return f"{self.key}={self.value} [{self.status}: {self.source}]"


# --------------------------------------------------------------------------- what is explicit
def flat_keys(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of the leaves of a nested mapping (``{"train": {"lr": 1}}`` -> ``{"train.lr"}``);
    an empty mapping contributes nothing."""
    keys: set[str] = set()
    for k, v in data.items():
        if k == "_base_":
            continue
        if isinstance(v, Mapping):
            keys |= flat_keys(v, f"{prefix}{k}.")
        else:
            keys.add(f"{prefix}{k}")
    return keys


def is_shipped_base(path: str | Path) -> bool:
    """Whether ``path`` is one of the schedules shipped under mcmi's ``configs/_base_/``."""
    from mcmi.recipes import RECIPES

    try:
        Path(path).resolve().relative_to((RECIPES / "_base_").resolve())
    except ValueError:
        return False
    return True


def _file_explicit_keys(path: Path, seen: frozenset[Path] = frozenset()) -> set[str]:
    import yaml

    from mcmi.config import ConfigError

    path = Path(path)
    if is_shipped_base(path) or path.resolve() in seen:
        return set()
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, Mapping):
        return set()
    keys = flat_keys(data)
    bases = data.get("_base_", [])
    for base in [bases] if isinstance(bases, str) else bases or []:
        keys |= _file_explicit_keys(path.parent / base, seen | {path.resolve()})
    return keys


def recipe_explicit_keys(recipe: str | Path | Mapping[str, Any] | None,
                         overrides: Sequence[str] | Mapping[str, Any] = ()) -> set[str]:
    """The dotted keys a recipe sets explicitly (see the module notes): those of a recipe file and
    of the bases it includes from outside mcmi's ``configs/_base_/``, or of an inline grid recipe
    (recipe and ``_base_`` names resolved as :func:`mcmi.recipes.find_recipe` does), plus ``overrides``
    (``key=value`` strings or a nested mapping)."""
    from mcmi.config import parse_overrides
    from mcmi.recipes import find_recipe

    keys: set[str] = set()
    if isinstance(recipe, Mapping):
        keys |= flat_keys(recipe)
        bases = recipe.get("_base_", [])
        for base in [bases] if isinstance(bases, str) else bases or []:
            keys |= _file_explicit_keys(find_recipe(base))
    elif recipe is not None:
        keys |= _file_explicit_keys(find_recipe(recipe))
    over = overrides if isinstance(overrides, Mapping) else parse_overrides(list(overrides))
    return keys | flat_keys(over)


def is_explicit(key: str, explicit: Collection[str]) -> bool:
    """``key`` or one of its parents is in ``explicit`` (``train`` set as a whole covers ``train.lr``)."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in explicit for i in range(1, len(parts) + 1))


# --------------------------------------------------------------------------- the defaults
def student_defaults(student: str, teacher: str | None, method: str, *, pair_weights: bool = True,
                     explicit: Collection[str] = ()) -> list[AppliedDefault]:
    """The defaults a run of ``student`` distilled by ``method`` from ``teacher`` (None: trained
    alone) gets, less the keys in ``explicit``: the student's lr, and the method's weights for the
    pair when the pair table lists it (``pair_weights``; a pair it does not list keeps the
    method's class defaults, which need no setting)."""
    out: list[AppliedDefault] = []
    if student in STUDENT_LR and not is_explicit("train.lr", explicit):
        out.append(AppliedDefault("train.lr", STUDENT_LR[student], STUDENT_LR_SOURCE, "student-lr"))
    if teacher is not None and pair_weights:
        set_args = {k.split(".")[1]: True for k in explicit if k.startswith("method_args.")}
        status = pair_default_status(method, teacher, student, explicit=set_args)
        if status is not None and status.status != CLASS_DEFAULT:
            out += [AppliedDefault(f"method_args.{k}", v, status.source, status.status)
                    for k, v in status.values.items()]
    return out


def _name(spec: Any) -> str | None:
    """The architecture a ``model``/``teacher`` mapping names (``ModelSpec``'s default when it
    names none); None for no spec."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        from mcmi.experiments.train import ModelSpec

        return spec.get("name") or ModelSpec().name
    return getattr(spec, "name", None)


def _log_once(line: str, level: int = logging.INFO) -> None:
    if line not in _logged:
        _logged.add(line)
        log.log(level, "%s", line)


def apply_student_defaults(data: dict[str, Any], explicit: Collection[str], *, student_run: bool | None = None,
                           pair_weights: bool = True, where: str = "", quiet: bool = False) -> list[AppliedDefault]:
    """Write the student defaults into ``data`` (a RunConfig mapping, before it is built) for the
    keys not in ``explicit``; returns what was applied and logs it (one INFO line; DEBUG with
    ``quiet``, for grids, which log one summary: :func:`summarize_applied`).

    ``student_run``: whether ``data`` trains a student; default: when it names a teacher (a grid
    passes True for its student baselines, which train alone)."""
    teacher = _name(data.get("teacher"))
    if student_run is None:
        student_run = teacher is not None
    student = _name(data.get("model"))
    if not student_run or not student:
        return []
    applied = student_defaults(student, teacher, str(data.get("method", "mll")), pair_weights=pair_weights,
                               explicit=explicit)
    for d in applied:
        section, name = d.key.split(".", 1)
        node = data.get(section)
        node = dict(node) if isinstance(node, Mapping) else {}
        node[name] = d.value
        data[section] = node
    if applied:
        what = f"{student}" + (f" <- {teacher} ({data.get('method')})" if teacher else " alone")
        _log_once(f"student defaults for {what}{' in ' + where if where else ''} (explicit settings win): "
                  + "; ".join(d.describe() for d in applied), logging.DEBUG if quiet else logging.INFO)
    return applied


def summarize_applied(applied: Collection[tuple[str, str | None, str, AppliedDefault]], where: str) -> None:
    """Log one INFO line for a grid: which students got the lr default, and how many (pair,
    method) cells got per-pair weights, the nearest-pair fallbacks named. ``applied`` holds
    (student, teacher or None, method, default) of every run."""
    if not applied:
        return
    lr = sorted({(s, d.value) for s, _, _, d in applied if d.key == "train.lr"})
    cells: dict[tuple[str, str, str], list[AppliedDefault]] = {}
    for s, t, m, d in applied:
        if d.key != "train.lr" and t is not None:
            cells.setdefault((t, s, m), [])
            if d not in cells[(t, s, m)]:
                cells[(t, s, m)].append(d)
    parts = []
    if lr:
        parts.append("train.lr " + ", ".join(f"{v:g} for {s}" for s, v in lr) + f" ({STUDENT_LR_SOURCE})")
    if cells:
        nearest = [f"{t}-{s} {m} " + ", ".join(f"{d.key.split('.', 1)[1]}={d.value}" for d in ds)
                   for (t, s, m), ds in cells.items() if any(d.status != "official" for d in ds)]
        parts.append(f"per-pair weights in {len(cells)} (pair, method) cells: {len(cells) - len(nearest)} official"
                     + (f", {len(nearest)} nearest-pair ({'; '.join(nearest)})" if nearest else ""))
    _log_once(f"{where}: student defaults (explicit settings win): " + "; ".join(parts))


def load_run_config(path: str | Path | None, overrides: Sequence[str] = (), *, student_run: bool | None = None):
    """:func:`mcmi.config.load_config` of a :class:`~mcmi.experiments.train.RunConfig` with the
    student defaults applied (when the recipe trains a student: it names a teacher, or
    ``student_run``), explicit settings winning (module notes). The defaults go in as extra
    overrides after the user's, so the recipe is checked and built as ``load_config`` does."""
    import json

    from mcmi.config import deep_merge, load_config, load_yaml, parse_overrides
    from mcmi.experiments.train import RunConfig

    overrides = list(overrides)
    data: dict[str, Any] = deep_merge(load_yaml(path) if path else {}, parse_overrides(overrides))
    applied = apply_student_defaults(data, recipe_explicit_keys(path, overrides), student_run=student_run)
    return load_config(RunConfig, path, overrides + [f"{d.key}={json.dumps(d.value)}" for d in applied])


__all__ = [
    "STUDENT_LR",
    "STUDENT_LR_SOURCE",
    "AppliedDefault",
    "apply_student_defaults",
    "flat_keys",
    "is_explicit",
    "is_shipped_base",
    "load_run_config",
    "recipe_explicit_keys",
    "student_defaults",
    "summarize_applied",
]
