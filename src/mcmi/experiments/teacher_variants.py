"""Teacher variants: which teacher makes the better student (paper Table 4, Table 7, Figs. 5 and 7).

A grid of *variants* of a teacher, each distilled into the same student by the same methods over
the same seeds, reported side by side with the teacher's test accuracy and its train-set LL, CMI
and mean output entropy. One mechanism covers the paper's teacher studies:

- Table 7, the lambda of the MCMI fine-tune: variants ``method: mcmi`` with ``method_args: {lam: ...}``
  fine-tuned from the MLL teacher (``init: mll``); lambda = 0 is the same fine-tune with plain
  cross-entropy (``method: mll``), the control that separates the CMI term from the extra epochs;
- Fig. 7 (A.4.2), regularizers against CMI: ``method: mll`` with ``label_smoothing`` or
  ``confidence_penalty`` (entropy regularizer);
- Table 4 (A.3), early-stopped teachers: a from-scratch variant whose recipe stops early
  (``recipe_overrides: {train: {epochs: ...}}``);
- Fig. 5 (A.2), teacher size: variants with another ``arch``, each with its MCMI fine-tune.

A variant named like a Table 1 teacher kind (``mll``, ``mcmi``) with the same recipe is the same
run as Table 1's: teachers live at ``out/teachers/<arch>/<variant>`` and students at
``out/students/<arch>-<student>/<method>/<variant>/seed<k>``, the layout of
:mod:`mcmi.experiments.table1`, so pointing ``out`` at a Table 1 grid reuses its finished runs.
The report goes to ``out/<name>/``.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mcmi.experiments.table1 import PairSpec, PlannedRun, RunOutcome, Table1Config
from mcmi.experiments.train import DataSpec

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class TeacherVariant:
    """One teacher: trained from scratch (``init`` None, default recipe ``teacher_recipe``) or
    fine-tuned from the last checkpoint of the variant named ``init`` (default recipe
    ``mcmi_recipe``). ``recipe_overrides`` is deep-merged over the recipe; ``group`` labels the
    report's sections (e.g. ``lambda``, ``regularizer``)."""

    name: str
    method: str = "mll"  # "mll" | "mcmi"
    method_args: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    arch: str | None = None  # default: the grid's teacher
    recipe: str | dict[str, Any] | None = None
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    group: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or "+" in self.name:
            raise ValueError(f"variant name {self.name!r}: use letters, digits, '.', '_', '-' (it names folders)")
        if self.method not in ("mll", "mcmi"):
            raise ValueError(f"variant {self.name!r}: method must be 'mll' or 'mcmi', got {self.method!r}")
        if self.method == "mcmi" and self.init is None:
            raise ValueError(f"variant {self.name!r}: an MCMI teacher fine-tunes a pretrained one: set init")


