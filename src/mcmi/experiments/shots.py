"""What the zero-shot and few-shot grids share (paper Sec. 6.2-6.3, A.11, Tables 3, 9, 12).

A grid is one teacher -> student pair: the teacher is trained on the whole training set (MLL,
then its MCMI fine-tune), and students distil from each teacher kind under a reduced training set
(a *cell*: some classes dropped, or a fraction of the images), for every method and seed. The
teacher runs are those of the Table 1 harness (:mod:`mcmi.experiments.table1`) for the same pair
and recipes, stored under ``out/teachers/``; pointing ``out`` at a Table 1 grid of the same
teacher recipe and data shares its teachers. Students and the report go under ``out/<name>/``::

    <out>/teachers/<arch>/{mll,mcmi}
    <out>/<name>/students/<cell>/<method>/<kind>/seed<k>
    <out>/<name>/README.md, results.json

Runs are :class:`~mcmi.experiments.table1.PlannedRun` objects trained by
:func:`~mcmi.experiments.table1.run_grid`: a finished run is skipped, a partial one resumes, a
failure is recorded in its folder and blocks only what needs its checkpoint.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mcmi.config import ConfigError
from mcmi.experiments.table1 import TEACHER_KINDS, PairSpec, PlannedRun, Table1Config
from mcmi.experiments.train import DataSpec

log = logging.getLogger(__name__)

#: Data fields a grid sets per cell; the grid's ``data`` must leave them unset.
CELL_FIELDS = ("train_fraction", "fraction_mode", "drop_classes", "drop_num_classes")


@dataclass
class ShotGridConfig:
    """Fields of every one-pair grid (zero-shot, few-shot; binary tasks and semi-supervised
    extend it). ``data`` is the teacher's (whole) training set; the grid sets the student's
    reductions per cell. Recipes, ``method_args``, ``student_lr`` and the lambda of the MCMI
    fine-tune work as in :class:`~mcmi.experiments.table1.Table1Config`."""

    teacher: str = "resnet56"
    student: str = "resnet20"
    methods: list[str] = field(default_factory=lambda: ["kd"])
    teacher_kinds: list[str] = field(default_factory=lambda: list(TEACHER_KINDS))
    seeds: list[int] = field(default_factory=lambda: [0])
    data: DataSpec = field(default_factory=DataSpec)
    teacher_recipe: str | dict[str, Any] = "_base_/cifar_teacher.yaml"
    mcmi_recipe: str | dict[str, Any] = "_base_/cifar_mcmi.yaml"
    student_recipe: str | dict[str, Any] = "_base_/cifar_student.yaml"
    heads_recipe: str | dict[str, Any] = "_base_/cifar_hsakd_heads.yaml"
    mcmi_lambda: float | None = None  # default: Table 6's value for the teacher (table1.TABLE6_LAMBDA)
    student_lr: dict[str, float] = field(default_factory=dict)
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_pair_defaults: bool = True
    teacher_seed: int = 0
    teacher_checkpoint: str = "last"
    teacher_eval_view: str = "train-plain"  # teachers' train LL/CMI: "train-plain" | "train-augmented"
    teacher_eval_seed: int = 0
    device: str = "auto"
    out: str = "runs/shots"
    name: str = ""  # subfolder of out for students and report; default: the experiment's name

    def __post_init__(self) -> None:
        set_fields = [f for f in CELL_FIELDS if getattr(self.data, f) is not None]
        if set_fields:
            raise ValueError(f"data.{set_fields[0]} is set by the grid for each cell; leave it out of data")
        if self.mcmi_lambda is not None and self.mcmi_lambda <= 0:
            raise ValueError(f"mcmi_lambda must be positive, got {self.mcmi_lambda}")
        self.table1()  # validates methods, kinds, seeds and the checkpoint choice

    def table1(self, **changes: Any) -> Table1Config:
        """The Table 1 grid of this pair: its teacher runs and its student recipes are reused.
        ``changes`` replace Table1Config fields (a task's ``data``, a cell's ``out``, ...) before
        its defaults are merged, so Table 6's lambda follows the data set given here."""
        fields = dict(
            pairs=[PairSpec(self.teacher, self.student)], methods=list(self.methods),
            teacher_kinds=list(self.teacher_kinds), seeds=list(self.seeds), data=self.data,
            teacher_recipe=self.teacher_recipe, mcmi_recipe=self.mcmi_recipe, student_recipe=self.student_recipe,
            heads_recipe=self.heads_recipe,
            mcmi_lambda={} if self.mcmi_lambda is None else {self.teacher: float(self.mcmi_lambda)},
            student_lr=dict(self.student_lr), method_args=dict(self.method_args),
            use_pair_defaults=self.use_pair_defaults, teacher_seed=self.teacher_seed,
            teacher_checkpoint=self.teacher_checkpoint, teacher_eval_view=self.teacher_eval_view,
            teacher_eval_seed=self.teacher_eval_seed, device=self.device, out=self.out)
        return Table1Config(**{**fields, **changes})


