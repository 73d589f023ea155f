"""The harness of paper Table 1: students of MLL vs MCMI teachers over pairs x methods x seeds.

One :class:`Table1Config` names the grid (teacher-student pairs, KD methods, teacher kinds, seeds)
and the recipes; :func:`expand_grid` turns it into :class:`PlannedRun` objects, each an ordinary
:class:`~mcmi.experiments.train.RunConfig` trained by :func:`~mcmi.experiments.train.run_training`
into its own folder under ``out``::

    teachers/<arch>/mll                  MLL teacher (teacher_recipe), trained once per arch
    teachers/<arch>/mcmi                 MCMI fine-tune of mll/last.pt (mcmi_recipe, Table 6 lambda)
    teachers/<arch>/<kind>+hsakd_teacher HSAKD's auxiliary heads on a frozen teacher (heads_recipe),
                                         only when ``hsakd`` is in the grid
    students/<student>/baseline/seed<k>  the student without a teacher (``student_baseline``)
    students/<teacher>-<student>/<method>/<kind>/seed<k>

A run whose ``summary.json`` exists is done and skipped; one with a ``last.pt`` resumes. A failing
run leaves ``error.txt`` (message and traceback) in its folder and the others go on; runs that need
its checkpoint are reported as blocked. Teachers also get ``teacher_eval.json``: accuracy, LL and
CMI of the checkpoint the students read on the training set (the paper's Table 1 rows), in the
view ``teacher_eval_view`` names (:mod:`mcmi.metrics.train_view`): ``train-plain`` (default: every
image once, unaugmented) or ``train-augmented`` (the training augmentation, model in eval mode:
what the paper's analysis script ``MTCMI.py`` measures); the file records which.

Student settings, lowest precedence first: the student defaults of
:mod:`mcmi.experiments.student_defaults` (lr 0.01 for MobileNetV2/ShuffleNets; DKD's and
ReviewKD's per-pair weights, as the paper's A.8.2 takes them from the official code, each entry
flagged official or nearest-pair), the student recipe's explicit settings,
``student_lr[student]``, ``method_args[method]``, ``pair_method_args["<teacher>-<student>"][method]``.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcmi.config import ConfigError, build, deep_merge, load_yaml
from mcmi.experiments.student_defaults import (
    STUDENT_LR,
    apply_student_defaults,
    recipe_explicit_keys,
    summarize_applied,
)
from mcmi.experiments.train import DataSpec, RunConfig

log = logging.getLogger(__name__)

TEACHER_KINDS = ("mll", "mcmi")

#: Paper Table 6 (A.8.1): lambda* of the MCMI fine-tune per teacher, CIFAR-100.
TABLE6_LAMBDA: dict[str, float] = {
    "resnet56": 0.15, "resnet110": 0.10, "wrn_40_2": 0.15, "vgg13": 0.20, "resnet50": 0.20, "resnet32x4": 0.15,
}
#: Paper Table 6, CIFAR-10 row (only ResNet-56 is listed).
TABLE6_LAMBDA_CIFAR10: dict[str, float] = {"resnet56": 0.25}
#: A.8.2 (RepDistiller): a smaller initial learning rate for these students (an alias of
#: :data:`mcmi.experiments.student_defaults.STUDENT_LR`, applied wherever a student is trained).
SMALL_LR_STUDENTS: dict[str, float] = STUDENT_LR


@dataclass(frozen=True)
class TeacherPrep:
    """A run a distiller needs on each teacher before distilling: ``method`` trains on the teacher,
    and the student's method gets that run's checkpoint as argument ``arg``."""

    method: str
    arg: str
    recipe_field: str


#: Methods whose teacher needs a preparation run (HSAKD: the teacher's auxiliary heads).
TEACHER_PREP: dict[str, TeacherPrep] = {
    "hsakd": TeacherPrep(method="hsakd_teacher", arg="teacher_heads", recipe_field="heads_recipe"),
}

FILTER_KEYS = ("pair", "teacher", "student", "method", "kind", "seed", "stage")


@dataclass
class PairSpec:
    """One teacher -> student pair of registered architecture names."""

    teacher: str
    student: str

    @property
    def name(self) -> str:
        return f"{self.teacher}-{self.student}"


@dataclass
class Table1Config:
    """The grid of paper Table 1 and how each of its runs is trained.

    Recipes (``teacher_recipe``, ``mcmi_recipe``, ``student_recipe``, ``heads_recipe``) are
    :class:`~mcmi.experiments.train.RunConfig` YAML files or inline mappings: a string is a recipe
    path, a mapping holds RunConfig keys and may name base files under ``_base_`` (merged first).
    Paths are taken as given when they exist, else under the repository's ``configs/``. The harness
    then sets what the grid decides: ``model``, ``teacher``, ``method`` (and ``method_args`` of
    students), ``data`` (this config's, replacing the recipe's), ``train.seed``, ``device``, ``out``.

    ``mcmi_lambda`` is merged over its defaults (Table 6), so a config lists only what it changes.
    ``student_lr`` lists the students whose lr the grid sets; the others get the student defaults
    (:mod:`mcmi.experiments.student_defaults`: 0.01 for MobileNetV2/ShuffleNets) unless the student
    recipe sets ``train.lr`` itself.
    """

    pairs: list[PairSpec] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: ["kd"])
    teacher_kinds: list[str] = field(default_factory=lambda: list(TEACHER_KINDS))
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    heads_recipe: str | dict[str, Any] = "_base_/cifar_hsakd_heads.yaml"
    mcmi_lambda: dict[str, float] = field(default_factory=dict)
    mcmi_lambda_default: float = 0.15  # teachers Table 6 does not list
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    pair_method_args: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    use_pair_defaults: bool = True  # the method modules' PAIR_DEFAULTS (DKD beta, ReviewKD weight)
    student_baseline: bool = False  # also train each student without a teacher (Table 1's student row)
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"  # which teacher file students read: "last" or "best"
    teacher_eval_view: str = "train-plain"  # teachers' train LL/CMI: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0  # the augmentation draws of the train-augmented view
    device: str = "auto"
    out: str = "runs/table1"

    def __post_init__(self) -> None:
        from mcmi.methods import METHODS, Distiller

        if not self.pairs:
            raise ValueError("pairs must list at least one {teacher: ..., student: ...}")
        names = [p.name for p in self.pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"pairs lists a pair twice: {names}")
        for label, values in (("methods", self.methods), ("teacher_kinds", self.teacher_kinds), ("seeds", self.seeds)):
            if not values:
                raise ValueError(f"{label} must not be empty")
            if len(set(values)) != len(values):
                raise ValueError(f"{label} lists a value twice: {values}")
        bad = [k for k in self.teacher_kinds if k not in TEACHER_KINDS]
        if bad:
            raise ValueError(f"teacher_kinds must be among {list(TEACHER_KINDS)}, got {bad[0]!r}")
        from mcmi.config import unknown_name

        for key, names in (("methods", self.methods), ("method_args", list(self.method_args))):
            for name in names:
                if name not in METHODS:
                    raise ValueError(unknown_name(key, name, "method", METHODS.names()))
        for name in self.methods:
            cls = METHODS.get(name)
            if not (isinstance(cls, type) and issubclass(cls, Distiller)):
                raise ValueError(f"method {name!r} is not a distiller (Table 1 compares KD methods; "
                                 "the student without a teacher is student_baseline: true)")
        for pair, per_method in self.pair_method_args.items():
            if "-" not in pair or not isinstance(per_method, Mapping):
                raise ValueError(f"pair_method_args: keys are '<teacher>-<student>' with a mapping of "
                                 f"method -> args, got {pair!r}")
        if self.teacher_checkpoint not in ("last", "best"):
            raise ValueError(f"teacher_checkpoint must be 'last' or 'best', got {self.teacher_checkpoint!r}")
        from mcmi.metrics.train_view import check_view

        check_view(self.teacher_eval_view, "teacher_eval_view")
        defaults = dict(TABLE6_LAMBDA)
        if self.data.name == "cifar10":
            defaults.update(TABLE6_LAMBDA_CIFAR10)
        self.mcmi_lambda = {**defaults, **self.mcmi_lambda}

    def lambda_for(self, arch: str) -> float:
        return float(self.mcmi_lambda.get(arch, self.mcmi_lambda_default))


@dataclass(frozen=True)
class PlannedRun:
    """One training run of the grid: its folder (``key`` under ``out``), stage, recipe and the
    runs whose checkpoints it reads. ``labels`` serve ``--only`` filters and the report."""

    key: str
    stage: str  # "teacher" | "mcmi" | "prep" | "baseline" | "student"
    config: RunConfig
    deps: tuple[str, ...] = ()
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # teachers: the view and seed of their teacher_eval.json (Table1Config.teacher_eval_view/seed)
    eval_view: str = "train-plain"
    eval_seed: int = 0

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out)

    def label(self, key: str) -> str:
        values = self.labels.get(key, ())
        return values[0] if len(values) == 1 else ""


@dataclass
class RunOutcome:
    """What the harness did with one run: ``skipped`` (done before), ``done``, ``failed``, ``blocked``."""

    key: str
    before: str
    result: str
    message: str = ""
    wall_s: float = 0.0


# ------------------------------------------------------------------------------------ recipes
def resolve_recipe_path(path: str) -> Path:
    """``path`` as given if it exists, else a recipe shipped with mcmi (:mod:`mcmi.recipes`)."""
    from mcmi.recipes import find_recipe

    return find_recipe(path)


def recipe_data(recipe: str | Mapping[str, Any]) -> dict[str, Any]:
    """A recipe (path or inline mapping with optional ``_base_``) as one RunConfig mapping."""
    if isinstance(recipe, str):
        return load_yaml(resolve_recipe_path(recipe))
    data = dict(recipe)
    bases = data.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, load_yaml(resolve_recipe_path(base)))
    return deep_merge(merged, data)


def grid_method_args(cfg: Table1Config, pair: PairSpec, method: str) -> dict[str, Any]:
    """The arguments of ``method`` for ``pair`` that the grid sets: method_args < pair_method_args
    (explicit settings: the student defaults never replace them)."""
    args: dict[str, Any] = dict(cfg.method_args.get(method, {}) or {})
    args.update((cfg.pair_method_args.get(pair.name, {}) or {}).get(method, {}) or {})
    return args


def student_method_args(cfg: Table1Config, pair: PairSpec, method: str) -> dict[str, Any]:
    """All arguments of ``method`` for ``pair``: the pair weights of the student defaults
    (``use_pair_defaults``) < method_args < pair_method_args."""
    data: dict[str, Any] = {"model": {"name": pair.student}, "teacher": {"name": pair.teacher}, "method": method,
                            "method_args": grid_method_args(cfg, pair, method)}
    explicit = {f"method_args.{k}" for k in data["method_args"]} | {"train.lr"}
    apply_student_defaults(data, explicit, student_run=True, pair_weights=cfg.use_pair_defaults, quiet=True)
    return dict(data["method_args"])


def _run_config(cfg: Table1Config, recipe: Mapping[str, Any], key: str, *, model: dict[str, Any],
                method: str, method_args: dict[str, Any] | None, teacher: dict[str, Any] | None,
                seed: int, lr: float | None = None, recipe_name: str = "",
                student_explicit: set[str] | None = None, applied: list | None = None) -> RunConfig:
    """The RunConfig of one run: the loaded ``recipe`` with what the grid decides set on top.

    ``student_explicit`` (students and student baselines: the keys the student recipe sets
    explicitly) applies the student defaults for what neither the recipe, ``lr`` nor
    ``method_args`` set; ``applied`` collects them as (student, teacher, method, default)."""
    data = dict(recipe)
    train = dict(data.get("train") or {})
    train["seed"] = seed
    if lr is not None:
        train["lr"] = lr
    data.update(
        model=model, method=method, teacher=teacher, data=asdict(cfg.data), train=train,
        device=cfg.device, out=str(Path(cfg.out) / key),
    )
    if method_args is not None:
        data["method_args"] = method_args
    if student_explicit is not None:
        explicit = {k for k in student_explicit if not k.startswith("method_args.")} if method_args is not None \
            else set(student_explicit)
        explicit |= {f"method_args.{k}" for k in method_args or {}} | ({"train.lr"} if lr is not None else set())
        done = apply_student_defaults(data, explicit, student_run=True, pair_weights=cfg.use_pair_defaults,
                                      where=key, quiet=True)
        if applied is not None:
            applied += [(model["name"], (teacher or {}).get("name"), method, d) for d in done]
    return build(RunConfig, data, source=f"table1 {recipe_name or 'recipe'} for {key}")


# ---------------------------------------------------------------------------------- the grid
def teacher_key(arch: str, kind: str) -> str:
    return f"teachers/{arch}/{kind}"


def prep_key(arch: str, kind: str, prep: TeacherPrep) -> str:
    return f"teachers/{arch}/{kind}+{prep.method}"


def student_key(pair: PairSpec, method: str, kind: str, seed: int) -> str:
    return f"students/{pair.name}/{method}/{kind}/seed{seed}"


def baseline_key(student: str, seed: int) -> str:
    return f"students/{student}/baseline/seed{seed}"


def _unique(seq):
    return list(dict.fromkeys(seq))


def expand_grid(cfg: Table1Config) -> list[PlannedRun]:
    """Every run of the grid in execution order: teachers, MCMI fine-tunes, teacher preparations,
    student baselines, then students seed by seed (seed 0 of every cell first, so an interrupted
    grid already compares MLL and MCMI everywhere). Recipe errors raise :class:`ConfigError`."""
    out = Path(cfg.out)
    runs: list[PlannedRun] = []
    cache: dict[str, dict[str, Any]] = {}
    explicit_cache: dict[str, set[str]] = {}
    applied: list = []  # student defaults of every run, logged once at the end

    def recipe(name: str) -> dict[str, Any]:  # each recipe file is read once per expansion
        if name not in cache:
            cache[name] = recipe_data(getattr(cfg, name))
        return cache[name]

    def explicit(name: str) -> set[str]:  # what the recipe sets itself (the student defaults yield to it)
        if name not in explicit_cache:
            explicit_cache[name] = recipe_explicit_keys(getattr(cfg, name))
        return explicit_cache[name]

    teachers = _unique(p.teacher for p in cfg.pairs)
    preps = _unique(TEACHER_PREP[m] for m in cfg.methods if m in TEACHER_PREP)
    ckpt = f"{cfg.teacher_checkpoint}.pt"
    for arch in teachers:
        pairs_of = tuple(p.name for p in cfg.pairs if p.teacher == arch)
        labels = {"stage": ("teacher",), "teacher": (arch,), "pair": pairs_of}
        runs.append(PlannedRun(
            teacher_key(arch, "mll"), "teacher",
            _run_config(cfg, recipe("teacher_recipe"), teacher_key(arch, "mll"), model={"name": arch}, method="mll",
                        method_args=None, teacher=None, seed=cfg.teacher_seed, recipe_name="teacher_recipe"),
            (), {**labels, "kind": ("mll",)}, cfg.teacher_eval_view, cfg.teacher_eval_seed))
        if "mcmi" in cfg.teacher_kinds:
            mcmi_args = dict(recipe("mcmi_recipe").get("method_args") or {})
            mcmi_args["lam"] = cfg.lambda_for(arch)
            runs.append(PlannedRun(
                teacher_key(arch, "mcmi"), "mcmi",
                _run_config(cfg, recipe("mcmi_recipe"), teacher_key(arch, "mcmi"),
                            model={"name": arch, "weights": str(out / teacher_key(arch, "mll") / "last.pt")},
                            method="mcmi", method_args=mcmi_args, teacher=None, seed=cfg.teacher_seed,
                            recipe_name="mcmi_recipe"),
                (teacher_key(arch, "mll"),), {**labels, "kind": ("mcmi",)}, cfg.teacher_eval_view,
                cfg.teacher_eval_seed))
        for kind in cfg.teacher_kinds:
            for prep in preps:
                key = prep_key(arch, kind, prep)
                runs.append(PlannedRun(
                    key, "prep",
                    _run_config(cfg, recipe(prep.recipe_field), key,
                                model={"name": arch, "weights": str(out / teacher_key(arch, kind) / ckpt)},
                                method=prep.method, method_args=None, teacher=None, seed=cfg.teacher_seed,
                                recipe_name=prep.recipe_field),
                    (teacher_key(arch, kind),), {**labels, "kind": (kind,)}))
    if cfg.student_baseline:
        for seed in cfg.seeds:
            for student in _unique(p.student for p in cfg.pairs):
                key = baseline_key(student, seed)
                pairs_of = tuple(p for p in cfg.pairs if p.student == student)
                runs.append(PlannedRun(
                    key, "baseline",
                    _run_config(cfg, recipe("student_recipe"), key, model={"name": student}, method="mll",
                                method_args={}, teacher=None, seed=seed, lr=cfg.student_lr.get(student),
                                recipe_name="student_recipe", student_explicit=explicit("student_recipe"),
                                applied=applied),
                    (), {"stage": ("baseline",), "student": (student,), "seed": (str(seed),), "method": ("baseline",),
                         "pair": tuple(p.name for p in pairs_of), "teacher": tuple(p.teacher for p in pairs_of)}))
    for seed in cfg.seeds:
        for pair in cfg.pairs:
            for method in cfg.methods:
                prep = TEACHER_PREP.get(method)
                for kind in cfg.teacher_kinds:
                    key = student_key(pair, method, kind, seed)
                    args = grid_method_args(cfg, pair, method)
                    deps = [teacher_key(pair.teacher, kind)]
                    if prep is not None and prep.arg not in args:
                        deps.append(prep_key(pair.teacher, kind, prep))
                        args[prep.arg] = str(out / deps[-1] / "last.pt")
                    runs.append(PlannedRun(
                        key, "student",
                        _run_config(cfg, recipe("student_recipe"), key, model={"name": pair.student}, method=method,
                                    method_args=args,
                                    teacher={"name": pair.teacher,
                                             "weights": str(out / teacher_key(pair.teacher, kind) / ckpt)},
                                    seed=seed, lr=cfg.student_lr.get(pair.student), recipe_name="student_recipe",
                                    student_explicit=explicit("student_recipe"), applied=applied),
                        tuple(deps),
                        {"stage": ("student",), "pair": (pair.name,), "teacher": (pair.teacher,),
                         "student": (pair.student,), "method": (method,), "kind": (kind,), "seed": (str(seed),)}))
    summarize_applied(applied, f"grid {cfg.out}")
    return runs


def parse_only(spec: str | Sequence[str] | None) -> dict[str, set[str]]:
    """``"method=kd|dkd,pair=resnet56-resnet20"`` -> ``{"method": {"kd", "dkd"}, "pair": {...}}``.

    Clauses are separated by commas (or given as several strings); ``|`` separates alternatives;
    a key given twice accepts the values of both. Keys: pair, teacher, student, method, kind,
    seed, stage (teacher, baseline, student)."""
    items = [spec] if isinstance(spec, str) else list(spec or [])
    out: dict[str, set[str]] = {}
    for item in items:
        for clause in item.split(","):
            clause = clause.strip()
            if not clause:
                continue
            if "=" not in clause:
                raise ConfigError(f"--only clause {clause!r} must look like key=value (keys: {', '.join(FILTER_KEYS)})")
            key, value = (s.strip() for s in clause.split("=", 1))
            if key not in FILTER_KEYS:
                raise ConfigError(f"--only: unknown key {key!r}; keys: {', '.join(FILTER_KEYS)}")
            values = {v.strip() for v in value.split("|") if v.strip()}
            if not values:
                raise ConfigError(f"--only clause {clause!r} has no value")
            out.setdefault(key, set()).update(values)
    return out


def _matches(run: PlannedRun, only: Mapping[str, set[str]]) -> bool:
    labels = dict(run.labels)
    if run.stage in ("teacher", "mcmi", "prep"):
        labels["stage"] = ("teacher",)
    return all(any(v in values for v in labels.get(k, ())) for k, values in only.items())


def select_runs(runs: Sequence[PlannedRun], only: Mapping[str, set[str]] | None) -> list[PlannedRun]:
    """The runs matching ``only`` (all when empty) plus the runs they depend on, in grid order.

    Without a ``stage`` clause only students and baselines are matched; teachers come in as
    dependencies. ``stage=teacher`` selects teacher runs (MLL, MCMI, preparations) directly."""
    if not only:
        return list(runs)
    by_key = {r.key: r for r in runs}
    direct = [r for r in runs
              if (r.stage in ("student", "baseline") or "stage" in only) and _matches(r, only)]
    for key, values in only.items():
        known = {v for r in runs for v in (("teacher",) if key == "stage" and r.stage in ("teacher", "mcmi", "prep")
                                          else r.labels.get(key, ()))}
        unknown = sorted(values - known)
        if unknown:
            raise ConfigError(f"--only {key}={unknown[0]} matches nothing in this grid; known: {', '.join(sorted(known))}")
    wanted: set[str] = set()
    stack = [r.key for r in direct]
    while stack:
        key = stack.pop()
        if key in wanted:
            continue
        wanted.add(key)
        stack.extend(by_key[key].deps)
    return [r for r in runs if r.key in wanted]


# ---------------------------------------------------------------------------------- status
_VOLATILE = ("out", "device", "model.weights", "teacher.weights", "train.progress", "train.log_tensorboard",
             "data.root", "data.eval_batch_size") + tuple(f"method_args.{p.arg}" for p in TEACHER_PREP.values())


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    if isinstance(d, tuple):
        d = list(d)
    return {prefix[:-1]: d}


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def run_status(run: PlannedRun) -> str:
    """``done`` (summary.json), ``partial`` (a checkpoint to resume from) or ``todo``."""
    d = run.out_dir
    if (d / "summary.json").is_file():
        return "done"
    if (d / "last.pt").is_file() or (d / "last.prev.pt").is_file():
        return "partial"
    return "todo"


def config_drift(run: PlannedRun, summary: Mapping[str, Any] | None = None) -> list[str]:
    """Settings of a finished run that differ from what the grid now asks (paths, device and
    progress bars aside): a done run is never retrained, so a changed recipe shows up here."""
    summary = summary if summary is not None else read_summary(run.out_dir)
    stored = ((summary or {}).get("config") or {}).get("run")
    if not isinstance(stored, Mapping):
        return []
    from mcmi.engine.state import jsonable

    want = _flatten(jsonable(asdict(run.config)))
    have = _flatten(stored)
    skip = lambda k: any(k == v or k.startswith(v + ".") for v in _VOLATILE)  # noqa: E731
    # keys on one side only count for method arguments (user data); elsewhere they are fields
    # added to RunConfig after the run, not changes of its recipe
    keys = (want.keys() & have.keys()) | {k for k in want.keys() ^ have.keys() if k.startswith("method_args.")}
    missing = object()
    return sorted(k for k in keys if not skip(k) and want.get(k, missing) != have.get(k, missing))


def _error_note(run: PlannedRun) -> str:
    p = run.out_dir / "error.txt"
    if not p.is_file():
        return ""
    first = p.read_text(errors="replace").strip().splitlines()
    return f"last attempt failed: {first[0][:160]}" if first else "last attempt failed"


def format_plan(runs: Sequence[PlannedRun]) -> str:
    """The ``--dry-run`` listing: one line per run with its status (done / partial / todo) and
    notes (a changed recipe, the last error, the process training it now)."""
    from mcmi.engine.lock import describe, lock_holder

    lines = []
    counts: dict[str, int] = {}
    for i, run in enumerate(runs, 1):
        status = run_status(run)
        counts[status] = counts.get(status, 0) + 1
        notes = []
        if status == "done":
            drift = config_drift(run)
            if drift:
                notes.append("recipe changed since: " + ", ".join(drift[:4]) + (" ..." if len(drift) > 4 else ""))
        else:
            holder = lock_holder(run.out_dir)
            if holder is not None:
                notes.append(f"training now: {describe(holder)}")
            note = _error_note(run)
            if note:
                notes.append(note)
        lines.append(f"{i:5d}  {status:7s}  {run.key}" + (f"  ({'; '.join(notes)})" if notes else ""))
    total = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("done", "partial", "todo"))
    lines.append(f"{len(runs)} runs: {total}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- running
def evaluate_teacher(run: PlannedRun, checkpoint: str = "last", view: str | None = None,
                     seed: int | None = None) -> dict[str, Any]:
    """Accuracy, LL and CMI of a teacher checkpoint on the training set (the paper reports its
    teachers' LL and CMI over the training set) in ``view`` (default ``run.eval_view``:
    ``train-plain`` unaugmented, or ``train-augmented`` with draws from ``seed``, default
    ``run.eval_seed``; :mod:`mcmi.metrics.train_view`), and its test accuracy. The result
    records the view (``view``, ``view_seed``)."""
    import torch

    from mcmi.data import dataset_stats
    from mcmi.experiments.train import load_datasets, resolve_device
    from mcmi.metrics import evaluate
    from mcmi.metrics.train_view import check_view, train_view_loader
    from mcmi.models.io import load_model

    view = check_view(view or run.eval_view, "view")
    seed = run.eval_seed if seed is None else int(seed)
    spec = run.config.data
    dev = resolve_device(run.config.device)
    train, _ = load_datasets(spec)  # the task the teacher was trained on (class_groups, subset)
    stats = dataset_stats(train, root=spec.root)
    path = run.out_dir / f"{checkpoint}.pt"
    model = load_model(path, num_classes=train.num_classes, normalization=(stats.mean, stats.std)).to(dev)
    loader = train_view_loader(train, view, spec.eval_batch_size, device=dev, stats=(stats.mean, stats.std),
                               seed=seed)
    with torch.no_grad():
        res = evaluate(model, loader, train.num_classes, dev)
    summary = read_summary(run.out_dir) or {}
    test_acc = summary.get("last_acc") if checkpoint == "last" else summary.get("best_acc")
    return {"checkpoint": str(path), "view": view, "view_seed": seed if view == "train-augmented" else None,
            "train": res.as_dict(), "test_acc": test_acc,
            "best_acc": summary.get("best_acc"), "last_acc": summary.get("last_acc")}


def teacher_eval_stale(run: PlannedRun, checkpoint: str | None = None) -> bool:
    """Whether a teacher's ``teacher_eval.json`` is missing, unreadable, or of another view (or
    seed) than ``run`` asks, or (given ``checkpoint``) of another checkpoint file."""
    from mcmi.metrics.train_view import view_of

    path = run.out_dir / "teacher_eval.json"
    try:
        ev = json.loads(path.read_text())
    except (OSError, ValueError):
        return True
    want = (run.eval_view, run.eval_seed if run.eval_view == "train-augmented" else None)
    if view_of(ev) != want:
        return True
    return checkpoint is not None and not str(ev.get("checkpoint", "")).endswith(f"{checkpoint}.pt")


def _write_error(run: PlannedRun, err: BaseException) -> str:
    from mcmi.io import write_text

    msg = f"{type(err).__name__}: {err}"
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    try:
        write_text(run.out_dir / "error.txt", f"{msg}\n\n{tb}")
    except OSError:  # the folder itself may be the problem; the outcome still says what failed
        log.exception("cannot write %s", run.out_dir / "error.txt")
    return msg


def run_grid(cfg: Table1Config, runs: Sequence[PlannedRun]) -> list[RunOutcome]:
    """Train ``runs`` in order: done ones are skipped, partial ones resume, a failure is recorded
    (``error.txt``) and blocks only the runs that need its checkpoint."""
    from mcmi.experiments.train import run_training
    from mcmi.io import write_json

    failed: set[str] = set()
    outcomes: list[RunOutcome] = []
    n = len(runs)
    for i, run in enumerate(runs, 1):
        if getattr(run, "members", None) is not None:  # a cohort (mcmi.experiments.cohort)
            from mcmi.experiments.cohort import run_unit

            outcomes += run_unit(run, cfg.out, failed)  # type: ignore[arg-type]
            continue
        before = run_status(run)
        tag = f"table1 [{i}/{n}] {run.key}"
        needs_eval = run.stage in ("teacher", "mcmi") and teacher_eval_stale(run)
        if before == "done" and not needs_eval:
            drift = config_drift(run)
            if drift:
                log.warning("%s: done, skipped, but its recipe changed since: %s (delete the folder to retrain)",
                            tag, ", ".join(drift))
            else:
                log.info("%s: done, skipped", tag)
            outcomes.append(RunOutcome(run.key, before, "skipped"))
            continue
        blocked = [d for d in run.deps if d in failed or read_summary(Path(cfg.out) / d) is None]
        if blocked:
            msg = f"needs {blocked[0]}, which did not finish"
            log.error("%s: blocked: %s", tag, msg)
            failed.add(run.key)
            outcomes.append(RunOutcome(run.key, before, "blocked", msg))
            continue
        t0 = time.perf_counter()
        try:
            if before != "done":
                log.info("%s: %s, training", tag, before)
                run_training(run.config, resume=True)
            if run.stage in ("teacher", "mcmi"):
                write_json(run.out_dir / "teacher_eval.json", evaluate_teacher(run, cfg.teacher_checkpoint))
        except Exception as err:  # noqa: BLE001 -- one failing run must not stop the grid
            msg = _write_error(run, err)
            log.error("%s: failed: %s (details in %s)", tag, msg, run.out_dir / "error.txt")
            failed.add(run.key)
            outcomes.append(RunOutcome(run.key, before, "failed", msg, time.perf_counter() - t0))
            continue
        (run.out_dir / "error.txt").unlink(missing_ok=True)
        outcomes.append(RunOutcome(run.key, before, "done" if before != "done" else "skipped", "",
                                   time.perf_counter() - t0))
    return outcomes


def load_table1_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Table1Config:
    """:func:`mcmi.config.load_config` for :class:`Table1Config` (a thin alias for callers)."""
    from mcmi.config import load_config

    return load_config(Table1Config, path, overrides)


def train_runs(cfg: Table1Config, runs: Sequence[PlannedRun], workers: int | None = None,
               cohort: bool = False) -> list[RunOutcome]:
    """Train ``runs`` of grid ``cfg``: one after another in this process (:func:`run_grid`), or
    ``workers`` at a time as local jobs of the sweep engine (:func:`mcmi.experiments.sweep.run_sweep`,
    each with cores / workers torch threads, at most ``OMP_NUM_THREADS``). Finished runs are skipped
    either way. With ``cohort`` the students of one teacher and seed train together, one teacher
    forward per batch (:mod:`mcmi.experiments.cohort`; one job per cohort), into the same run
    folders. Outcomes: one per run, in the order of ``runs``."""
    units: Sequence[Any] = runs
    if cohort:
        from mcmi.experiments.cohort import group_cohorts

        units = group_cohorts(runs)
    if not workers:
        outcomes = run_grid(cfg, units)
    else:
        from mcmi.experiments.sweep import ExecutorSpec, run_sweep

        outcomes = run_sweep(units, ExecutorSpec(workers=workers), folder=Path(cfg.out) / ".submitit",
                             teacher_checkpoint=cfg.teacher_checkpoint)
    order = {r.key: i for i, r in enumerate(runs)}
    return sorted(outcomes, key=lambda o: order.get(o.key, len(order)))


def run_table1(cfg: Table1Config, only: str | Sequence[str] | None = None, command: str = "",
               report: bool = True) -> tuple[list[RunOutcome], Path | None]:
    """Expand, filter, train, and write the report of the whole grid (``out/README.md`` and
    ``out/results.json``). Returns the outcomes and the report path."""
    runs = expand_grid(cfg)
    selected = select_runs(runs, parse_only(only))
    outcomes = run_grid(cfg, selected)
    path = None
    if report:
        from mcmi.reports.table1 import write_table1_report

        path = write_table1_report(cfg, runs, command=command, outcomes=outcomes)
    return outcomes, path


def outcome_counts(outcomes: Sequence[RunOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


__all__ = [
    "PairSpec", "PlannedRun", "RunOutcome", "SMALL_LR_STUDENTS", "TABLE6_LAMBDA", "TEACHER_KINDS", "TEACHER_PREP",
    "Table1Config", "config_drift", "evaluate_teacher", "expand_grid", "format_plan", "load_table1_config",
    "grid_method_args", "outcome_counts", "parse_only", "recipe_data", "run_grid", "run_status", "run_table1",
    "select_runs", "student_method_args", "teacher_eval_stale", "train_runs",
]
