"""The ``mcmi`` command: subcommands only, the work lives in the library."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import shlex
import sys
from pathlib import Path


def _progress_factory():
    from tqdm import tqdm

    bars = {}

    def factory(name: str, total: int):
        bar = tqdm(total=total, desc=name, unit="epoch", leave=True, dynamic_ncols=True)
        bars[name] = bar

        def update(done: int, _total: int) -> None:
            bar.n = done
            bar.refresh()
            if done >= _total:
                bar.close()

        return update

    return factory


def _find_config(arg: str) -> Path:
    from mcmi.config import ConfigError
    from mcmi.recipes import find_recipe

    try:
        return find_recipe(arg)
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")


def cmd_gaussian(args: argparse.Namespace) -> int:
    from mcmi.config import ConfigError, load_config
    from mcmi.experiments.gaussian import GaussianStudyConfig, run_gaussian_study
    from mcmi.reports.gaussian import write_gaussian_report

    path = _find_config(args.config)
    try:
        cfg = load_config(GaussianStudyConfig, path, args.override)
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")
    if args.print_config:
        return _print_config(cfg)
    from mcmi.io import check_output_dir

    check_output_dir(args.out, key="--out")
    results = run_gaussian_study(cfg, args.out, _progress_factory())
    command = "mcmi " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args.command_line is None else args.command_line
    report = write_gaussian_report(results, args.out, command=command, title=args.title)
    print(report.read_text())
    print(f"report: {report}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.config = "demo"
    args.title = "Demo: synthetic Gaussian study, Ren et al.'s setting (Table 5 style)"
    args.command_line = "mcmi demo" + (f" --out {args.out}" if args.out != "runs/demo" else "")
    return cmd_gaussian(args)


def cmd_measure(args: argparse.Namespace) -> int:
    from mcmi.experiments.measure import measure_file

    print(measure_file(args.file, temperature=args.temperature, per_class=args.per_class))
    return 0


def _print_config(cfg) -> int:
    """``--print-config``: the resolved recipe (overrides applied) as YAML; nothing is created."""
    from mcmi.config import to_yaml

    print(to_yaml(cfg), end="")
    return 0


def _run_recipe(args: argparse.Namespace, expect: str) -> int:
    import json

    from mcmi.config import ConfigError, load_config
    from mcmi.experiments.train import RunConfig, run_training

    path = _find_config(args.config) if args.config else None
    overrides = list(args.override) + ([f"out={args.out}"] if args.out else [])
    try:
        if expect == "distill":  # lr by student, DKD/ReviewKD pair weights where the recipe sets none
            from mcmi.experiments.student_defaults import load_run_config

            cfg = load_run_config(path, overrides)
        else:
            cfg = load_config(RunConfig, path, overrides)
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")
    if args.print_config:
        return _print_config(cfg)
    if args.allow_changes:
        from dataclasses import asdict

        from mcmi.engine.changes import check_allowed_names

        try:
            check_allowed_names(args.allow_changes, asdict(cfg))
        except ConfigError as e:
            raise SystemExit(f"mcmi: {e}")
    if expect == "teacher" and cfg.teacher is not None:
        raise SystemExit(f"mcmi train-teacher: recipe {path} names a teacher; use mcmi distill")
    if expect == "distill" and cfg.teacher is None:
        raise SystemExit(f"mcmi distill: recipe {path} names no teacher (teacher.name, teacher.weights)")
    if expect == "distill" and not cfg.teacher.weights:
        raise SystemExit(f"mcmi distill: teacher.weights is not set: a student learns from a trained teacher "
                         f"(teacher.weights=<run>/last.pt for the {cfg.teacher.name!r} teacher)")
    if expect == "mcmi" and cfg.method != "mcmi":
        raise SystemExit(f"mcmi finetune-mcmi: recipe {path} has method {cfg.method!r}, expected 'mcmi'")
    if expect == "mcmi" and not cfg.model.weights:
        raise SystemExit("mcmi finetune-mcmi: MCMI fine-tunes a pretrained teacher: set model.weights=<run>/last.pt")
    summary = run_training(cfg, resume=not args.fresh, allow_changes=args.allow_changes or ())
    print(json.dumps({k: summary[k] for k in summary if k in ("best_acc", "best_epoch", "last_acc", "last", "wall_s", "out_dir")}, indent=2, default=str))
    return 0


def cmd_train_teacher(args: argparse.Namespace) -> int:
    return _run_recipe(args, "teacher")


def cmd_finetune_mcmi(args: argparse.Namespace) -> int:
    return _run_recipe(args, "mcmi")


def cmd_distill(args: argparse.Namespace) -> int:
    if getattr(args, "cohort", None):
        return _run_cohort(args)
    return _run_recipe(args, "distill")


def _run_cohort(args: argparse.Namespace) -> int:
    """``mcmi distill --cohort kd,dkd,at``: the listed methods from one teacher in one process,
    each into ``OUT/<method>`` (:mod:`mcmi.experiments.cohort`)."""
    import json

    from mcmi.config import ConfigError
    from mcmi.experiments.cohort import cohort_configs, train_cohort

    if args.fresh or args.allow_changes:
        raise SystemExit("mcmi distill --cohort: --fresh and --allow-changes apply to one run; delete a member's "
                         "folder to start it over")
    path = _find_config(args.config) if args.config else None
    try:
        cfgs = cohort_configs(path, list(args.override), args.cohort.split(","), out=args.out)
        if getattr(args, "print_config", False):
            from mcmi.config import to_yaml

            print("\n".join(f"# cohort member {c.method}\n{to_yaml(c)}---" for c in cfgs))
            return 0
        if any(c.teacher is None or not c.teacher.weights for c in cfgs):
            raise SystemExit("mcmi distill --cohort: set teacher.name and teacher.weights=<run>/last.pt")
        results = train_cohort(cfgs, names=[c.method for c in cfgs])
    except (ConfigError, ValueError) as e:
        raise SystemExit(f"mcmi distill: {e}")
    rows = {}
    for cfg in cfgs:
        res = results[cfg.method]
        if isinstance(res, BaseException):
            rows[cfg.method] = {"failed": f"{type(res).__name__}: {res}", "error": str(Path(cfg.out) / "error.txt")}
        else:
            rows[cfg.method] = {k: res.get(k) for k in ("best_acc", "best_epoch", "last_acc")} | {"out": cfg.out}
    print(json.dumps(rows, indent=2, default=str))
    return 1 if any(isinstance(r, BaseException) for r in results.values()) else 0


def cmd_table1(args: argparse.Namespace) -> int:
    from mcmi.config import ConfigError, load_config
    from mcmi.experiments.table1 import (
        Table1Config,
        expand_grid,
        format_plan,
        outcome_counts,
        parse_only,
        select_runs,
        train_runs,
    )
    from mcmi.reports.table1 import write_table1_report

    path = _find_config(args.config)
    if args.workers is not None and args.workers < 1:
        raise SystemExit(f"mcmi table1: --workers must be at least 1, got {args.workers}")
    try:
        cfg = load_config(Table1Config, path, args.override)
        runs = expand_grid(cfg)
        selected = select_runs(runs, parse_only(args.only))
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")
    if args.print_config:
        return _print_config(cfg)
    if args.dry_run:
        print(format_plan(selected))
        return 0
    from mcmi.io import check_output_dir

    check_output_dir(cfg.out, key="out")
    command = " ".join(["mcmi table1 --config", shlex.quote(args.config)]
                       + [f"--only {shlex.quote(o)}" for o in args.only or []]
                       + (["--report-only"] if args.report_only else [])
                       + ([f"--workers {args.workers}"] if args.workers else []) + (["--cohort"] if args.cohort else [])
                       + [shlex.quote(o) for o in args.override])
    outcomes = [] if args.report_only else train_runs(cfg, selected, args.workers, cohort=args.cohort)
    report = write_table1_report(cfg, runs, command=command, outcomes=outcomes)
    counts = outcome_counts(outcomes)
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs trained")
    for o in outcomes:
        if o.result in ("failed", "blocked"):
            print(f"  {o.result}: {o.key}: {o.message}")
    print(f"report: {report}")
    return 1 if any(o.result in ("failed", "blocked") for o in outcomes) else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mcmi.config import ConfigError, build, deep_merge, load_config, load_yaml
    from mcmi.experiments.sweep import (
        ExecutorSpec,
        expand_recipe_grid,
        format_results,
        parse_grid,
        run_sweep,
        sweep_results,
    )
    from mcmi.experiments.table1 import (
        Table1Config,
        expand_grid,
        format_plan,
        outcome_counts,
        parse_only,
        select_runs,
    )
    from mcmi.io import write_json

    if args.grid and not args.recipe:
        raise SystemExit("mcmi sweep: --grid varies a recipe's settings: use it with --recipe")
    if args.only and not args.config:
        raise SystemExit("mcmi sweep: --only filters a Table 1 grid: use it with --config")
    flags = {"executor": args.executor, "workers": args.workers, "retries": args.retries,
             "timeout_min": args.timeout_min, "gpus_per_node": args.gpus_per_node,
             "tasks_per_node": args.tasks_per_node, "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb,
             "slurm_partition": args.slurm_partition, "poll_s": args.poll_s, "threads_per_job": args.threads_per_job,
             "runs_per_gpu": args.runs_per_gpu}
    try:
        cluster = load_yaml(_find_config(args.cluster)) if args.cluster else {}
        spec = build(ExecutorSpec, deep_merge(cluster, {k: v for k, v in flags.items() if v is not None}),
                     source=f"{args.cluster or 'mcmi sweep'} (executor settings)")
        if args.config:
            cfg = load_config(Table1Config, _find_config(args.config), args.override)
            all_runs = expand_grid(cfg)
            runs = select_runs(all_runs, parse_only(args.only))
            root = Path(cfg.out)
        else:
            runs = expand_recipe_grid(_find_config(args.recipe), parse_grid(args.grid or []), args.override, args.out)
            root = Path(runs[0].out_dir).parent
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")
    if args.print_config:
        if args.config:
            return _print_config(cfg)
        from mcmi.config import to_yaml

        print("\n".join(f"# {r.key}\n{to_yaml(r.config)}---" for r in runs))
        return 0
    if args.dry_run:
        print(format_plan(runs))
        return 0
    from mcmi.io import check_output_dir

    check_output_dir(root, key="out")
    units = runs
    if args.cohort:
        from mcmi.experiments.cohort import group_cohorts

        units = group_cohorts(runs)
    outcomes = run_sweep(units, spec, folder=spec.folder or root / ".submitit",
                         teacher_checkpoint=cfg.teacher_checkpoint if args.config else None)
    counts = outcome_counts(outcomes)
    print(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no runs")
    for o in outcomes:
        if o.result in ("failed", "blocked"):
            print(f"  {o.result}: {o.key}: {o.message}")
    if args.config:
        from mcmi.reports.table1 import write_table1_report

        command = "mcmi " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        print(f"report: {write_table1_report(cfg, all_runs, command=command, outcomes=outcomes)}")
    else:
        rows = sweep_results(runs)
        write_json(root / "sweep.json", rows)
        print(format_results(rows))
        print(f"results: {root / 'sweep.json'}")
    return 1 if any(o.result in ("failed", "blocked") for o in outcomes) else 0


#: Subcommands whose arguments are parsed by the module's own ``main(argv)``.
DELEGATED = {
    "zero-shot": ("mcmi.experiments.zero_shot", "zero-shot distillation (Fig. 4, Table 9): students trained without some classes"),
    "few-shot": ("mcmi.experiments.few_shot", "few-shot distillation (Table 3, Table 12): students on alpha of the training data"),
    "binary": ("mcmi.experiments.binary", "binary tasks (A.13, Table 13): two-class problems cut from a data set"),
    "semi-supervised": ("mcmi.experiments.semi_supervised",
                        "semi-supervised distillation (A.9, Fig. 9): teachers on few labels, students on all images"),
    "teacher-variants": ("mcmi.experiments.teacher_variants",
                         "teacher variants (Tables 4, 7, Figs. 5, 7): lambda, regularizers, early stop, size"),
}
ANALYSES = {
    "eigencam": ("mcmi.analysis.eigencam", "Eigen-CAM maps of teachers side by side (Fig. 3)"),
    "tsne": ("mcmi.analysis.tsne", "t-SNE of teachers' output distributions (Fig. 6)"),
    "temperature": ("mcmi.analysis.temperature", "CMI, LL and accuracy against softmax temperature (Fig. 1, Fig. 8)"),
    "curves": ("mcmi.analysis.curves", "CMI and LL curves of runs from their metrics.jsonl (Fig. 2)"),
    "per-class": ("mcmi.analysis.per_class", "per-class CMI table of teachers"),
}


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return int(importlib.import_module(module).main(argv) or 0)


def cmd_delegated(args: argparse.Namespace) -> int:
    return _delegate(DELEGATED[args.cmd][0], args.rest)


def cmd_analyze(args: argparse.Namespace) -> int:
    return _delegate(ANALYSES[args.tool][0], args.rest)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mcmi.experiments.evaluate import evaluate_checkpoint

    if args.augment and args.split != "train":
        raise SystemExit("mcmi evaluate: --augment is the train-augmented view: use it with --split train")
    if args.batch_size < 1:
        raise SystemExit(f"mcmi evaluate: --batch-size must be >= 1, got {args.batch_size}")
    if not args.temperature > 0:
        raise SystemExit(f"mcmi evaluate: --temperature must be a positive number, got {args.temperature}")
    print(evaluate_checkpoint(args.checkpoint, args.data, args.root, args.split, args.batch_size,
                              args.device, args.temperature, args.per_class, arch=args.arch,
                              augment=args.augment, seed=args.seed))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from mcmi.models.io import convert

    got = convert(args.src, args.dst, arch=args.arch, num_classes=args.num_classes, to=args.to)
    print(f"{args.src}: {got.arch}, {got.num_classes} classes ({got.layout} names, {got.container}) -> {args.dst}")
    return 0


def _add_recipe_parser(sub, name: str, help: str, func) -> None:
    r = sub.add_parser(name, help=help)
    r.add_argument("--config", help="YAML recipe: a path or a name under configs/ (e.g. teachers/resnet56_cifar100)")
    r.add_argument("--out", help="output folder (overrides the recipe's out)")
    r.add_argument("--fresh", action="store_true", help="start over instead of resuming from OUT/last.pt")
    r.add_argument("--allow-changes", action="append", metavar="KEY",
                   help="resume although the recipe changed in KEY since OUT/last.pt (e.g. train.lr, or a section "
                   "such as data); repeat for several keys; recorded in OUT/changes.jsonl. Without it a resume "
                   "whose recipe differs in anything but train.epochs is refused, naming the keys")
    r.add_argument("override", nargs="*", help="recipe overrides key=value, e.g. train.epochs=5 data.root=/data "
                   "(anywhere among the options)")
    r.set_defaults(func=func)
    return r


#: Subcommands that load a recipe and take ``--print-config``.
PRINTS_CONFIG = ("demo", "gaussian", "train-teacher", "finetune-mcmi", "distill", "table1", "sweep")


def version() -> str:
    """The installed distribution's version (the package's own when run from a bare checkout)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("mcmi")
    except PackageNotFoundError:
        from mcmi import __version__

        return __version__