@dataclass(frozen=True)
class Cell:
    """One reduction of the student's training set: folder ``key``, report ``label``, and the
    data fields it sets for a run of a given seed."""

    key: str
    label: str
    data: Callable[[int], dict[str, Any]]
    value: float = 0.0  # the grid coordinate (fraction, number of classes) for sorting and reports


def expand(cfg: ShotGridConfig, cells: Sequence[Cell]) -> list[PlannedRun]:
    """Teacher runs (as Table 1 plans them) then students, seed by seed, cell by cell."""
    from mcmi.experiments.table1 import expand_grid

    base = expand_grid(cfg.table1())
    runs = [r for r in base if r.stage in ("teacher", "mcmi", "prep")]
    students = [r for r in base if r.stage == "student"]
    out = Path(cfg.out)
    for seed in cfg.seeds:
        for cell in cells:
            for r in students:
                if r.label("seed") != str(seed):
                    continue
                key = f"{cfg.name}/students/{cell.key}/{r.label('method')}/{r.label('kind')}/seed{seed}"
                try:
                    data = dataclasses.replace(r.config.data, **cell.data(seed))
                except (TypeError, ValueError) as e:
                    raise ConfigError(f"{cfg.name}: cell {cell.key}: {e}") from None
                config = dataclasses.replace(r.config, data=data, out=str(out / key))
                runs.append(PlannedRun(key, "student", config, r.deps, {**r.labels, "cell": (cell.key,)}))
    return runs


def find_grid_config(name: str) -> Path:
    """A grid's YAML file: a path, a path under ``configs/``, or a bare name under
    ``configs/experiments/`` (``zero_shot_cifar10_cpu``)."""
    from mcmi.recipes import find_recipe

    return find_recipe(name)


def parse_only(spec: str | Sequence[str] | None, key: str = "cell") -> dict[str, set[str]]:
    """:func:`mcmi.experiments.table1.parse_only` plus the grid's own ``key`` (``cell=drop5|drop10``
    for the shot grids, ``task=...`` for the binary tasks)."""
    from mcmi.experiments.table1 import parse_only as parse_table1

    items = [spec] if isinstance(spec, str) else list(spec or [])
    picked: set[str] = set()
    rest: list[str] = []
    for item in items:
        for clause in item.split(","):
            name, _, value = clause.partition("=")
            if name.strip() == key:
                picked.update(v.strip() for v in value.split("|") if v.strip())
            elif clause.strip():
                rest.append(clause)
    only = parse_table1(",".join(rest)) if rest else {}
    if picked:
        only[key] = picked
    return only


def run_shot_grid(cfg: ShotGridConfig, cells: Sequence[Cell], only: str | Sequence[str] | None = None,
                  after: Callable[[PlannedRun], None] | None = None, workers: int | None = None,
                  cohort: bool = False):
    """Expand, filter (``--only``), train; then ``after(run)`` for each finished student (errors
    there are logged, not raised). Returns (all runs, outcomes).

    ``workers``: train that many runs at a time, ``cohort``: the students of one teacher and seed
    together (:func:`mcmi.experiments.table1.train_runs`)."""
    from mcmi.experiments.table1 import read_summary, select_runs, train_runs

    runs = expand(cfg, cells)
    selected = select_runs(runs, parse_only(only))
    outcomes = train_runs(cfg.table1(), selected, workers, cohort=cohort)
    if after is not None:
        for run in selected:
            if run.stage == "student" and read_summary(run.out_dir) is not None:
                try:
                    after(run)
                except Exception:  # noqa: BLE001 -- a report must still be written
                    log.exception("%s: evaluation after training failed", run.key)
    return runs, outcomes


def student_rows(runs: Sequence[PlannedRun], extra: Callable[[PlannedRun], Mapping[str, Any] | None] | None = None):
    """One dict per finished student: cell, method, kind, seed, best/last accuracy (%) and
    whatever ``extra(run)`` adds (None: the run is left out)."""
    from mcmi.experiments.table1 import read_summary

    rows = []
    for run in runs:
        if run.stage != "student":
            continue
        s = read_summary(run.out_dir)
        if s is None:
            continue
        row = {"run": run.key, "cell": run.label("cell"), "method": run.label("method"), "kind": run.label("kind"),
               "seed": int(run.label("seed")),
               "best_acc": None if s.get("best_acc") is None else 100 * float(s["best_acc"]),
               "last_acc": None if s.get("last_acc") is None else 100 * float(s["last_acc"]),
               "best_epoch": s.get("best_epoch"), "epochs": s.get("epochs")}
        if extra is not None:
            more = extra(run)
            if more is None:
                continue
            row.update(more)
        rows.append(row)
    return rows


