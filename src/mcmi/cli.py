"""The ``mcmi`` command: subcommands only, the work lives in the library."""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


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
    p = Path(arg)
    if p.exists():
        return p
    for cand in (CONFIGS / arg, CONFIGS / f"{arg}.yaml", CONFIGS / "experiments" / f"{arg}.yaml"):
        if cand.exists():
            return cand
    raise SystemExit(f"mcmi: config {arg!r} not found (looked in the working folder and {CONFIGS})")


def cmd_gaussian(args: argparse.Namespace) -> int:
    from mcmi.config import ConfigError, load_config
    from mcmi.experiments.gaussian import GaussianStudyConfig, run_gaussian_study
    from mcmi.reports.gaussian import write_gaussian_report

    path = _find_config(args.config)
    try:
        cfg = load_config(GaussianStudyConfig, path, args.override)
    except ConfigError as e:
        raise SystemExit(f"mcmi: {e}")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcmi", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

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

    m = sub.add_parser("measure", help="CMI (eq. 12), LL (eq. 5), accuracy of saved outputs (.pt/.npz with probs or logits, and labels)")
    m.add_argument("file")
    m.add_argument("--temperature", type=float, default=1.0, help="softmax temperature applied to logits")
    m.add_argument("--per-class", action="store_true", help="also print per-class CMI")
    m.set_defaults(func=cmd_measure)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