@dataclass
class TeacherVariantsConfig:
    """Variants of ``teacher`` -> ``student`` x ``methods`` x ``seeds`` (see the module notes)."""

    variants: list[TeacherVariant] = field(default_factory=list)
    teacher: str = "resnet56"
    student: str = "resnet20"
    methods: list[str] = field(default_factory=lambda: ["kd"])
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: str | None = None  # the variant gains are measured against (default: the first)
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"
    teacher_eval_view: str = "train-plain"  # teachers' train figures: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0  # the augmentation draws of the train-augmented view
    device: str = "auto"
    out: str = "runs/teacher_variants"
    name: str = "teacher_variants"

    def __post_init__(self) -> None:
        from mcmi.experiments.table1 import TEACHER_PREP

        names = [v.name for v in self.variants]
        if not names:
            raise ValueError("variants must list at least one teacher")
        if len(set(names)) != len(names):
            raise ValueError(f"variants: a name is used twice: {names}")
        for v in self.variants:
            if v.init is not None:
                if v.init not in names:
                    raise ValueError(f"variant {v.name!r}: init {v.init!r} is not a variant")
                if names.index(v.init) >= names.index(v.name):
                    raise ValueError(f"variant {v.name!r}: its init {v.init!r} must be listed before it")
                if self.arch_of(v) != self.arch_of(self.variant(v.init)):
                    raise ValueError(f"variant {v.name!r}: fine-tunes {v.init!r} of another architecture")
        if self.reference is not None and self.reference not in names:
            raise ValueError(f"reference {self.reference!r} is not a variant")
        needs_prep = [m for m in self.methods if m in TEACHER_PREP]
        if needs_prep:
            raise ValueError(f"method {needs_prep[0]!r} needs a prepared teacher (auxiliary heads); "
                             "teacher variants support methods without one")
        self.grid()  # methods, seeds, checkpoint choice

    def variant(self, name: str) -> TeacherVariant:
        return next(v for v in self.variants if v.name == name)

    def arch_of(self, v: TeacherVariant) -> str:
        return v.arch or self.teacher

    @property
    def reference_name(self) -> str:
        return self.reference or self.variants[0].name

    def grid(self) -> Table1Config:
        """The Table 1 grid the runs are built with (data, device, out, student lr, method args)."""
        pairs = [PairSpec(a, self.student) for a in dict.fromkeys(self.arch_of(v) for v in self.variants)]
        return Table1Config(pairs=pairs, methods=list(self.methods), seeds=list(self.seeds), data=self.data,
                            teacher_recipe=self.teacher_recipe, mcmi_recipe=self.mcmi_recipe,
                            student_recipe=self.student_recipe, student_lr=dict(self.student_lr),
                            method_args=dict(self.method_args), teacher_seed=self.teacher_seed,
                            teacher_checkpoint=self.teacher_checkpoint, teacher_eval_view=self.teacher_eval_view,
                            teacher_eval_seed=self.teacher_eval_seed, device=self.device, out=self.out)


def expand(cfg: TeacherVariantsConfig) -> list[PlannedRun]:
    """Teachers in list order (fine-tunes after what they start from), then students seed by seed."""
    from mcmi.config import deep_merge
    from mcmi.experiments.student_defaults import recipe_explicit_keys, summarize_applied
    from mcmi.experiments.table1 import (
        _run_config,
        grid_method_args,
        recipe_data,
        student_key,
        teacher_key,
    )

    grid = cfg.grid()
    out = Path(cfg.out)
    ckpt = f"{cfg.teacher_checkpoint}.pt"
    runs: list[PlannedRun] = []
    for v in cfg.variants:
        arch = cfg.arch_of(v)
        recipe = recipe_data(v.recipe or (cfg.mcmi_recipe if v.init else cfg.teacher_recipe))
        recipe = deep_merge(recipe, v.recipe_overrides) if v.recipe_overrides else recipe
        # the recipe's method_args belong to its own method (the MCMI recipe's lam, centroids)
        base_args = (recipe.get("method_args") or {}) if recipe.get("method", v.method) == v.method else {}
        args = {**base_args, **v.method_args}
        model: dict[str, Any] = {"name": arch}
        deps: tuple[str, ...] = ()
        if v.init:
            model["weights"] = str(out / teacher_key(arch, v.init) / "last.pt")
            deps = (teacher_key(arch, v.init),)
        key = teacher_key(arch, v.name)
        runs.append(PlannedRun(
            key, "mcmi" if v.init else "teacher",
            _run_config(grid, recipe, key, model=model, method=v.method, method_args=args, teacher=None,
                        seed=cfg.teacher_seed, recipe_name=f"variant {v.name}"),
            deps, {"stage": ("teacher",), "teacher": (arch,), "kind": (v.name,),
                   "pair": (PairSpec(arch, cfg.student).name,)}, cfg.teacher_eval_view, cfg.teacher_eval_seed))
    student_recipe = recipe_data(cfg.student_recipe)
    student_explicit = recipe_explicit_keys(cfg.student_recipe)
    applied: list = []
    for seed in cfg.seeds:
        for v in cfg.variants:
            pair = PairSpec(cfg.arch_of(v), cfg.student)
            for method in cfg.methods:
                key = student_key(pair, method, v.name, seed)
                runs.append(PlannedRun(
                    key, "student",
                    _run_config(grid, student_recipe, key, model={"name": cfg.student}, method=method,
                                method_args=grid_method_args(grid, pair, method),
                                teacher={"name": pair.teacher, "weights": str(out / teacher_key(pair.teacher, v.name) / ckpt)},
                                seed=seed, lr=grid.student_lr.get(cfg.student), recipe_name="student_recipe",
                                student_explicit=student_explicit, applied=applied),
                    (teacher_key(pair.teacher, v.name),),
                    {"stage": ("student",), "pair": (pair.name,), "teacher": (pair.teacher,), "student": (cfg.student,),
                     "method": (method,), "kind": (v.name,), "seed": (str(seed),)}))
    summarize_applied(applied, f"teacher variants {cfg.out}")
    return runs


