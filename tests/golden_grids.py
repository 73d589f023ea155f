"""Golden outputs of the experiment grids: the regression harness of the experiment layer.

What it pins down, for each grid config shipped in ``src/mcmi/configs/experiments`` (:data:`GRIDS`),
through the public command line only (:func:`mcmi.cli.main`, in this process):

1. ``mcmi <command> --config <grid> --dry-run out=<OUT>``: the planned run list
   (``dry_run.txt``). Every grid, paper-size ones included.
2. For the grids with ``report`` (all CPU-scale ones, and the paper-size ones whose reports have
   code paths of their own; not ``semi_supervised_cifar10``, whose report reads the full
   CIFAR-10, which is not bundled): every planned run is faked as a finished run folder
   (:func:`fake_runs`: ``summary.json``, a teacher's ``teacher_eval.json``, a zero-shot student's
   ``class_eval.json``), with numbers drawn from the SHA-256 of the run's key: the same on every
   machine, plausible (accuracies in (0, 1), CMI > 0, LL < 0) and different for every run and
   field, so a report that mixes runs up, or drops one, comes out different. Two students are
   left unfinished on purpose: the last one planned has no folder (``todo``), the one before it
   has a checkpoint and an ``error.txt`` (``partial``, failed), so the reports' "n=2" cells,
   status counts and failure notes are pinned too.
3. ``--dry-run`` again on the faked folders (``dry_run_after_fake.txt``: done / partial / todo
   and the failure note), then ``--report-only`` (``README.md``, ``results.json``; the figures are
   written but not compared). A report must not train or evaluate anything: the faked
   evaluation files are fresh, and :func:`report_only` checks that no file other than the
   report's own ``.md``/``.json``/``.png``/``.pdf`` was created or changed.

Outputs are normalized (:func:`normalize_text`, :func:`normalize_json`) before they are compared:
the output folder becomes ``<OUT>``, commit lines become ``<COMMIT>``, timestamps ``<WHEN>``;
``results.json`` is rewritten with sorted keys (key order is layout).

The golden files in ``tests/golden/<grid>/`` were captured from commit 77e9d09 (the code before
the experiment-layer refactor) with::

    PYTHONPATH=/path/to/a/checkout/of/77e9d09/src python tests/golden_grids.py --write

They are the reference the refactored code must reproduce (``tests/test_grid_golden.py``).
Regenerate them (``--write``) only for a reviewed change of a report's layout, never to make a
failing test pass; ``--check`` prints the differences of the code on ``sys.path`` without writing.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import gzip
import hashlib
import io
import json
import math
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
GOLDEN_DIR = HERE / "golden"
#: The commit the golden files were captured from (the code before the experiment-layer refactor).
CAPTURED_FROM = "77e9d09"


@dataclass(frozen=True)
class Grid:
    """One grid config (``name`` in ``configs/experiments``) of one ``mcmi`` subcommand.
    ``report``: also fake its runs and pin its ``--report-only`` report;
    ``data``: the bundled data set the report loads (the test skips the report without it)."""

    name: str
    command: str
    report: bool
    data: str | None = None


GRIDS: tuple[Grid, ...] = (
    # CPU scale: run list and report
    Grid("table1_tinyimagenet_cpu", "table1", True),
    Grid("zero_shot_cifar10_cpu", "zero-shot", True),
    Grid("zero_shot_tinyimagenet_cpu", "zero-shot", True),
    Grid("few_shot_tinyimagenet_cpu", "few-shot", True),
    Grid("binary_cpu", "binary", True),
    Grid("binary_cifar10_partial_cpu", "binary", True),
    # the report counts the training images: it loads the bundled cifar10-partial
    Grid("semi_supervised_cifar10_cpu", "semi-supervised", True, data="cifar10-partial"),
    Grid("teacher_variants_tinyimagenet_cpu", "teacher-variants", True),
    Grid("teacher_size_tinyimagenet_cpu", "teacher-variants", True),
    Grid("mcmi_lr_tinyimagenet_cpu", "teacher-variants", True),
    # paper size, run list and report: only these reports reach the paper's reference columns
    # (Tables 1, 3, 9, 13: CIFAR data and the paper's pairs) and HSAKD's head runs; they read no
    # data set either
    Grid("table1_cifar100", "table1", True),
    Grid("zero_shot_cifar100", "zero-shot", True),
    Grid("few_shot_cifar100", "few-shot", True),
    Grid("binary_cifar", "binary", True),
    # paper size, run list only: the reports take the code paths of their CPU-scale grids
    # (zero_shot_cifar10's 6 confusion figures would cost 9 s of the test)...
    Grid("zero_shot_cifar10", "zero-shot", False),
    Grid("teacher_variants_cifar100", "teacher-variants", False),
    # ... or need a data set that is not bundled: this report counts the training images of the
    # full CIFAR-10 (data.root / MCMI_DATA_DIR), so its text would depend on the machine
    Grid("semi_supervised_cifar10", "semi-supervised", False),
)
GRIDS_BY_NAME = {g.name: g for g in GRIDS}

#: Subfolder of ``out`` holding the runs of these commands (a config's ``name`` wins): their
#: ``--dry-run`` keys are relative to ``out/<name>`` (``<task>/...``, ``<cell>/...``), the others'
#: to ``out``.
RUNS_UNDER_NAME = {"binary": "binary", "semi-supervised": "semi_supervised"}
#: Classes and test images per class of the data sets the grids use (for the faked evaluations).
DATA_CLASSES = {"cifar10": 10, "cifar10-partial": 10, "cifar100": 100, "cifar100-partial": 100,
                "tinyimagenet100-32px": 100}
TEST_PER_CLASS = {"cifar10": 1000, "cifar10-partial": 100, "tinyimagenet100-32px": 50}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FAKE_ERROR = "RuntimeError: faked failure (tests/golden_grids.py)"


# ------------------------------------------------------------------------------ the command line
def run_mcmi(argv: list[str]) -> str:
    """``mcmi <argv>`` in this process (:func:`mcmi.cli.main`): its stdout; raises with the
    stderr when the exit status is not 0."""
    from mcmi.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # a usage error (argparse exits)
            code = e.code
    if code != 0:
        raise RuntimeError(f"mcmi {' '.join(argv)}: exit status {code}\n{err.getvalue()}{out.getvalue()}")
    return out.getvalue()


def grid_argv(grid: Grid, out: Path, *flags: str) -> list[str]:
    """The command line of ``grid`` with ``flags``, its output folder overridden (``out=...``)."""
    return [grid.command, "--config", grid.name, *flags, f"out={out}"]


def planned_keys(plan: str) -> list[tuple[str, str]]:
    """(status, key) of every run of a ``--dry-run`` listing (``    3  todo     teachers/x/mll``)."""
    rows = [re.match(r"\s*\d+\s+(done|partial|todo)\s+(\S+)", line) for line in plan.splitlines()]
    runs = [(m.group(1), m.group(2)) for m in rows if m]
    total = re.search(r"^(\d+) runs: ", plan, re.M)
    assert total and int(total.group(1)) == len(runs), f"cannot read the run list:\n{plan}"
    return runs


def grid_config(grid: Grid) -> dict[str, Any]:
    """The grid's YAML as written (read directly, not through mcmi's loader, so the faked files
    depend on the config file only): what the fakes need (data set, views, drop settings)."""
    import yaml

    import mcmi

    path = Path(mcmi.__file__).resolve().parent / "configs" / "experiments" / f"{grid.name}.yaml"
    return yaml.safe_load(path.read_text()) or {}


# ------------------------------------------------------------------------------ faked runs
def unit(*parts: Any) -> float:
    """A number in [0, 1) from the SHA-256 of ``parts``: the same on every machine and Python."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:7], "big") / 2.0**56


