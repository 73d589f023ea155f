"""The ``mcmi`` command: subcommands only, the work lives in the library."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys

from mcmi.commands import (
    ANALYSES,
    cmd_analyze,
    cmd_convert,
    cmd_demo,
    cmd_distill,
    cmd_evaluate,
    cmd_finetune_mcmi,
    cmd_gaussian,
    cmd_measure,
    cmd_recipes,
    cmd_train_teacher,
)


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
PRINTS_CONFIG = ("demo", "gaussian", "train-teacher", "finetune-mcmi", "distill")


def version() -> str:
    """The installed distribution's version (the package's own when run from a bare checkout)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        return dist_version("mcmi")
    except PackageNotFoundError:
        from mcmi import __version__

        return __version__


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

    from mcmi.grid.command import add_grid_commands, add_sweep_command

    add_grid_commands(sub)
    add_sweep_command(sub)
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
    from mcmi.checkpoint import CheckpointError
    from mcmi.config import ConfigError
    from mcmi.data import DataError
    from mcmi.engine import TrainingDiverged
    from mcmi.engine.lock import RunLockedError
    from mcmi.registry import UnknownNameError

    return ConfigError, DataError, CheckpointError, TrainingDiverged, RunLockedError, UnknownNameError


def _user_errors() -> tuple[type[BaseException], ...]:
    """:func:`user_errors`, or just :class:`~mcmi.config.ConfigError` when mcmi's modules cannot be
    imported because of the user's setup (a broken ``MCMI_PLUGINS`` module: a ``ConfigError``)."""
    from mcmi.config import ConfigError

    try:
        return user_errors()
    except ConfigError:
        return (ConfigError,)


def cleanup(success: bool = True) -> None:
    """End a torchrun process group if this command joined one; nothing when mcmi's training
    modules never loaded (then no group exists)."""
    from mcmi.config import ConfigError

    try:
        from mcmi.engine.distributed import cleanup as end_group
    except ConfigError:
        return
    end_group(success=success)


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
    if len(argv) > i and i > cmd and argv[i] in ANALYSES:
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
    try:
        code = args.func(args)
    except _user_errors() as e:
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