def plan(cfg: TeacherVariantsConfig, only: Sequence[str] | str | None = None) -> list[PlannedRun]:
    """The runs ``--only`` selects (keys of Table 1's filter; ``kind`` is the variant name)."""
    from mcmi.experiments.table1 import parse_only, select_runs

    items = [only] if isinstance(only, str) else list(only or [])
    return select_runs(expand(cfg), parse_only(",".join(items)) if items else {})


def ensure_teacher_evals(cfg: TeacherVariantsConfig, runs: Sequence[PlannedRun]) -> None:
    """Train-set accuracy, LL, CMI and entropy of every finished teacher (``teacher_eval.json``) in
    the view ``cfg.teacher_eval_view`` (:mod:`mcmi.metrics.train_view`); evaluations of another
    view or checkpoint, or written before the entropy was measured, are redone."""
    import json

    from mcmi.experiments.table1 import evaluate_teacher, read_summary, teacher_eval_stale
    from mcmi.io import write_json

    for run in runs:
        if run.stage == "student" or read_summary(run.out_dir) is None:
            continue
        path = run.out_dir / "teacher_eval.json"
        try:
            ev = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            ev = {}
        if "entropy" not in (ev.get("train") or {}) or teacher_eval_stale(run, cfg.teacher_checkpoint):
            log.info("%s: evaluating the teacher on the training set (view %s)", run.key, run.eval_view)
            write_json(path, evaluate_teacher(run, cfg.teacher_checkpoint))


def run_teacher_variants(cfg: TeacherVariantsConfig, only: str | Sequence[str] | None = None, command: str = "",
                         report_only: bool = False, workers: int | None = None,
                         cohort: bool = False):
    """Train the selected runs (finished ones skipped), evaluate the teachers, write the report.
    Returns (all runs, outcomes, report path)."""
    from mcmi.experiments.table1 import train_runs

    runs = expand(cfg)
    outcomes: list[RunOutcome] = []
    if not report_only:
        outcomes = train_runs(cfg.grid(), plan(cfg, only), workers, cohort=cohort)
    ensure_teacher_evals(cfg, runs)
    return runs, outcomes, write_report(cfg, runs, command, outcomes)


