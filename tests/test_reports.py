"""The reports' shared pieces (:mod:`mcmi.reports.common`, :mod:`mcmi.reports.numbers`, run folders
of :mod:`mcmi.engine.rundir`) on hand-made numbers, and a Table 1 report of a grid with missing
runs: they show as missing, counted and never computed."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mcmi.engine.rundir import error_note, read_json, read_summary, read_teacher_eval, run_status
from mcmi.reports import common, numbers
from mcmi.reports.table1 import Pair, collect_results, write_report


@dataclass(frozen=True)
class Run:
    """A planned run as the reports see one."""

    key: str
    stage: str
    out_dir: Path
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def label(self, name: str) -> str:
        values = self.labels.get(name, ())
        return values[0] if len(values) == 1 else ""


@dataclass(frozen=True)
class Outcome:
    key: str
    result: str
    message: str = ""


def finish(run: Run, best: float, last: float | None = None, **extra: Any) -> None:
    run.out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"best_acc": best, "last_acc": best if last is None else last, "best_epoch": 3, "epochs": 4, **extra}
    (run.out_dir / "summary.json").write_text(json.dumps(summary))


# ------------------------------------------------------------------------------ run folders
def test_run_folder_status_and_files(tmp_path):
    d = tmp_path / "run"
    assert run_status(d) == "todo" and read_summary(d) is None and error_note(d) == ""
    d.mkdir()
    (d / "last.prev.pt").write_bytes(b"")
    (d / "error.txt").write_text("ValueError: " + "x" * 200 + "\n\nTraceback ...\n")
    assert run_status(d) == "partial"
    assert error_note(d) == "last attempt failed: ValueError: " + "x" * 148  # the first line, cut at 160
    (d / "error.txt").write_text("\n")
    assert error_note(d) == "last attempt failed"
    (d / "teacher_eval.json").write_text("{not json")
    assert read_teacher_eval(d) is None and read_json(d / "missing.json") is None
    (d / "summary.json").write_text(json.dumps({"best_acc": 0.5}))
    assert run_status(d) == "done" and read_summary(d) == {"best_acc": 0.5}


# ------------------------------------------------------------------------------ numbers
def test_formatters_on_known_numbers():
    assert numbers.pct(0.4321) == pytest.approx(43.21) and numbers.pct(None) is None and numbers.pct(math.nan) is None
    assert numbers.fmt_num(None) == "–" and numbers.fmt_num(-0.12345, 3) == "-0.123" and numbers.fmt_num(7.0, 0) == "7"
    assert numbers.format_cell([], 3) == "–"
    assert numbers.format_cell([70.0, 71.0, 72.0], 3) == "71.00 ± 1.00"
    assert numbers.format_cell([70.0, 72.0], 3) == f"71.00 ± {np.std([70, 72], ddof=1):.2f} (n=2)"  # a seed missing
    assert numbers.format_cell([70.123], 1) == "70.12" and numbers.format_cell([70.123], 5) == "70.12 (n=1)"
    st = numbers.stats([1.0, 2.0, 4.0])
    assert st["n"] == 3 and st["mean"] == pytest.approx(7 / 3) and st["std"] == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert numbers.stats([]) is None and numbers.format_stats(None, 2) == "–"
    assert numbers.format_stats(st, 5) == numbers.format_cell([1.0, 2.0, 4.0], 5)
    assert numbers.signed_cell([]) == "–" and numbers.signed_cell([0.5]) == "+0.50"
    assert numbers.signed_cell([1.0, -0.5]) == f"+0.25 ± {np.std([1.0, -0.5], ddof=1):.2f}"
    assert numbers.gained_text([1.0, -0.5, 2.0]) == f"+0.83 ± {np.std([1.0, -0.5, 2.0], ddof=1):.2f} (2 of 3 > 0)"


def test_paired_differences_by_seed_leave_unfinished_pairs_out():
    rows = [{"kind": "mll", "seed": 2, "cell": "a", "acc": 9.5}, {"kind": "mcmi", "seed": 0, "cell": "a", "acc": 12.5},
            {"kind": "mll", "seed": 0, "cell": "a", "acc": 10.0}, {"kind": "mll", "seed": 1, "cell": "a", "acc": 11.0},
            {"kind": "mcmi", "seed": 1, "cell": "a", "acc": None},  # unfinished: seed 1 has no pair
            {"kind": "mcmi", "seed": 2, "cell": "a", "acc": 9.0}, {"kind": "mcmi", "seed": 3, "cell": "a", "acc": 1.0},
            {"kind": "mcmi", "seed": 0, "cell": "b", "acc": 50.0}, {"kind": "mll", "seed": 0, "cell": "b", "acc": 40.0}]
    assert numbers.paired_by_seed(rows, "acc", cell="a") == ([0, 2], [2.5, -0.5])
    assert numbers.paired_differences(rows, "acc", cell="b") == [10.0]
    assert numbers.paired_differences(rows, "acc", first="mcmi", second="mll", cell="a") == [-2.5, 0.5]
    assert numbers.cell_stats(rows, "acc", kind="mcmi", cell="a") == [12.5, 9.0, 1.0]  # seed order, None left out
    assert numbers.seed_values([{"seed": 1, "best_acc": 2.0}, {"seed": 0, "best_acc": 1.0},
                                {"seed": 2, "best_acc": None}], "best") == [1.0, 2.0]


# ------------------------------------------------------------------------------ header
def test_header_counts_runs_and_outcomes(tmp_path):
    runs = [Run(f"r{i}", "student", tmp_path / f"r{i}") for i in range(4)]
    finish(runs[0], 0.5)
    finish(runs[1], 0.6)
    runs[2].out_dir.mkdir()
    (runs[2].out_dir / "last.pt").write_bytes(b"")
    (runs[2].out_dir / "error.txt").write_text("RuntimeError: boom\n\nTraceback\n")
    outcomes = [Outcome("r2", "failed", "RuntimeError: boom"), Outcome("r3", "blocked", "needs r2"),
                Outcome("r1", "skipped"), Outcome("r0", "done")]
    assert common.status_counts(runs) == {"done": 2, "partial": 1, "todo": 1}
    assert common.run_failures(runs) == [{"run": "r2", "error": "RuntimeError: boom"}]
    counts = common.outcome_counts(outcomes)
    assert list(counts) == ["failed", "blocked", "skipped", "done"]  # as first seen
    assert common.counts_text(counts, sort=True) == "1 blocked, 1 done, 1 failed, 1 skipped"
    assert common.counts_text({"done": 2, "partial": 0, "todo": 1}, skip_zero=True) == "2 done, 1 todo"
    lines = common.header_list("A grid", "mcmi x --config y", runs, outcomes, ["data: `npz`"])
    assert lines[:4] == ["# A grid", "", "Command: `mcmi x --config y`", ""]
    assert lines[4].startswith("- code: ") and lines[5].startswith("- written: ")
    assert lines[6:] == ["- runs: 4 (2 done, 1 partial, 1 todo)", "  - failed: `r2`: RuntimeError: boom",
                         "  - blocked: `r3`: needs r2", "- data: `npz`", ""]
    block = common.header_block("T", "", None, "unknown (no checkout)")
    assert block[:6] == ["# T", "", "Command:", "", "    (library call: mcmi.grid.experiment.run_experiment)", ""]
    assert block[6] == "Commit: `unknown (no checkout)`  " and block[7].startswith("Written: ") and block[8] == ""


def test_teacher_lookup_and_views_sentence(tmp_path):
    t = Run("teachers/r8/mcmi", "mcmi", tmp_path / "t", {"teacher": ("r8",), "kind": ("mcmi",)})
    prep = Run("teachers/r8/mcmi+heads", "prep", tmp_path / "p", {"teacher": ("r8",), "kind": ("mcmi",)})
    assert common.teacher_dir([prep, t], "r8", "mcmi") == tmp_path / "t"  # a preparation run is no teacher
    assert common.teacher_dir([prep, t], "r8", "mll") is None
    missing = common.teacher_figures(None)
    assert missing["done"] is False and missing["best_acc"] is None and missing["train_view"] is None
    finish(t, 0.7, 0.65, best_top5=0.9)
    (t.out_dir / "teacher_eval.json").write_text(json.dumps({"train": {"accuracy": 0.9, "log_likelihood": -0.2,
                                                                       "cmi": 0.3}}))
    fig = common.teacher_figures(t.out_dir)
    assert fig["best_acc"] == pytest.approx(70.0) and fig["last_top5"] is None and fig["train_cmi"] == 0.3
    assert fig["train_view"] == "train-plain"  # an evaluation without a view was unaugmented
    assert "train-plain" in common.teacher_views_line([fig, missing])
    assert "not measured yet" in common.teacher_views_line([missing])
    assert common.method_name("reviewkd") == "ReviewKD" and common.method_name("no-such-method") == "no-such-method"


# ------------------------------------------------------------------------------ a report
@dataclass
class Data:
    name: str = "npz"
    train_subset: int | None = None
    subset_mode: str = "first"


@dataclass
class Grid:
    """The fields of a Table 1 grid config the report reads."""

    out: str
    pairs: list[Pair] = field(default_factory=lambda: [Pair("r8", "r8")])
    methods: list[str] = field(default_factory=lambda: ["kd"])
    teacher_kinds: list[str] = field(default_factory=lambda: ["mll", "mcmi"])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    data: Data = field(default_factory=Data)
    teacher_recipe: dict = field(default_factory=lambda: {"train": {"epochs": 3}})
    mcmi_recipe: dict = field(default_factory=lambda: {"train": {"epochs": 1}})
    student_recipe: dict = field(default_factory=lambda: {"train": {"epochs": 2}})
    mcmi_lambda: dict = field(default_factory=dict)
    mcmi_lambda_default: float = 0.15
    method_args: dict = field(default_factory=dict)
    pair_method_args: dict = field(default_factory=dict)
    use_pair_defaults: bool = True
    student_baseline: bool = False
    teacher_checkpoint: str = "last"


def table1_runs(out: Path) -> dict[str, Run]:
    runs = [Run(f"teachers/r8/{k}", "teacher" if k == "mll" else "mcmi", out / "teachers/r8" / k,
                {"teacher": ("r8",), "kind": (k,), "pair": ("r8-r8",)}) for k in ("mll", "mcmi")]
    runs += [Run(f"students/r8-r8/kd/{k}/seed{s}", "student", out / f"students/r8-r8/kd/{k}/seed{s}",
                 {"pair": ("r8-r8",), "teacher": ("r8",), "student": ("r8",), "method": ("kd",), "kind": (k,),
                  "seed": (str(s),)}) for s in (0, 1) for k in ("mll", "mcmi")]
    return {r.key: r for r in runs}


def test_table1_report_of_a_grid_with_missing_runs(tmp_path):
    cfg = Grid(out=str(tmp_path))
    runs = table1_runs(tmp_path)
    finish(runs["teachers/r8/mll"], 0.7)
    (runs["teachers/r8/mll"].out_dir / "teacher_eval.json").write_text(
        json.dumps({"view": "train-plain", "train": {"accuracy": 0.9, "log_likelihood": -0.25, "cmi": 0.125}}))
    # the MCMI teacher never ran; of its students seed 0 finished (from an older teacher), seed 1 failed
    for key, acc in (("students/r8-r8/kd/mll/seed0", 0.60), ("students/r8-r8/kd/mll/seed1", 0.62),
                     ("students/r8-r8/kd/mcmi/seed0", 0.65)):
        finish(runs[key], acc)
    failed = runs["students/r8-r8/kd/mcmi/seed1"].out_dir
    failed.mkdir(parents=True)
    (failed / "error.txt").write_text("RuntimeError: teacher missing\n")
    res = collect_results(cfg, list(runs.values()), config={"out": cfg.out})
    assert res["status"] == {"done": 4, "partial": 0, "todo": 2}
    assert res["failures"] == [{"run": "students/r8-r8/kd/mcmi/seed1", "error": "RuntimeError: teacher missing"}]
    assert res["teachers"]["r8"]["mcmi"]["done"] is False and res["teachers"]["r8"]["mcmi"]["train_cmi"] is None
    cell = res["cells"]["r8-r8"]["kd"]
    assert cell["mcmi"]["best"]["n"] == 1 and cell["mll"]["best"]["n"] == 2
    assert cell["paired_best"]["seeds"] == [0] and cell["paired_best"]["diffs"] == pytest.approx([5.0])
    assert cell["gain_best"] == pytest.approx(65.0 - 61.0) and cell["weights"] is None  # KD has no pair weights

    readme = write_report(cfg, list(runs.values()), command="mcmi table1 --config t.yaml")
    text = readme.read_text()
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in text.split("## Top-1 at the best")[1]
            .split("## Top-1 at the last")[0].splitlines() if ln.startswith("| ") and not ln.startswith("|  |")}
    assert rows["Teacher top-1"] == ["70.00", "–"] and rows["Teacher CMI (train)"] == ["0.1250", "–"]
    assert rows["KD"] == [f"61.00 ± {np.std([60, 62], ddof=1):.2f}", "65.00 (n=1) (+4.00)"]
    assert "Runs of the grid: 6 (4 done, 0 partial, 2 todo)" in text
    assert "- `students/r8-r8/kd/mcmi/seed1`: RuntimeError: teacher missing" in text
    assert "epochs: teacher 3, MCMI fine-tune 1, students 2" in text and "MCMI lambda per teacher: r8 0.15" in text
    assert "| r8→r8 | KD | +5.00 (1/1 seeds gained; +5.00) |" in text
    assert " / " not in text.split("## Top-1")[1].split("## MCMI - MLL")[0]  # no paper values off CIFAR-100
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["command"] == "mcmi table1 --config t.yaml" and "paper" not in res
    assert not (runs["teachers/r8/mcmi"].out_dir / "teacher_eval.json").exists()  # nothing evaluated


def test_run_keys_relative_to_a_task_folder(tmp_path):
    """A binary task's or a semi-supervised cell's runs are listed relative to their own folder."""
    cfg = Grid(out=str(tmp_path / "task"))
    runs = [Run(f"binary/task/{r.key}", r.stage, r.out_dir, r.labels) for r in table1_runs(tmp_path / "task").values()]
    finish(runs[2], 0.5)
    res = collect_results(cfg, runs, config={}, root=tmp_path / "task")
    assert [s["run"] for s in res["students"]] == ["students/r8-r8/kd/mll/seed0"]
    assert collect_results(cfg, runs, config={})["students"][0]["run"] == "binary/task/students/r8-r8/kd/mll/seed0"
