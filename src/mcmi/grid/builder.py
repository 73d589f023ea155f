"""The runs every grid is made of: a teacher, its MCMI fine-tune, the preparations its students'
methods need, and students (with or without the teacher), each a
:class:`~mcmi.experiments.train.RunConfig` built from the grid's recipes.

Folders, under a grid's ``out`` and an optional prefix (a binary task, a semi-supervised cell)::

    teachers/<arch>/mll                      MLL teacher (teacher_recipe), trained once per arch
    teachers/<arch>/mcmi                     MCMI fine-tune of mll/last.pt (mcmi_recipe, lambda)
    teachers/<arch>/<kind>+<prep method>     a method's teacher preparation (HSAKD's heads:
                                             heads_recipe), only when such a method is in the grid
    students/<student>/baseline/seed<k>      the student without a teacher
    students/<teacher>-<student>/<method>/<kind>/seed<k>

Student settings, lowest precedence first: the student defaults of
:mod:`mcmi.experiments.student_defaults` (lr 0.01 for MobileNetV2/ShuffleNets; DKD's and
ReviewKD's per-pair weights), the student recipe's explicit settings, ``student_lr[student]``,
``method_args[method]``, ``pair_method_args["<teacher>-<student>"][method]``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from mcmi.config import build
from mcmi.experiments.student_defaults import (
    apply_student_defaults,
    recipe_explicit_keys,
    summarize_applied,
)
from mcmi.experiments.train import RunConfig
from mcmi.grid.plan import PlannedRun, TeacherEval
from mcmi.recipes import load_recipe
from mcmi.reports.paper import PAPER_TABLE6_LAMBDA as TABLE6_LAMBDA
from mcmi.reports.paper import PAPER_TABLE6_LAMBDA_CIFAR10 as TABLE6_LAMBDA_CIFAR10

TEACHER_KINDS = ("mll", "mcmi")

def table6_lambdas(data_name: str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Lambda per teacher: Table 6's values for the data set (CIFAR-10's row over CIFAR-100's),
    then ``overrides``."""
    out = dict(TABLE6_LAMBDA)
    if data_name == "cifar10":
        out.update(TABLE6_LAMBDA_CIFAR10)
    return {**out, **(overrides or {})}


@dataclass
class PairSpec:
    """One teacher -> student pair of registered architecture names."""

    teacher: str
    student: str

    @property
    def name(self) -> str:
        return f"{self.teacher}-{self.student}"


def teacher_prep(method: str) -> Any:
    """The preparation run ``method`` needs on each teacher (``Method.teacher_prep``), or None."""
    from mcmi.methods import method_class

    return getattr(method_class(method), "teacher_prep", None)


def unique(seq):
    return list(dict.fromkeys(seq))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