def cmd_recipes(args: argparse.Namespace) -> int:
    from mcmi.recipes import RECIPES, list_recipes

    names = list_recipes()
    if args.paths:
        print("\n".join(str(RECIPES / f"{n}.yaml") for n in names))
        return 0
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {_recipe_summary(RECIPES / f'{name}.yaml')}".rstrip())
    print(f"({len(names)} recipes in {RECIPES}; use one as --config NAME)")
    return 0


def _recipe_summary(path: Path, width: int = 90) -> str:
    """The first comment line of a recipe file (its description), shortened to ``width``."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                return text if len(text) <= width else text[: width - 3] + "..."
            if line.strip():
                break
    except OSError:
        pass
    return ""


def build_parser() -> argparse.ArgumentParser:
    from mcmi.argparsing import Parser

    p = Parser(prog="mcmi", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; errors show their traceback")
    p.add_argument("--version", action="version", version=f"mcmi {version()}")
    sub = p.add_subparsers(dest="cmd", required=True)

    rc = sub.add_parser("recipes", help="list the recipes shipped with mcmi (names for --config)")
    rc.add_argument("--paths", action="store_true", help="print the files' paths instead")
    rc.set_defaults(func=cmd_recipes)

    d = sub.add_parser("demo", help="run the synthetic Gaussian study at demo size (a few minutes on 2 CPU cores)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    d.add_argument("override", nargs="*", help="config overrides key=value (e.g. seeds=[0,1])")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("gaussian", help="paper Table 5: the synthetic Gaussian study with a known Bayes posterior")
    g.add_argument("--config", default="gaussian_table5", help="YAML recipe (name in configs/experiments or a path)")
    g.add_argument("--out", default="runs/gaussian_table5", help="output folder; a rerun resumes from its checkpoints")
    g.add_argument("--title", default="", help="report title")
    g.add_argument("override", nargs="*", help="config overrides key=value")
    g.set_defaults(func=cmd_gaussian, command_line=None)

    _add_recipe_parser(sub, "train-teacher", "train a teacher by maximum log-likelihood (cross-entropy)", cmd_train_teacher)
    _add_recipe_parser(sub, "finetune-mcmi", "fine-tune a trained teacher with MCMI (eq. 14: LL + lambda * CMI)", cmd_finetune_mcmi)
    _add_recipe_parser(sub, "distill", "train a student from a teacher with any registered KD method", cmd_distill
                       ).add_argument("--cohort", metavar="M1,M2,...",
                                      help="train these methods from the one teacher in one process, one teacher "
                                      "forward per batch, each into OUT/<method> (a normal run folder, as its "
                                      "separate run would write it); 'dkd:key=value' overrides one member's setting; "
                                      "the recipe's method_args go to the recipe's method only")

    t = sub.add_parser("table1", help="paper Table 1: students of MLL vs MCMI teachers, pairs x methods x seeds")
    t.add_argument("--config", default="table1_cifar100", help="YAML grid (name in configs/experiments or a path)")
    t.add_argument("--only", action="append", help="train a subset, e.g. method=kd|dkd,pair=resnet56-resnet20,seed=0 "
                   "(keys: pair teacher student method kind seed stage); teachers they need come along")
    t.add_argument("--dry-run", action="store_true", help="list the runs with their status (done/partial/todo); train nothing")
    t.add_argument("--report-only", action="store_true", help="only (re)write OUT/README.md and OUT/results.json")
    t.add_argument("--workers", type=int, help="runs at a time, as local jobs of the sweep engine (default: one after "
                   "another in this process); mcmi sweep --config has the cluster options")
    t.add_argument("--cohort", action="store_true", help="train the students of one teacher and seed together, one "
                   "teacher forward per batch (same run folders; one job per cohort with --workers)")
    t.add_argument("override", nargs="*", help="config overrides key=value, e.g. seeds=[0,1] out=runs/t1")
    t.set_defaults(func=cmd_table1)

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
    w.add_argument("--executor", choices=["local", "slurm"], help="local processes (default) or SLURM jobs")
    w.add_argument("--workers", type=int, help="jobs at a time (default local: 1, or one per GPU; slurm: all)")
    w.add_argument("--retries", type=int, help="extra attempts of a failed run, resuming from its checkpoint "
                   "(default 0)")
    w.add_argument("--timeout-min", type=int, help="time limit of a job; a job that reaches it is requeued and resumes")
    w.add_argument("--gpus-per-node", type=int, help="GPUs per run")
    w.add_argument("--tasks-per-node", type=int, help="processes per run (data parallel, one per GPU)")
    w.add_argument("--cpus-per-task", type=int)
    w.add_argument("--threads-per-job", type=int, help="torch threads of each job (default local CPU: cores / workers)")
    w.add_argument("--runs-per-gpu", type=int, help="local executor: K runs share each GPU (K x GPUs at a time, run i "
                   "on GPU i mod G); ignored with a warning on a machine without GPUs")
    w.add_argument("--cohort", action="store_true", help="train the students of one teacher and seed as one job, one "
                   "teacher forward per batch (same run folders)")
    w.add_argument("--mem-gb", type=float)
    w.add_argument("--slurm-partition")
    w.add_argument("--cluster", help="YAML of executor settings (keys of mcmi.experiments.sweep.ExecutorSpec, e.g. "
                   "slurm: {account: ..., setup: [source .venv/bin/activate]}); flags override it")
    w.add_argument("--poll-s", type=float, help=argparse.SUPPRESS)
    w.add_argument("--dry-run", action="store_true", help="list the runs with their status; run nothing")
    w.add_argument("override", nargs="*", help="overrides key=value of the grid (--config) or of the recipe (--recipe)")
    w.set_defaults(func=cmd_sweep)

    for name, (_, help_) in DELEGATED.items():
        x = sub.add_parser(name, help=help_, add_help=False)  # the module's parser answers --help
        x.add_argument("rest", nargs=argparse.REMAINDER)
        x.set_defaults(func=cmd_delegated)
    a = sub.add_parser("analyze", help="analysis figures and tables of trained teachers (Figs. 1-3, 6, 8)")
    tools = a.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for name, (_, help_) in ANALYSES.items():
        x = tools.add_parser(name, help=help_, add_help=False)
        x.add_argument("rest", nargs=argparse.REMAINDER)
        x.set_defaults(func=cmd_analyze)

    e = sub.add_parser("evaluate", help="accuracy, LL, CMI and per-class CMI of a trained model on a data set")
    e.add_argument("checkpoint", help="a run's last.pt or best.pt, or any file mcmi convert reads")
    e.add_argument("--arch", help="architecture of a file from another toolkit (e.g. resnet56, imagenet_resnet18)")
    e.add_argument("--data", required=True, help="data set name (cifar100, tinyimagenet100-32px, imagefolder, ...)")
    e.add_argument("--root", help="data folder or file where the data set needs one")
    e.add_argument("--split", default="test", choices=["train", "test"])
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--per-class", action="store_true", help="include per-class CMI")
    e.add_argument("--augment", action="store_true", help="with --split train: each image once through the "
                   "training augmentation, model in eval mode (view train-augmented, the paper's analysis script); "
                   "default: unaugmented (train-plain)")
    e.add_argument("--seed", type=int, default=0, help="seed of the --augment draws (default 0)")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("convert", help="weights from RepDistiller/mdistiller, torchvision, state dicts, safetensors "
                       "to an mcmi checkpoint, or back (--to)")
    c.add_argument("src", help="an mcmi checkpoint (RUN/last.pt), a RepDistiller/mdistiller teacher file "
                   "({'model': state_dict}), a torchvision or plain state dict, or a .safetensors file")
    c.add_argument("dst", help="file to write")
    c.add_argument("--arch", help="mcmi architecture of a foreign SRC (e.g. resnet56, wrn_40_2, imagenet_mobilenetv2)")
    c.add_argument("--num-classes", type=int, help="classes of a foreign SRC (default: its classifier's rows)")
    c.add_argument("--to", choices=["mcmi", "repdistiller", "torchvision", "state_dict", "safetensors"],
                   help="format of DST (default mcmi, or safetensors for a .safetensors DST): repdistiller = "
                   "{'model': state_dict} in RepDistiller's names, torchvision = a state dict in torchvision's "
                   "names, state_dict = a state dict in mcmi's names")
    c.set_defaults(func=cmd_convert)

    m = sub.add_parser("measure", help="CMI (eq. 12), LL (eq. 5), accuracy of saved outputs (.pt/.npz with probs or logits, and labels)")
    m.add_argument("file")
    m.add_argument("--temperature", type=float, default=1.0, help="softmax temperature applied to logits")
    m.add_argument("--per-class", action="store_true", help="also print per-class CMI")
    m.set_defaults(func=cmd_measure)

    for name in PRINTS_CONFIG:
        sub.choices[name].add_argument("--print-config", action="store_true",
                                       help="print the resolved recipe (overrides applied) as YAML and exit; "
                                       "nothing is created")
    return p


#: ``errno`` values of an ``OSError`` that are the user's to fix (a full disk, a read-only or
#: foreign folder): one line, exit status 2, like mcmi's own error types.
USER_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR",
                                                     "EISDIR", "EEXIST", "ENAMETOOLONG") if hasattr(errno, n))


def user_errors() -> tuple[type[BaseException], ...]:
    """mcmi's error types: a recipe, data set, checkpoint, name or run folder the user can fix."""
    from mcmi.config import ConfigError
    from mcmi.data import DataError
    from mcmi.engine import CheckpointError, TrainingDiverged
    from mcmi.engine.lock import RunLockedError
    from mcmi.registry import UnknownNameError

    return ConfigError, DataError, CheckpointError, TrainingDiverged, RunLockedError, UnknownNameError


