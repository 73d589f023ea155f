"""The one command line of every grid experiment (``mcmi table1``, ``zero-shot``, ``few-shot``,
``binary``, ``semi-supervised``, ``teacher-variants``) and of ``mcmi sweep``.

Every grid command takes the same options: ``--config`` (a shipped grid name or a YAML path),
``--only key=value,...`` (a subset; the teachers it needs come along), ``--dry-run``,
``--report-only``, ``--print-config``, ``--cohort`` and the executor options (``--workers N``
local jobs; ``--executor slurm`` / ``--cluster FILE`` for a cluster), then ``key=value``
overrides of the grid config.
"""
from __future__ import annotations

import argparse
import shlex
from importlib import import_module
from pathlib import Path
from typing import Any

#: grid command -> (module declaring its ``EXPERIMENT``, help line)
GRID_COMMANDS: dict[str, tuple[str, str]] = {
    "table1": ("mcmi.experiments.table1", "paper Table 1: students of MLL vs MCMI teachers, pairs x methods x seeds"),
    "zero-shot": ("mcmi.experiments.zero_shot",
                  "zero-shot distillation (Fig. 4, Table 9): students trained without some classes"),
    "few-shot": ("mcmi.experiments.few_shot",
                 "few-shot distillation (Table 3, Table 12): students on alpha of the training data"),
    "binary": ("mcmi.experiments.binary", "binary tasks (A.13, Table 13): two-class problems cut from a data set"),
    "semi-supervised": ("mcmi.experiments.semi_supervised",
                        "semi-supervised distillation (A.9, Fig. 9): teachers on few labels, students on all images"),
    "teacher-variants": ("mcmi.experiments.teacher_variants",
                         "teacher variants (Tables 4, 7, Figs. 5, 7): lambda, regularizers, early stop, size"),
}

#: executor flags -> ExecutorSpec fields
_EXECUTOR_FLAGS = ("executor", "workers", "retries", "timeout_min", "gpus_per_node", "tasks_per_node",
                   "cpus_per_task", "mem_gb", "slurm_partition", "poll_s", "threads_per_job", "runs_per_gpu")


def add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, help="runs at a time as local jobs (each with cores / workers torch "
                   "threads); default: one after another in this process (grids) or 1 job (sweep)")
    p.add_argument("--executor", choices=["inprocess", "local", "slurm"], help="where runs train: this process, local "
                   "processes, or SLURM jobs")
    p.add_argument("--cluster", help="YAML of executor settings (keys of mcmi.grid.executors.ExecutorSpec, e.g. "
                   "slurm: {account: ..., setup: [source .venv/bin/activate]}); flags override it")
    p.add_argument("--retries", type=int, help="extra attempts of a failed run, resuming from its checkpoint (default 0)")
    p.add_argument("--timeout-min", type=int, help="time limit of a job; a job that reaches it is requeued and resumes")
    p.add_argument("--gpus-per-node", type=int, help="GPUs per run")
    p.add_argument("--tasks-per-node", type=int, help="processes per run (data parallel, one per GPU)")
    p.add_argument("--cpus-per-task", type=int)
    p.add_argument("--threads-per-job", type=int, help="torch threads of each job (default local CPU: cores / workers)")
    p.add_argument("--runs-per-gpu", type=int, help="local executor: K runs share each GPU (K x GPUs at a time, run i "
                   "on GPU i mod G); ignored with a warning on a machine without GPUs")
    p.add_argument("--mem-gb", type=float)
    p.add_argument("--slurm-partition")
    p.add_argument("--poll-s", type=float, help=argparse.SUPPRESS)
    p.add_argument("--cohort", action="store_true", help="train the students of one teacher and seed together, one "
                   "teacher forward per batch (same run folders; one job per cohort)")


def executor_spec(args: argparse.Namespace, default: str) -> Any:
    """The :class:`~mcmi.grid.executors.ExecutorSpec` of the executor options: ``--cluster``'s
    file, then the flags; ``--workers`` alone means local jobs; none: ``default``."""
    from mcmi.config import build, deep_merge, load_yaml
    from mcmi.grid.executors import ExecutorSpec
    from mcmi.recipes import find_recipe

    if args.workers is not None and args.workers < 1:
        raise SystemExit(f"mcmi {args.cmd}: --workers must be at least 1, got {args.workers}")
    flags = {k: getattr(args, k) for k in _EXECUTOR_FLAGS if getattr(args, k, None) is not None}
    cluster = load_yaml(find_recipe(args.cluster)) if args.cluster else {}
    if "executor" not in flags and "executor" not in cluster:
        flags["executor"] = "local" if args.workers else default
    return build(ExecutorSpec, deep_merge(cluster, flags), source=f"{args.cluster or 'mcmi ' + args.cmd} (executor settings)")