class RunBuilder:
    """Builds the planned runs of one grid config ``cfg`` (fields read: the recipes
    ``teacher_recipe``, ``mcmi_recipe``, ``student_recipe``, ``heads_recipe`` (if any),
    ``data``, ``device``, ``out``, ``teacher_seed``, ``teacher_checkpoint``, ``teacher_eval_view``,
    ``teacher_eval_seed``, ``student_lr``, ``method_args``, ``pair_method_args`` (if any),
    ``use_pair_defaults`` (if any)). Each recipe is read once; :meth:`finish` logs the student
    defaults applied over the whole grid."""

    def __init__(self, cfg: Any, where: str) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.where = where
        self.pair_weights = getattr(cfg, "use_pair_defaults", True)
        self._recipes: dict[str, dict[str, Any]] = {}
        self._explicit: dict[str, set[str]] = {}
        self.applied: list = []
        self.evaluate = TeacherEval(cfg.teacher_checkpoint, cfg.teacher_eval_view, cfg.teacher_eval_seed)

    # ------------------------------------------------------------------------------ recipes
    def recipe(self, field: str) -> dict[str, Any]:
        if field not in self._recipes:
            self._recipes[field] = load_recipe(getattr(self.cfg, field))
        return self._recipes[field]

    def explicit(self, field: str) -> set[str]:
        """What the recipe sets itself (the student defaults yield to it)."""
        if field not in self._explicit:
            self._explicit[field] = recipe_explicit_keys(getattr(self.cfg, field))
        return self._explicit[field]

    def method_args(self, pair: PairSpec, method: str) -> dict[str, Any]:
        """The arguments of ``method`` for ``pair`` that the grid sets: method_args <
        pair_method_args (explicit settings: the student defaults never replace them)."""
        args: dict[str, Any] = dict(self.cfg.method_args.get(method, {}) or {})
        per_pair = getattr(self.cfg, "pair_method_args", {}) or {}
        args.update((per_pair.get(pair.name, {}) or {}).get(method, {}) or {})
        return args

    def config(self, recipe: Mapping[str, Any], key: str, *, model: dict[str, Any], method: str,
               method_args: dict[str, Any] | None, teacher: dict[str, Any] | None, seed: int,
               lr: float | None = None, data: Any = None, recipe_name: str = "",
               student_explicit: set[str] | None = None) -> RunConfig:
        """The RunConfig of one run: the loaded ``recipe`` with what the grid decides set on top.

        ``student_explicit`` (students and student baselines: the keys the student recipe sets
        explicitly) applies the student defaults for what neither the recipe, ``lr`` nor
        ``method_args`` set."""
        cfg = self.cfg
        d = dict(recipe)
        train = dict(d.get("train") or {})
        train["seed"] = seed
        if lr is not None:
            train["lr"] = lr
        d.update(model=model, method=method, teacher=teacher, data=asdict(data if data is not None else cfg.data),
                 train=train, device=cfg.device, out=str(self.out / key))
        if method_args is not None:
            d["method_args"] = method_args
        if student_explicit is not None:
            explicit = {k for k in student_explicit if not k.startswith("method_args.")} if method_args is not None \
                else set(student_explicit)
            explicit |= {f"method_args.{k}" for k in method_args or {}} | ({"train.lr"} if lr is not None else set())
            done = apply_student_defaults(d, explicit, student_run=True, pair_weights=self.pair_weights,
                                          where=key, quiet=True)
            self.applied += [(model["name"], (teacher or {}).get("name"), method, x) for x in done]
        return build(RunConfig, d, source=f"{self.where} {recipe_name or 'recipe'} for {key}")

    # --------------------------------------------------------------------------------- runs
    def teacher(self, key: str, arch: str, labels: Mapping[str, tuple[str, ...]], *, method: str = "mll",
                recipe: Mapping[str, Any] | None = None, recipe_name: str = "teacher_recipe",
                method_args: dict[str, Any] | None = None, init: str | None = None, data: Any = None) -> PlannedRun:
        """A teacher trained from scratch, or fine-tuned from the last checkpoint of run ``init``
        (stage ``mcmi``); it is evaluated on its training set once trained."""
        model: dict[str, Any] = {"name": arch}
        if init is not None:
            model["weights"] = str(self.out / init / "last.pt")
        config = self.config(recipe if recipe is not None else self.recipe(recipe_name), key, model=model,
                             method=method, method_args=method_args, teacher=None, seed=self.cfg.teacher_seed,
                             data=data, recipe_name=recipe_name)
        return PlannedRun(key, "mcmi" if init else "teacher", config, (init,) if init else (), dict(labels),
                          self.evaluate)

    def teacher_chain(self, arch: str, kinds: list[str], methods: list[str], lam: float, *, prefix: str = "",
                      labels: Mapping[str, tuple[str, ...]] | None = None, data: Any = None) -> list[PlannedRun]:
        """``arch``'s MLL teacher, its MCMI fine-tune (when ``mcmi`` is in ``kinds``; ``lam``) and
        the preparation runs of ``methods`` on each kind."""
        labels = dict(labels or {})
        mll = _join(prefix, f"teachers/{arch}/mll")
        runs = [self.teacher(mll, arch, {**labels, "kind": ("mll",)}, data=data)]
        if "mcmi" in kinds:
            args = dict(self.recipe("mcmi_recipe").get("method_args") or {})
            args["lam"] = lam
            runs.append(self.teacher(_join(prefix, f"teachers/{arch}/mcmi"), arch, {**labels, "kind": ("mcmi",)},
                                     method="mcmi", recipe_name="mcmi_recipe", method_args=args, init=mll, data=data))
        preps = unique(p for p in (teacher_prep(m) for m in methods) if p is not None)
        ckpt = f"{self.cfg.teacher_checkpoint}.pt"
        for kind in kinds:
            for prep in preps:
                key = _join(prefix, f"teachers/{arch}/{kind}+{prep.method}")
                src = _join(prefix, f"teachers/{arch}/{kind}")
                config = self.config(self.recipe(prep.recipe_field), key,
                                     model={"name": arch, "weights": str(self.out / src / ckpt)},
                                     method=prep.method, method_args=None, teacher=None, seed=self.cfg.teacher_seed,
                                     data=data, recipe_name=prep.recipe_field)
                runs.append(PlannedRun(key, "prep", config, (src,), {**labels, "kind": (kind,)}))
        return runs

    def baseline(self, student: str, seed: int, labels: Mapping[str, tuple[str, ...]], *, prefix: str = "",
                 data: Any = None) -> PlannedRun:
        """The student trained alone (Table 1's student row)."""
        key = _join(prefix, f"students/{student}/baseline/seed{seed}")
        config = self.config(self.recipe("student_recipe"), key, model={"name": student}, method="mll",
                             method_args={}, teacher=None, seed=seed, lr=self.cfg.student_lr.get(student),
                             data=data, recipe_name="student_recipe", student_explicit=self.explicit("student_recipe"))
        return PlannedRun(key, "baseline", config, (), dict(labels))

    def student(self, pair: PairSpec, method: str, kind: str, seed: int, *, prefix: str = "",
                key: str | None = None, labels: Mapping[str, tuple[str, ...]] | None = None,
                data: Any = None) -> PlannedRun:
        """A student of ``pair.teacher``'s ``kind`` teacher (under ``prefix``) distilled with
        ``method``; ``key`` defaults to ``students/<pair>/<method>/<kind>/seed<k>`` under ``prefix``."""
        teacher = _join(prefix, f"teachers/{pair.teacher}/{kind}")
        args = self.method_args(pair, method)
        deps = [teacher]
        prep = teacher_prep(method)
        if prep is not None and prep.arg not in args:
            deps.append(f"{teacher}+{prep.method}")
            args[prep.arg] = str(self.out / deps[-1] / "last.pt")
        key = key or _join(prefix, f"students/{pair.name}/{method}/{kind}/seed{seed}")
        config = self.config(self.recipe("student_recipe"), key, model={"name": pair.student}, method=method,
                             method_args=args,
                             teacher={"name": pair.teacher,
                                      "weights": str(self.out / teacher / f"{self.cfg.teacher_checkpoint}.pt")},
                             seed=seed, lr=self.cfg.student_lr.get(pair.student), data=data,
                             recipe_name="student_recipe", student_explicit=self.explicit("student_recipe"))
        run_labels = {"stage": ("student",), "pair": (pair.name,), "teacher": (pair.teacher,),
                      "student": (pair.student,), "method": (method,), "kind": (kind,), "seed": (str(seed),)}
        return PlannedRun(key, "student", config, tuple(deps), {**run_labels, **(labels or {})})

    def finish(self) -> None:
        summarize_applied(self.applied, f"grid {self.cfg.out}")