def between(lo: float, hi: float, *parts: Any) -> float:
    return lo + (hi - lo) * unit(*parts)


def whole(lo: int, hi: int, *parts: Any) -> int:
    """An integer in [lo, hi] from the hash of ``parts``."""
    return lo + int(unit(*parts) * (hi - lo + 1))


def run_kind(key: str) -> str:
    """``teacher`` (MLL, MCMI or a teacher variant), ``prep`` (HSAKD heads), ``baseline`` or
    ``student``, from a run's key as the dry run lists it."""
    if re.search(r"(^|/)teachers/[^/]+/[^/]+$", key):
        return "prep" if "+" in key.rsplit("/", 1)[1] else "teacher"
    return "baseline" if re.search(r"/baseline/seed\d+$", key) else "student"


def fake_summary(key: str, classes: int) -> dict[str, Any]:
    """A finished run's ``summary.json``: the fields the reports read (accuracies as fractions,
    best / last epoch, epochs; top-5 only with at least 5 classes, as a real run records it)."""
    teacher = run_kind(key) in ("teacher", "prep")
    epochs = whole(6, 30, key, "epochs")
    cell = re.sub(r"seed\d+$", "", key)  # the seeds of a cell scatter around its own level
    best = (between(0.55, 0.8, cell, "best_acc") if teacher else between(0.3, 0.75, cell, "best_acc")) \
        + between(-0.015, 0.015, key, "best_acc")
    last = best - between(0.0, 0.03, key, "last_drop")
    s: dict[str, Any] = {
        "best_acc": best, "best_epoch": whole(epochs // 2, epochs, key, "best_epoch"), "last_acc": last,
        "last_ll": -between(0.8, 2.5, key, "last_ll"), "last_cmi": between(0.05, 0.6, key, "last_cmi"),
        "last_top5": None, "best_top5": None, "epochs": epochs, "global_step": 100 * epochs,
        "wall_time_s": between(60, 600, key, "wall"), "faked_by": "tests/golden_grids.py"}
    if classes >= 5:
        s["best_top5"] = min(0.999, best + between(0.1, 0.2, key, "best_top5"))
        s["last_top5"] = min(0.999, last + between(0.1, 0.2, key, "last_top5"))
    return s


def fake_teacher_eval(key: str, run_dir: Path, summary: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """``teacher_eval.json`` as :func:`mcmi.experiments.table1.evaluate_teacher` writes it, in the
    view and of the checkpoint the grid asks for (so no report finds it stale and re-evaluates)."""
    checkpoint = cfg.get("teacher_checkpoint", "last")
    view = cfg.get("teacher_eval_view", "train-plain")
    train = {"accuracy": between(0.7, 0.99, key, "train_acc"), "log_likelihood": -between(0.01, 0.9, key, "train_ll"),
             "cmi": between(0.005, 0.45, key, "train_cmi"), "entropy": between(0.05, 1.2, key, "train_entropy"),
             "top5": between(0.9, 0.999, key, "train_top5"), "ece": between(0.01, 0.1, key, "train_ece"),
             "n": 10000}
    return {"checkpoint": str(run_dir / f"{checkpoint}.pt"), "view": view,
            "view_seed": cfg.get("teacher_eval_seed", 0) if view == "train-augmented" else None, "train": train,
            "test_acc": summary[f"{checkpoint}_acc"], "best_acc": summary["best_acc"], "last_acc": summary["last_acc"]}


def dropped_classes(key: str, cfg: dict[str, Any], classes: int) -> list[int]:
    """The classes a zero-shot student's key (``.../drop<k>/<method>/<kind>/seed<s>``) drops:
    the first k of ``drop_order``, else k classes of a hash order of the seed (nested in k, as
    the real draw)."""
    m = re.search(r"/drop(\d+)/.*seed(\d+)$", key)
    assert m, f"not a zero-shot student: {key}"
    k, seed = int(m.group(1)), int(m.group(2))
    if cfg.get("drop_order") is not None:
        return sorted(cfg["drop_order"][:k])
    seed = seed if cfg.get("vary_classes_with_seed", True) else cfg.get("drop_seed", 0)
    return sorted(sorted(range(classes), key=lambda c: unit("drop", seed, c))[:k])


@functools.lru_cache
def primes_near(n: int) -> list[int]:
    """The primes within 10% of ``n``."""
    return [p for p in range(int(n * 0.9), int(n * 1.1) + 2) if p > 1 and all(p % d for d in range(2, p))]


def fake_class_eval(key: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """A zero-shot student's ``class_eval.json``: a confusion matrix (low accuracy on the dropped
    classes), and the accuracies computed from it, as :func:`mcmi.experiments.zero_shot.evaluate_student`.
    Class sizes are primes near the data set's, so no mean lands on a rounding boundary."""
    name = cfg["data"]["name"]
    classes = DATA_CLASSES[name]
    dropped = dropped_classes(key, cfg, classes)
    primes = primes_near(TEST_PER_CLASS.get(name, 100))
    confusion = [[0] * classes for _ in range(classes)]
    for c in range(classes):
        n = primes[whole(0, len(primes) - 1, name, "class size", c)]
        acc = between(0.0, 0.35, key, "acc", c) if c in dropped else between(0.45, 0.95, key, "acc", c)
        confusion[c][c] = round(acc * n)
        for i in range(n - confusion[c][c]):  # the errors, spread over the other classes
            other = whole(0, classes - 2, key, "error", c, i)
            confusion[c][other + (other >= c)] += 1
    rows = [sum(r) for r in confusion]
    kept = [c for c in range(classes) if c not in dropped]

    def accuracy(cs: list[int]) -> float:
        total = sum(rows[c] for c in cs)
        return sum(confusion[c][c] for c in cs) / total if total else math.nan

    return {"checkpoint": "last", "dropped": dropped, "accuracy": accuracy(list(range(classes))),
            "accuracy_dropped": accuracy(dropped), "accuracy_kept": accuracy(kept),
            "per_class_accuracy": [confusion[c][c] / rows[c] for c in range(classes)], "confusion": confusion,
            "log_likelihood": -between(0.8, 2.5, key, "ll"), "cmi": between(0.05, 0.6, key, "cmi"),
            "classes": CIFAR10_CLASSES if classes == 10 else [f"class{c:03d}" for c in range(classes)]}


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def fake_runs(grid: Grid, out: Path, plan: str) -> dict[str, str]:
    """Fake the run folders of every run in ``plan`` (the grid's ``--dry-run`` listing) under
    ``out``. Returns key -> the status it was given (``done``, ``partial`` or ``todo``)."""
    cfg = grid_config(grid)
    keys = [key for _, key in planned_keys(plan)]
    root = out
    if grid.command in RUNS_UNDER_NAME:  # keys relative to out/<name>
        root = out / cfg.get("name", RUNS_UNDER_NAME[grid.command])
    data = cfg.get("data") or {}
    classes = 2 if grid.command == "binary" else DATA_CLASSES[data["name"]]
    students = [k for k in keys if run_kind(k) == "student"]
    status = {k: "done" for k in keys}
    status[students[-1]] = "todo"
    status[students[-2]] = "partial"
    for key in keys:
        run_dir = root / key
        if status[key] == "todo":
            continue
        if status[key] == "partial":  # a checkpoint to resume from, and the last attempt's error
            run_dir.mkdir(parents=True)
            (run_dir / "last.pt").write_bytes(b"")
            (run_dir / "error.txt").write_text(f"{FAKE_ERROR}\n\nTraceback (faked)\n")
            continue
        summary = fake_summary(key, classes)
        write_json(run_dir / "summary.json", summary)
        if run_kind(key) == "teacher":
            write_json(run_dir / "teacher_eval.json", fake_teacher_eval(key, run_dir, summary, cfg))
        if grid.command == "zero-shot" and run_kind(key) == "student":
            path = run_dir / "class_eval.json"
            write_json(path, fake_class_eval(key, cfg))
            # fresh: not older than summary.json (else the report would evaluate the student)
            t = (run_dir / "summary.json").stat().st_mtime_ns + 10**9
            os.utime(path, ns=(t, t))
    return status


# ------------------------------------------------------------------------------ the report
def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def report_only(grid: Grid, out: Path) -> Path:
    """``--report-only`` on the faked folders; returns the report's folder. Fails when the
    command touched anything but the report's own files (an evaluation or training would)."""
    before = snapshot(out)
    printed = run_mcmi(grid_argv(grid, out, "--report-only"))
    m = re.search(r"^report: (.+)$", printed, re.M)
    assert m, f"no 'report: <path>' line in the output of {grid.name}:\n{printed}"
    report = Path(m.group(1).strip()).parent
    after = snapshot(out)
    changed = sorted(k for k in before if after.get(k) != before[k])
    prefix = str(report.relative_to(out))
    new = sorted(k for k in after.keys() - before.keys()
                 if not (Path(k).parent == Path(prefix) and Path(k).suffix in (".md", ".json", ".png", ".pdf")))
    assert not changed and not new, (f"{grid.name}: --report-only changed {changed[:5]} and created {new[:5]}: "
                                     "it must only write the report")
    return report


# ------------------------------------------------------------------------------ normalization
_WHEN = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:?\d\d|Z)?")
_COMMIT = re.compile(r"\b[0-9a-f]{40}\b( \(with uncommitted changes\))?")
_LINE_RULES = (  # lines that differ between two runs of the same code
    (re.compile(r"^Commit: .*?(\s*)$"), r"Commit: `<COMMIT>`\1"),
    (re.compile(r"^- code: .*$"), "- code: <COMMIT>"),
)


def normalize_text(text: str, out: Path) -> str:
    """``text`` with the output folder as ``<OUT>``, commits as ``<COMMIT>``, times as ``<WHEN>``."""
    for p in sorted({str(out.resolve()), str(out)}, key=len, reverse=True):
        text = text.replace(p, "<OUT>")
    text = _COMMIT.sub("<COMMIT>", _WHEN.sub("<WHEN>", text))
    lines = []
    for line in text.split("\n"):
        for pattern, repl in _LINE_RULES:
            line = pattern.sub(repl, line)
        lines.append(line)
    return "\n".join(lines)


def normalize_json(text: str, out: Path) -> str:
    """``results.json`` parsed, its strings normalized as :func:`normalize_text`, every ``commit``
    value ``<COMMIT>``, written back with sorted keys (key order is layout)."""
    def walk(x: Any, key: str = "") -> Any:
        if key in ("commit", "git_commit"):
            return "<COMMIT>"
        if isinstance(x, dict):
            return {k: walk(v, k) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return normalize_text(x, out) if isinstance(x, str) else x

    return json.dumps(walk(json.loads(text)), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------ capture
def capture(grid: Grid, workdir: Path, report: bool | None = None,
            tamper: Callable[[Path], None] | None = None) -> dict[str, str]:
    """The normalized outputs of ``grid`` run in ``workdir/<grid>``: file name -> text
    (``dry_run.txt``; with ``report`` (default ``grid.report``) also ``dry_run_after_fake.txt``,
    ``README.md`` and ``results.json``). ``tamper(out)``, called after the runs are faked, serves
    the harness's own test (a mix-up of runs must change the report)."""
    out = workdir / grid.name
    plan = run_mcmi(grid_argv(grid, out, "--dry-run"))
    files = {"dry_run.txt": normalize_text(plan, out)}
    if not (grid.report if report is None else report):
        return files
    assert not out.exists(), f"{grid.name}: --dry-run created {out}"
    status = fake_runs(grid, out, plan)
    if tamper is not None:
        tamper(out)
    after = run_mcmi(grid_argv(grid, out, "--dry-run"))
    seen = dict((key, st) for st, key in planned_keys(after))
    assert seen == status, (f"{grid.name}: the dry run does not see the faked run folders as faked: "
                            f"{sorted(k for k in status if seen.get(k) != status[k])[:5]}")
    files["dry_run_after_fake.txt"] = normalize_text(after, out)
    folder = report_only(grid, out)
    files["README.md"] = normalize_text((folder / "README.md").read_text(), out)
    files["results.json"] = normalize_json((folder / "results.json").read_text(), out)
    return files


#: golden files larger than this are stored gzipped (``results.json.gz``: the paper-size Table 1)
GZIP_OVER = 200_000


def golden(grid: Grid) -> dict[str, str]:
    """The golden files of ``grid``: file name -> text (a ``.gz`` file under its name without it)."""
    folder = GOLDEN_DIR / grid.name
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.iterdir()):
        if p.suffix == ".gz":
            out[p.stem] = gzip.decompress(p.read_bytes()).decode()
        elif p.is_file():
            out[p.name] = p.read_text()
    return out


def write_golden(folder: Path, files: dict[str, str]) -> None:
    """``files`` into ``folder`` (the large ones gzipped, reproducibly), and nothing else."""
    folder.mkdir(parents=True, exist_ok=True)
    stored = {name + ".gz" if len(text) > GZIP_OVER else name: text for name, text in files.items()}
    for old in folder.iterdir():
        if old.name not in stored:
            old.unlink()
    for name, text in stored.items():
        if name.endswith(".gz"):
            (folder / name).write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            (folder / name).write_text(text)


def bundled_data_available(name: str) -> bool:
    """Whether mcmi can find bundled archive ``name`` where it looks by default
    (``$MCMI_SHARED_DATA``, ``../shared/data`` of the working directory and of the repository)."""
    bases = [Path(os.environ["MCMI_SHARED_DATA"])] if os.environ.get("MCMI_SHARED_DATA") else []
    bases += [Path.cwd() / ".." / "shared" / "data", HERE.parent / ".." / "shared" / "data"]
    return any((b / f"{name}.npz").is_file() or (b / "data" / f"{name}.npz").is_file() for b in bases)


def _approx(a: Any, b: Any) -> bool:
    """Equal JSON values, floats to 1e-9 relative (a refactor may sum in another order)."""
    if isinstance(a, float) or isinstance(b, float):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_approx(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_approx(x, y) for x, y in zip(a, b))
    return a == b


def differences(expected: dict[str, str], actual: dict[str, str], max_lines: int = 120) -> str:
    """A unified diff per file that differs ('' when all match; ``results.json`` files match when
    equal up to float rounding)."""
    parts = []
    for name in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(name), actual.get(name)
        if want == got:
            continue
        if name.endswith(".json") and want is not None and got is not None and _approx(json.loads(want), json.loads(got)):
            continue
        diff = list(difflib.unified_diff((want or "").splitlines(), (got or "").splitlines(),
                                         f"golden/{name}" if want is not None else "(no golden file)",
                                         f"now/{name}" if got is not None else "(not written now)", lineterm=""))
        more = f"\n... {len(diff) - max_lines} more diff lines" if len(diff) > max_lines else ""
        parts.append("\n".join(diff[:max_lines]) + more)
    return "\n\n".join(parts)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mcmi-golden-") as d:
        yield Path(d).resolve()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", action="store_true", help="(re)write tests/golden/<grid>/ from the code on sys.path")
    what.add_argument("--check", action="store_true", help="compare with tests/golden/; print the differences")
    what.add_argument("--list", action="store_true", help="list the grids")
    p.add_argument("--grid", action="append", choices=sorted(GRIDS_BY_NAME), help="only these grids")
    args = p.parse_args(argv)
    grids = [GRIDS_BY_NAME[g] for g in args.grid] if args.grid else list(GRIDS)
    if args.list:
        for g in grids:
            print(f"{g.name:36s} mcmi {g.command:17s} {'dry run + report' if g.report else 'dry run'}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
    import mcmi

    print(f"mcmi from {Path(mcmi.__file__).resolve().parent}", file=sys.stderr)
    failed = 0
    with workspace() as work:
        for g in grids:
            if g.data and not bundled_data_available(g.data):
                raise SystemExit(f"{g.name}: its report needs the bundled {g.data}.npz (set MCMI_SHARED_DATA)")
            files = capture(g, work)
            if args.write:
                folder = GOLDEN_DIR / g.name
                write_golden(folder, files)
                print(f"wrote {folder.relative_to(HERE.parent)}: {', '.join(files)}", file=sys.stderr)
            else:
                diff = differences(golden(g), files)
                failed += bool(diff)
                print(f"{g.name}: {'DIFFERS' if diff else 'ok'}", file=sys.stderr)
                if diff:
                    print(diff)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