def add_grid_commands(sub: Any) -> None:
    """A parser for every grid command, with the same options."""
    for name, (_, help_) in GRID_COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--config", help="YAML grid: a name in configs/experiments or a path (default: the paper's)")
        p.add_argument("--only", action="append", help="train a subset, e.g. method=kd|dkd,seed=0 (keys: the grid's "
                       "labels: pair teacher student method kind seed stage, and cell or task); teachers they need "
                       "come along")
        p.add_argument("--dry-run", action="store_true", help="list the runs with their status; train nothing")
        p.add_argument("--report-only", action="store_true", help="only (re)write the report")
        p.add_argument("--print-config", action="store_true", help="print the resolved grid config as YAML and exit")
        add_executor_options(p)
        p.add_argument("override", nargs="*", help="config overrides key=value (anywhere among the options)")
        p.set_defaults(func=cmd_grid)


def _command_line(args: argparse.Namespace, config: str) -> str:
    parts = [f"mcmi {args.cmd} --config", shlex.quote(config)]
    parts += [f"--only {shlex.quote(o)}" for o in args.only or []]
    parts += ["--report-only"] if args.report_only else []
    parts += [f"--workers {args.workers}"] if args.workers else []
    parts += ["--cohort"] if args.cohort else []
    return " ".join(parts + [shlex.quote(o) for o in args.override])


def print_outcomes(outcomes: list) -> int:
    """The outcome counts and every failure; the exit status (1 when a run failed or was blocked)."""
    from mcmi.grid.plan import outcome_counts

    counts = outcome_counts(outcomes)
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs trained")
    for o in outcomes:
        if o.result in ("failed", "blocked"):
            print(f"  {o.result}: {o.key}: {o.message}")
    return 1 if any(o.result in ("failed", "blocked") for o in outcomes) else 0


def cmd_grid(args: argparse.Namespace, spec_default: str = "inprocess") -> int:
    """Load the grid config, then list (``--dry-run``), print it, or train, measure and report."""
    from mcmi.config import load_config, to_yaml
    from mcmi.grid.experiment import run_experiment
    from mcmi.grid.plan import format_plan, parse_only, select_runs
    from mcmi.io import check_output_dir
    from mcmi.recipes import find_recipe

    exp = import_module(GRID_COMMANDS[args.cmd][0]).EXPERIMENT
    config = args.config or exp.default_config
    cfg = load_config(exp.config_cls, find_recipe(config), args.override)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    spec = executor_spec(args, spec_default)
    runs = exp.plan(cfg)
    selected = select_runs(runs, parse_only(args.only))
    if args.dry_run:
        print(format_plan(selected, root=exp.listing_root(cfg) if exp.listing_root else None))
        return 0
    check_output_dir(cfg.out, key="out")
    _, outcomes, path = run_experiment(exp, cfg, args.only, command=_command_line(args, config),
                                       report_only=args.report_only, spec=spec, cohort=args.cohort, runs=runs)
    code = print_outcomes(outcomes)
    print(f"report: {path}")
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    """``mcmi sweep``: a Table 1 grid (``--config``) as jobs (local processes by default), or one
    recipe over a grid of settings (``--recipe R --grid key=v1,v2``)."""
    from mcmi.config import to_yaml
    from mcmi.experiments.sweep import expand_recipe_grid, format_results, parse_grid, sweep_results
    from mcmi.grid.experiment import train_runs
    from mcmi.grid.plan import format_plan
    from mcmi.io import check_output_dir, write_json
    from mcmi.recipes import find_recipe

    if args.grid and not args.recipe:
        raise SystemExit("mcmi sweep: --grid varies a recipe's settings: use it with --recipe")
    if args.only and not args.config:
        raise SystemExit("mcmi sweep: --only filters a Table 1 grid: use it with --config")
    if args.config:
        args.report_only = False
        return cmd_grid(argparse.Namespace(**{**vars(args), "cmd": "table1"}), spec_default="local")
    spec = executor_spec(args, "local")
    runs = expand_recipe_grid(find_recipe(args.recipe), parse_grid(args.grid or []), args.override, args.out)
    root = Path(runs[0].out_dir).parent
    if args.print_config:
        print("\n".join(f"# {r.key}\n{to_yaml(r.config)}---" for r in runs))
        return 0
    if args.dry_run:
        print(format_plan(runs))
        return 0
    check_output_dir(root, key="out")
    outcomes = train_runs(runs, spec, out=root, cohort=args.cohort)
    code = print_outcomes(outcomes)
    rows = sweep_results(runs)
    write_json(root / "sweep.json", rows)
    print(format_results(rows))
    print(f"results: {root / 'sweep.json'}")
    return code


def add_sweep_command(sub: Any) -> None:
    w = sub.add_parser("sweep", help="many runs as parallel jobs (submitit: local processes or SLURM): a Table 1 grid, "
                       "or a recipe over a grid of settings; finished runs are skipped, failed ones retried")
    what = w.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", help="a Table 1-style grid YAML (as for mcmi table1)")
    what.add_argument("--recipe", help="a training recipe (as for mcmi train-teacher/distill) whose settings "
                      "--grid varies")
    w.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                   help="with --recipe: values of one setting, e.g. method_args.lam=0.05,0.1,0.2; several --grid "
                   "flags make the cartesian product; runs go to OUT/<lam=0.1_seed=0>")
    w.add_argument("--out", help="with --recipe: folder of the runs (default: the recipe's out + '-sweep')")
    w.add_argument("--only", action="append", help="with --config: a subset of the grid, as for mcmi table1")
    add_executor_options(w)
    w.add_argument("--dry-run", action="store_true", help="list the runs with their status; run nothing")
    w.add_argument("--print-config", action="store_true", help="print the resolved config(s) as YAML and exit")
    w.add_argument("override", nargs="*", help="overrides key=value of the grid (--config) or of the recipe (--recipe)")
    w.set_defaults(func=cmd_sweep)


__all__ = ["GRID_COMMANDS", "add_grid_commands", "add_sweep_command", "cmd_grid", "cmd_sweep", "executor_spec"]
