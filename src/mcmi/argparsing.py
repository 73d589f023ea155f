"""Command-line parsing shared by the ``mcmi`` commands: one-line errors with the nearest valid
names, and recipe overrides (``key=value``) anywhere among the options.

argparse alone takes the ``override`` positional (``nargs="*"``) only as one contiguous run:
``mcmi distill --config X model.name=resnet8 --out D method=kd`` fails with "unrecognized
arguments: method=kd". :func:`parse_args` parses with ``parse_known_args`` (so every option
still takes its own value, e.g. ``--only method=kd``) and hands the leftover ``key=value`` words to
``override`` in the order they were typed; anything else left over is an error.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from mcmi.config import did_you_mean

#: What a recipe override looks like: ``key=value`` or ``section.key=value``, optionally for one
#: member of a cohort (``dkd:method_args.beta=8``).
OVERRIDE = re.compile(r"([A-Za-z_][\w-]*:)?[A-Za-z_][\w-]*(\.[\w-]+)*=.*", re.DOTALL)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2) naming the bad
    word and the nearest valid option or subcommand; ``--help`` shows the usage as before.
    Subparsers made with ``add_subparsers`` are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {self._hint(message)} (see {self.prog} --help)\n")

    def _options(self) -> list[str]:
        return [s for a in self._actions for s in a.option_strings if s.startswith("--")]

    def _hint(self, message: str) -> str:
        message = " ".join(message.split())
        m = re.match(r"unrecognized arguments: (.*)", message)
        if m:
            words = m.group(1).split()
            first = next((w for w in words if w.startswith("-")), None)
            if first is not None:
                return message + did_you_mean(first.split("=", 1)[0], self._options())
            return message + " (overrides look like key=value)"
        m = re.match(r"argument (\S+): invalid choice: '([^']*)'", message)
        if m:
            choices = [str(c) for a in self._actions if m.group(1) in _names(a) for c in (a.choices or [])]
            head = message.split(" (choose from")[0]
            return head + did_you_mean(m.group(2), choices)
        return message


def _names(action: argparse.Action) -> tuple[str, ...]:
    """The names argparse may give ``action`` in an error message (its options, metavar, dest or
    ``{choices}``)."""
    braces = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else ""
    return ("/".join(action.option_strings), str(action.metavar), str(action.dest), braces)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with ``key=value`` overrides allowed anywhere: leftover words that
    look like overrides go to ``args.override`` (after those argparse placed there itself, which
    come first on the line), anything else is a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(argv)
    if extras and isinstance(getattr(args, "override", None), list):
        overrides = [w for w in extras if OVERRIDE.fullmatch(w)]
        extras = [w for w in extras if not OVERRIDE.fullmatch(w)]
        args.override = list(args.override) + overrides
    if extras:
        _subparser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def _subparser(parser: argparse.ArgumentParser, args: Any) -> argparse.ArgumentParser:
    """The (sub)parser of the command in ``args``, for its prog name in error messages."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(args, action.dest, None)
            if name in action.choices:
                return _subparser(action.choices[name], args)
    return parser


__all__ = ["OVERRIDE", "Parser", "parse_args"]