def collect(cfg: TeacherVariantsConfig, runs: Sequence[PlannedRun]) -> list[dict[str, Any]]:
    """One row per variant: its teacher's numbers and its students' accuracies per method."""
    import json

    from mcmi.experiments.table1 import read_summary, teacher_key

    pct = lambda x: None if x is None else 100 * float(x)  # noqa: E731
    rows = []
    for v in cfg.variants:
        d = Path(cfg.out) / teacher_key(cfg.arch_of(v), v.name)
        s = read_summary(d) or {}
        try:
            ev = json.loads((d / "teacher_eval.json").read_text())
        except (OSError, ValueError):
            ev = {}
        train = ev.get("train") or {}
        row: dict[str, Any] = {
            "variant": v.name, "group": v.group, "arch": cfg.arch_of(v), "method": v.method,
            "method_args": v.method_args, "init": v.init, "epochs": s.get("epochs"),
            "teacher_acc": pct(s.get(f"{cfg.teacher_checkpoint}_acc")), "train_acc": pct(train.get("accuracy")),
            "train_ll": train.get("log_likelihood"), "train_cmi": train.get("cmi"), "train_entropy": train.get("entropy"),
            "train_view": (ev.get("view") or "train-plain") if train else None,
            "train_view_seed": ev.get("view_seed") if train else None, "students": {}}
        for method in cfg.methods:
            per_seed = []
            for r in runs:
                if r.stage == "student" and r.label("kind") == v.name and r.label("method") == method:
                    ss = read_summary(r.out_dir)
                    if ss is not None:
                        per_seed.append({"seed": int(r.label("seed")), "best": pct(ss.get("best_acc")),
                                         "last": pct(ss.get("last_acc"))})
            row["students"][method] = sorted(per_seed, key=lambda e: e["seed"])
        rows.append(row)
    return rows


def write_report(cfg: TeacherVariantsConfig, runs: Sequence[PlannedRun], command: str = "",
                 outcomes: Sequence[RunOutcome] = ()) -> Path:
    """``out/<name>/README.md``, ``results.json`` and ``variants.{png,pdf}``."""
    import datetime as dt

    from mcmi.config import to_dict
    from mcmi.experiments.shots import format_cell
    from mcmi.experiments.table1 import run_status
    from mcmi.io import write_json, write_text
    from mcmi.reports.table1 import git_commit
    from mcmi.reports.tables import fmt_mean_std, markdown_table

    out = Path(cfg.out) / cfg.name
    rows = collect(cfg, runs)
    ref = cfg.reference_name
    n = len(cfg.seeds)
    status: dict[str, int] = {}
    for r in runs:
        st = run_status(r)
        status[st] = status.get(st, 0) + 1
    f = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    lines = [f"# Teacher variants: {cfg.teacher} -> {cfg.student} on {cfg.data.name}", "",
             "Command:", "", f"    {command or '(library call: mcmi.experiments.teacher_variants.run_teacher_variants)'}", "",
             f"Commit: `{git_commit() or 'unknown'}`  ",
             f"Written: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}", "",
             f"Runs: {len(runs)} ({', '.join(f'{v} {k}' for k, v in sorted(status.items()))})."
             + (f" This invocation: {', '.join(f'{v} {k}' for k, v in _counts(outcomes).items())}." if outcomes else ""), "",
             "Teacher columns: test top-1 of the checkpoint the students read (`" + cfg.teacher_checkpoint + ".pt`); "
             "accuracy, LL, CMI and mean output entropy (nats) on the training set. Student columns: test "
             "top-1 (%), mean ± sample std over seeds (n when fewer have finished); the gain is paired by seed "
             f"against the `{ref}` variant's student of the same seed.", "", _view_line(rows), ""]
    ref_row = next(r for r in rows if r["variant"] == ref)
    for method in cfg.methods:
        body = []
        ref_best = {e["seed"]: e["best"] for e in ref_row["students"][method] if e["best"] is not None}
        for r in rows:
            per = r["students"][method]
            best = [e["best"] for e in per if e["best"] is not None]
            last = [e["last"] for e in per if e["last"] is not None]
            diffs = [e["best"] - ref_best[e["seed"]] for e in per if e["best"] is not None and e["seed"] in ref_best]
            how = r["method"] + "".join(f" {k}={v}" for k, v in r["method_args"].items() if k != "centroids")
            how += f", from {r['init']}" if r["init"] else ", from scratch"
            body.append([f"`{r['variant']}`", r["group"] or "", how, f(r["epochs"], 0) if r["epochs"] is not None else "–",
                         f(r["teacher_acc"]), f(r["train_acc"]), f(r["train_ll"], 3), f(r["train_cmi"], 4),
                         f(r["train_entropy"], 3), format_cell(best, n), format_cell(last, n),
                         "" if r["variant"] == ref or not diffs else fmt_mean_std(diffs, signed=True)])
        lines += [f"## {method.upper()} students", "",
                  markdown_table(["variant", "group", "teacher training", "epochs", "teacher top-1", "train acc",
                                  "train LL", "train CMI", "train entropy", "student best", "student last",
                                  f"gain vs {ref} (best, paired)"], body), ""]
    fig = _figure(cfg, rows, out / "variants")
    if fig:
        lines += ["## Figure", "", f"![student accuracy and teacher CMI per variant]({fig.name})", "",
                  "Bars: student top-1 at the best epoch (mean ± std over seeds; first method); line: the "
                  "teacher's train-set CMI; dashed line: its mean output entropy. PDF beside the PNG.", ""]
    lines += _size_section(cfg, rows, out / "teacher_size", n)
    lines += ["## Configuration", "", "```yaml", _yaml(to_dict(cfg)), "```", ""]
    write_json(out / "results.json", {"experiment": "teacher variants (paper Table 4, Table 7, Figs. 5 and 7)",
                                      "command": command, "config": to_dict(cfg), "variants": rows})
    return write_text(out / "README.md", "\n".join(lines))