def teacher_rows(cfg: ShotGridConfig) -> dict[str, dict[str, Any]]:
    """Per teacher kind: test accuracy (best, last; %) and, once evaluated, train-set LL and CMI."""
    import json

    from mcmi.experiments.table1 import read_summary, teacher_key

    out = {}
    for kind in cfg.teacher_kinds:
        d = Path(cfg.out) / teacher_key(cfg.teacher, kind)
        s = read_summary(d) or {}
        full: dict[str, Any] = {}
        if (d / "teacher_eval.json").is_file():
            try:
                full = json.loads((d / "teacher_eval.json").read_text())
            except ValueError:
                full = {}
        ev = full.get("train") or {}
        out[kind] = {"best_acc": None if s.get("best_acc") is None else 100 * s["best_acc"],
                     "last_acc": None if s.get("last_acc") is None else 100 * s["last_acc"],
                     "train_ll": ev.get("log_likelihood"), "train_cmi": ev.get("cmi"),
                     "train_view": (full.get("view") or "train-plain") if ev else None,
                     "train_view_seed": full.get("view_seed") if ev else None}
    return out


def teacher_section(cfg: ShotGridConfig) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The report's teacher table (Markdown lines) and its numbers."""
    from mcmi.reports.tables import markdown_table

    f = lambda x, d=2: "–" if x is None else f"{x:.{d}f}"  # noqa: E731
    teachers = teacher_rows(cfg)
    table = markdown_table(["teacher", "test top-1 best / last (%)", "train LL", "train CMI"],
                           [[k.upper(), f"{f(t['best_acc'])} / {f(t['last_acc'])}", f(t["train_ll"], 4),
                             f(t["train_cmi"], 4)] for k, t in teachers.items()])
    return [f"## Teachers ({cfg.teacher}, whole training set)", "", table, "", teacher_views_line(teachers.values()),
            ""], teachers


def teacher_views_line(teachers: Any) -> str:
    """The sentence naming the view of the training set the teachers' LL and CMI were measured
    in (rows with ``train_view``/``train_view_seed``: :func:`teacher_rows`,
    :func:`mcmi.reports.table1.collect_results`)."""
    from mcmi.metrics.train_view import views_sentence

    return views_sentence({"view": t.get("train_view"), "view_seed": t.get("train_view_seed")}
                          for t in teachers if t.get("train_view"))


def cell_stats(rows: Sequence[Mapping[str, Any]], value: str, **match: Any) -> list[float]:
    """The ``value`` of the rows matching every ``match`` item, in seed order (None left out)."""
    picked = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return [float(r[value]) for r in sorted(picked, key=lambda r: r["seed"]) if r.get(value) is not None]


def paired_differences(rows: Sequence[Mapping[str, Any]], value: str, first: str = "mll", second: str = "mcmi",
                       **match: Any) -> list[float]:
    """``value`` of teacher kind ``second`` minus that of ``first``, seed by seed, over the seeds
    where both rows matching ``match`` have it (in seed order)."""
    def by_seed(kind: str) -> dict[int, float]:
        return {r["seed"]: float(r[value]) for r in rows if r.get("kind") == kind and r.get(value) is not None
                and all(r.get(k) == v for k, v in match.items())}

    a, b = by_seed(first), by_seed(second)
    return [b[s] - a[s] for s in sorted(set(a) & set(b))]


def plot_cell_curves(cfg: ShotGridConfig, rows: Sequence[Mapping[str, Any]],
                     panels: Sequence[tuple[str, Mapping[str, Any], str]], xlabel: str, title: str, out_stem: Path,
                     x: Callable[[Cell], float] = lambda c: c.value) -> list[Path]:
    """Students' accuracy against the cells' value: one panel per ``(row value, match, panel
    title)``, one line per teacher kind, mean ± std over the seeds that have it (Fig. 4's view of
    the zero-shot grid, Table 3's of the few-shot one). Writes PNG and PDF; ``[]`` when no row
    has a value to draw."""
    from mcmi.reports.plots import plt, save_figure
    from mcmi.reports.tables import mean_std

    cells = cfg.cells()
    if not any(cell_stats(rows, value, **match) for value, match, _ in panels):
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, (value, match, panel_title) in zip(axes[0], panels):
        drawn = False
        for kind, style in zip(cfg.teacher_kinds, ("o--", "s-", "^:", "d-.")):
            xs, ms, ss = [], [], []
            for c in cells:
                vals = cell_stats(rows, value, cell=c.key, kind=kind, **match)
                if vals:
                    m, sd = mean_std(vals)
                    xs.append(x(c))
                    ms.append(m)
                    ss.append(0.0 if sd != sd else sd)  # one seed: no error bar
            if xs:
                ax.errorbar(xs, ms, yerr=ss, fmt=style, capsize=3, label=f"{kind.upper()} teacher")
                drawn = True
        ax.set_xlabel(xlabel)
        ax.set_ylabel("student top-1 (%)")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{title} (mean ± std over seeds)", fontsize=11)
    return save_figure(fig, out_stem)