def one_line(message: object) -> str:
    """A message on one line (the lines of a multi-line one joined with '; ')."""
    return "; ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _os_error_message(e: OSError) -> str:
    from mcmi.io import NoSpaceError

    if isinstance(e, NoSpaceError):
        return str(e)
    what = (e.strerror or str(e)).lower()
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f)
    return f"{what}: {where}" if where else what


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace: recipe overrides anywhere among the options
    (:func:`mcmi.argparsing.parse_args`); a delegated subcommand gets the words after its name in
    ``rest``."""
    from mcmi.argparsing import parse_args

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # delegated subcommands hand everything after their name to the module's own parser
    # (argparse.REMAINDER would swallow neither a leading --option nor --help)
    cmd = next((k for k, a in enumerate(argv) if not a.startswith("-")), len(argv))  # after -v
    i = cmd + 1 if argv[cmd : cmd + 1] == ["analyze"] else cmd
    if len(argv) > i and (argv[i] in DELEGATED or (i > cmd and argv[i] in ANALYSES)):
        args, _ = parser.parse_known_args(argv[: i + 1])
        args.rest = argv[i + 1 :]
        return args
    return parse_args(parser, argv)


def main(argv: list[str] | None = None) -> int:
    """Run one ``mcmi`` command; returns its exit status.

    Exit status 2 with one line ``mcmi: <message>`` on stderr for anything the user can fix: a
    usage error, mcmi's error types (:func:`user_errors`: a bad recipe key or value, an unknown
    name, a missing or malformed data set or checkpoint, a changed recipe on resume, a locked run
    folder, a diverged run), an ``OSError`` of :data:`USER_ERRNOS` (a full disk, a read-only
    folder) and a ``SystemExit`` with a message. ``-v`` shows their tracebacks. Anything else is
    a bug: its traceback, exit status 1. Parsing keeps argparse's protocol: ``--help`` and
    ``--version`` raise ``SystemExit(0)``, a usage error prints one line (the nearest valid option
    or subcommand) and raises ``SystemExit(2)``.
    """
    args = parse(argv)  # usage errors: one line and SystemExit(2), as argparse's own
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mcmi.engine.distributed import cleanup

    try:
        code = args.func(args)
    except user_errors() as e:
        cleanup(success=False)  # under torchrun; a no-op in a single process
        # user-facing problems: one line naming the culprit, no stack trace (-v shows it)
        if args.verbose:
            raise
        print(f"mcmi: {one_line(e)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `mcmi recipes | head`: the reader left; stop quietly
        cleanup(success=False)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as e:
        cleanup(success=False)
        if args.verbose or e.errno not in USER_ERRNOS:
            raise
        print(f"mcmi: {one_line(_os_error_message(e))}", file=sys.stderr)
        return 2
    except SystemExit as e:  # a command's own "mcmi x: message" exit
        cleanup(success=False)
        if not isinstance(e.code, str):
            raise
        print(one_line(e.code), file=sys.stderr)
        return 2
    except BaseException:
        cleanup(success=False)
        raise
    cleanup()
    return code


if __name__ == "__main__":
    sys.exit(main())