def pair_grid(builder: RunBuilder, pairs: list[PairSpec], *, methods: list[str], kinds: list[str], seeds: list[int],
              lam: Callable[[str], float], baseline: bool = False, prefix: str = "",
              labels: Mapping[str, tuple[str, ...]] | None = None, teacher_data: Any = None,
              student_data: Any = None) -> list[PlannedRun]:
    """Paper Table 1's grid of ``pairs`` in execution order: teachers, MCMI fine-tunes, teacher
    preparations, student baselines (``baseline``), then students seed by seed (seed 0 of every
    cell first, so an interrupted grid already compares MLL and MCMI everywhere). ``labels`` are
    added to every run; the teachers and baselines train on ``teacher_data`` (default the grid's
    data), the students on ``student_data``."""
    labels = dict(labels or {})
    runs: list[PlannedRun] = []
    for arch in unique(p.teacher for p in pairs):
        tl = {"stage": ("teacher",), "teacher": (arch,), "pair": tuple(p.name for p in pairs if p.teacher == arch)}
        runs += builder.teacher_chain(arch, kinds, methods, lam(arch), prefix=prefix, labels={**tl, **labels},
                                      data=teacher_data)
    if baseline:
        for seed in seeds:
            for student in unique(p.student for p in pairs):
                of = [p for p in pairs if p.student == student]
                bl = {"stage": ("baseline",), "student": (student,), "seed": (str(seed),), "method": ("baseline",),
                      "pair": tuple(p.name for p in of), "teacher": tuple(p.teacher for p in of)}
                runs.append(builder.baseline(student, seed, {**bl, **labels}, prefix=prefix, data=teacher_data))
    for seed in seeds:
        for pair in pairs:
            for method in methods:
                for kind in kinds:
                    runs.append(builder.student(pair, method, kind, seed, prefix=prefix, labels=labels,
                                                data=student_data))
    return runs


__all__ = ["PairSpec", "RunBuilder", "TABLE6_LAMBDA", "TABLE6_LAMBDA_CIFAR10", "TEACHER_KINDS", "pair_grid",
           "table6_lambdas", "teacher_prep", "unique"]
