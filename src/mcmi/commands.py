"""What the ``mcmi`` subcommands do (their parsers are in :mod:`mcmi.cli`; the grid commands'
in :mod:`mcmi.grid.command`): each loads its recipe or files and calls the library."""
from __future__ import annotations

import argparse
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