def size_pairs(rows: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(MLL row, MCMI row) per teacher architecture, in the order listed: an MCMI variant fine-tuned
    from an MLL variant trained from scratch. Only when at least two architectures have such a pair
    (the teacher-size study of paper A.2, Fig. 5); the first pair of each architecture is used."""
    by_name = {r["variant"]: r for r in rows}
    pairs, seen = [], set()
    for r in rows:
        base = by_name.get(r["init"] or "")
        if (r["method"] == "mcmi" and base is not None and base["method"] == "mll" and base["init"] is None
                and base["arch"] == r["arch"] and r["arch"] not in seen):
            pairs.append((base, r))
            seen.add(r["arch"])
    return pairs if len(pairs) >= 2 else []


def _size_section(cfg: TeacherVariantsConfig, rows: Sequence[Mapping[str, Any]], stem: Path, n: int) -> list[str]:
    """Fig. 5's view: per teacher architecture, the MLL and MCMI teachers' train CMI and LL and their
    students, the gain paired by seed against the MLL teacher of the *same* architecture."""
    from mcmi.experiments.shots import format_cell
    from mcmi.reports.plots import plt, save_figure
    from mcmi.reports.tables import fmt_mean_std, markdown_table, mean_std

    pairs = size_pairs(rows)
    if not pairs:
        return []
    method = cfg.methods[0]
    f = lambda x, d=3: "–" if x is None else f"{x:.{d}f}"  # noqa: E731

    def best(r: Mapping[str, Any]) -> dict[int, float]:
        return {e["seed"]: e["best"] for e in r["students"][method] if e["best"] is not None}

    body = []
    for mll, mcmi in pairs:
        a, b = best(mll), best(mcmi)
        diffs = [b[k] - a[k] for k in sorted(set(a) & set(b))]
        body.append([mll["arch"], f(mll["train_cmi"], 4), f(mcmi["train_cmi"], 4), f(mll["train_ll"]),
                     f(mcmi["train_ll"]), format_cell(list(a.values()), n), format_cell(list(b.values()), n),
                     fmt_mean_std(diffs, signed=True) if diffs else "–"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = list(range(len(pairs)))
    for k, (label, style) in enumerate((("MLL", "o--"), ("MCMI", "s-"))):
        side = [p[k] for p in pairs]
        st = [mean_std(list(best(r).values())) for r in side]
        axes[0].errorbar(x, [m for m, _ in st], yerr=[sd for _, sd in st], fmt=style, capsize=3,
                         label=f"{label} teachers")
        axes[1].plot(x, [r["train_cmi"] for r in side], style, label=f"{label} teachers")
        axes[2].plot(x, [r["train_ll"] for r in side], style, label=f"{label} teachers")
    for ax, ylabel, title in ((axes[0], "student top-1 (%)", f"{method.upper()} student {cfg.student}"),
                              (axes[1], "CMI (nats)", "teacher CMI (train)"),
                              (axes[2], "log-likelihood (nats)", "teacher LL (train)")):
        ax.set_xticks(x, [p[0]["arch"] for p in pairs])
        ax.set_xlabel("teacher")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Teacher size: {cfg.data.name}", fontsize=11)
    png = save_figure(fig, stem)[0]
    return ["## Teacher size (Fig. 5 layout)", "",
            markdown_table(["teacher", "CMI MLL", "CMI MCMI", "LL MLL", "LL MCMI", "student of MLL (best)",
                            "student of MCMI (best)", "MCMI - MLL (paired by seed)"], body), "",
            f"![student accuracy, teacher CMI and LL vs teacher size]({png.name})", "",
            _view_line([r for p in pairs for r in p]) + " The gain compares the students of the MCMI "
            "and MLL teachers of the same architecture, seed by seed. PDF beside the PNG.", ""]


def _view_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """Which view of the training set the rows' teacher figures were measured in."""
    from mcmi.metrics.train_view import views_sentence

    return views_sentence(({"view": r["train_view"], "view_seed": r["train_view_seed"]} for r in rows
                           if r.get("train_view")), "Teacher train accuracy, LL, CMI and entropy")


def _counts(outcomes: Sequence[RunOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
    return counts


def _yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


def _figure(cfg: TeacherVariantsConfig, rows: Sequence[Mapping[str, Any]], stem: Path) -> Path | None:
    """Student accuracy bars with the teacher's CMI and entropy on a second axis (as Figs. 1, 5, 7)."""
    import numpy as np

    from mcmi.reports.plots import plt, save_figure
    from mcmi.reports.tables import mean_std

    method = cfg.methods[0]
    stats = [mean_std([e["best"] for e in r["students"][method] if e["best"] is not None]) for r in rows]
    if all(np.isnan(m) for m, _ in stats):
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.4))
    x = np.arange(len(rows))
    means = [0.0 if np.isnan(m) else m for m, _ in stats]
    ax.bar(x, means, 0.6, yerr=[0.0 if np.isnan(s) else s for _, s in stats], capsize=3, color="tab:blue",
           alpha=0.8, label=f"student top-1 ({method.upper()}, best epoch)")
    finite = [m for m, _ in stats if not np.isnan(m)]
    ax.set_ylim(min(finite) - 2 - max(1.0, 0.2 * (max(finite) - min(finite))), max(finite) + 1.5)
    ax.set_ylabel("student top-1 (%)")
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30, ha="right")
    ax.set_xlabel("teacher variant")
    ax2 = ax.twinx()
    cmi = [np.nan if r["train_cmi"] is None else r["train_cmi"] for r in rows]
    ent = [np.nan if r["train_entropy"] is None else r["train_entropy"] for r in rows]
    ax2.plot(x, cmi, "o-", color="tab:red", label="teacher CMI (train, nats)")
    ax2.plot(x, ent, "s--", color="tab:gray", label="teacher entropy (train, nats)")
    ax2.set_ylabel("nats")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    # below the axes: inside, it would hide bars and the entropy line
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.42), ncol=3, frameon=False)
    ax.set_title(f"Teacher variants: {cfg.teacher} -> {cfg.student}, {cfg.data.name}")
    return save_figure(fig, stem)[0]


def main(argv: list[str] | None = None) -> int:
    from mcmi.experiments.shots import grid_main

    return grid_main(argv, prog="mcmi teacher-variants", config_cls=TeacherVariantsConfig,
                     default_config="teacher_variants_cifar100", only_example="kind=mcmi-lam0.05,seed=0",
                     run=run_teacher_variants, description=__doc__.split("\n\n")[0], only_key="kind",
                     plan=lambda cfg, only: plan(cfg, only))


__all__ = ["TeacherVariant", "TeacherVariantsConfig", "collect", "expand", "plan", "run_teacher_variants",
           "write_report"]