def format_cell(values: Sequence[float], n_full: int, digits: int = 2) -> str:
    from mcmi.reports.tables import fmt_mean_std

    if not values:
        return "–"
    return fmt_mean_std(values, digits) + (f" (n={len(values)})" if len(values) < n_full else "")


def report_header(title: str, cfg: ShotGridConfig, command: str, runs: Sequence[PlannedRun], outcomes) -> list[str]:
    """Title, command, commit, date, run status: the lines every grid report starts with."""
    import datetime as dt

    from mcmi.experiments.table1 import run_status
    from mcmi.reports.table1 import git_commit

    status: dict[str, int] = {}
    for r in runs:
        st = run_status(r)
        status[st] = status.get(st, 0) + 1
    lines = [f"# {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [f"- code: {git_commit() or 'unknown'}",
              f"- written: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
              f"- runs: {len(runs)} ({', '.join(f'{v} {k}' for k, v in sorted(status.items()))})"]
    failed = [o for o in outcomes or [] if o.result in ("failed", "blocked")]
    for o in failed:
        lines.append(f"  - {o.result}: `{o.key}`: {o.message}")
    lines += [f"- teacher {cfg.teacher} -> student {cfg.student}; methods: {', '.join(cfg.methods)}; "
              f"seeds: {', '.join(map(str, cfg.seeds))}",
              f"- data: `{cfg.data.name}`" + (f", train_subset {cfg.data.train_subset} ({cfg.data.subset_mode})"
                                               if cfg.data.train_subset else ""), ""]
    return lines


__all__ = ["CELL_FIELDS", "Cell", "ShotGridConfig", "cell_stats", "expand", "find_grid_config", "format_cell", "parse_only",
           "plot_cell_curves", "report_header", "run_shot_grid", "student_rows", "teacher_rows", "teacher_section",
           "teacher_views_line"]


def grid_main(argv: list[str] | None, *, prog: str, config_cls: type, default_config: str, only_example: str,
              run: Callable[..., tuple[Any, Sequence[Any], Path]], description: str = "",
              plan: Callable[[Any, Sequence[str] | None], Sequence[PlannedRun]] | None = None,
              only_key: str = "cell") -> int:
    """The command line of a grid (``mcmi zero-shot`` / ``few-shot`` / ``binary``): parse, load the
    config, list (``--dry-run``: the runs of ``plan(cfg, only)``, default the shot grid's cells) or
    train and report with ``run(cfg, only, command, report_only, workers=...)``."""
    import shlex
    import sys

    from mcmi.argparsing import Parser, parse_args
    from mcmi.config import load_config
    from mcmi.experiments.table1 import format_plan, outcome_counts, select_runs

    p = Parser(prog=prog, description=description)
    p.add_argument("--config", default=default_config, help="YAML grid: a name in configs/experiments or a path")
    p.add_argument("--only", action="append", help=f"e.g. {only_example} (keys: {only_key} method kind seed stage)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status; train nothing")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report")
    p.add_argument("--workers", type=int, help="runs at a time, as local jobs of the sweep engine (default: one "
                   "after another in this process); each job gets cores / workers torch threads")
    p.add_argument("--cohort", action="store_true", help="train the students of one teacher and seed together, one "
                   "teacher forward per batch (same run folders; one job per cohort with --workers)")
    p.add_argument("override", nargs="*", help="config overrides key=value (anywhere among the options)")
    args = parse_args(p, argv)
    if args.workers is not None and args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    cfg = load_config(config_cls, find_grid_config(args.config), args.override)
    if args.dry_run:
        runs = plan(cfg, args.only) if plan else select_runs(expand(cfg, cfg.cells()), parse_only(args.only))
        print(format_plan(runs))
        return 0
    command = f"{prog} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    extra = {"cohort": True} if args.cohort else {}
    _, outcomes, path = run(cfg, args.only, command, args.report_only, workers=args.workers, **extra)
    counts = outcome_counts(outcomes)
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs trained")
    print(f"report: {path}")
    return 1 if any(o.result in ("failed", "blocked") for o in outcomes) else 0
