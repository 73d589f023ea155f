"""Report of paper Table 1 (and Tables 10-11): student top-1 with MLL vs MCMI teachers, pair by method.

:func:`write_table1_report` reads every run folder of a :class:`~mcmi.experiments.table1.Table1Config`
grid and writes ``out/README.md`` (atomically) in the layout of the paper's Table 1 -- rows are
methods, columns are teacher-student pairs, each with an MLL and an MCMI column; the MCMI cell adds
the gain over MLL -- once for the best-epoch and once for the last-epoch top-1, with teacher
accuracy, LL and CMI rows, and ``out/results.json`` with every number. When the data set is
CIFAR-100 each cell also carries the paper's value (Table 1 means, Tables 10-11 MCMI spreads).

Cells whose per-pair method weights (DKD's beta, ReviewKD's loss weight) are not the authors'
config for that pair are marked: ``†`` the value of the nearest pair the authors give (named in a
footnote with its source), ``‡`` the method's class default (the pair table does not list the
pair, or ``use_pair_defaults`` is off). The teacher rows name the view of the training set their
LL and CMI were measured in (:mod:`mcmi.metrics.train_view`).
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mcmi.io import write_json, write_text
from mcmi.reports.tables import fmt_mean_std, markdown_table, mean_std

METHOD_NAMES = {
    "kd": "KD", "at": "AT", "pkt": "PKT", "sp": "SP", "cc": "CC", "rkd": "RKD", "vid": "VID", "crd": "CRD",
    "dkd": "DKD", "reviewkd": "ReviewKD", "hsakd": "HSAKD", "fitnet": "FitNet",
}

# ----------------------------------------------------------------------------------------------
# The paper's numbers, transcribed from "Bayes Conditional Distribution Estimation for Knowledge
# Distillation" (MCMI, ICLR 2024). Keys are mcmi registry names: pairs "<teacher>-<student>".
# Checked: every MCMI value equals the MLL value plus the printed gain (PAPER_GAINS), and the
# means of Tables 10-11 equal Table 1's MCMI column (tests/test_table1.py re-checks both).
# ----------------------------------------------------------------------------------------------

#: Table 1, teacher rows: (test accuracy %, LL on the training set, CMI on the training set).
PAPER_TEACHERS: dict[str, dict[str, tuple[float, float, float]]] = {
    "resnet56": {"mll": (72.34, -0.101, 0.1583), "mcmi": (72.09, -0.344, 0.4428)},
    "resnet110": {"mll": (74.31, -0.033, 0.0605), "mcmi": (73.60, -0.246, 0.3474)},
    "wrn_40_2": {"mll": (75.61, -0.052, 0.0255), "mcmi": (75.21, -0.132, 0.1951)},
    "vgg13": {"mll": (74.64, -0.007, 0.0152), "mcmi": (73.96, -0.076, 0.1298)},
    "resnet50": {"mll": (79.34, -0.004, 0.0085), "mcmi": (78.45, -0.083, 0.1065)},
    "resnet32x4": {"mll": (79.41, -0.004, 0.0059), "mcmi": (78.70, -0.035, 0.0586)},
}
#: Table 1, student rows: the student trained alone (test accuracy %).
PAPER_STUDENT_BASELINE: dict[str, float] = {
    "resnet20": 69.06,
    "resnet32": 71.14,
    "wrn_16_2": 73.26,
    "wrn_40_1": 71.98,
    "vgg8": 70.36,
    "mobilenetv2": 64.60,
    "shufflenetv1": 70.50,
    "shufflenetv2": 71.82,
}
#: Table 1: student test accuracy (%), mean of 5 runs, as (MLL teacher, MCMI teacher).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "resnet56-resnet20": {
        "kd": (70.66, 70.84), "at": (70.55, 70.89), "pkt": (70.34, 70.96), "sp": (69.67, 70.98),
        "cc": (69.63, 69.98), "rkd": (69.61, 70.68), "vid": (70.38, 70.64), "crd": (71.16, 71.40),
        "dkd": (71.97, 72.31), "reviewkd": (71.89, 72.31), "hsakd": (72.58, 72.70),
    },
    "resnet110-resnet20": {
        "kd": (70.67, 70.85), "at": (70.22, 70.68), "pkt": (70.25, 71.03), "sp": (70.04, 70.83),
        "cc": (69.48, 70.02), "rkd": (69.25, 70.24), "vid": (70.16, 70.69), "crd": (71.46, 71.93),
        "dkd": (71.51, 71.83), "reviewkd": (71.65, 72.11), "hsakd": (72.64, 73.15),
    },
    "resnet110-resnet32": {
        "kd": (73.08, 73.48), "at": (72.31, 73.96), "pkt": (72.61, 72.92), "sp": (72.69, 73.34),
        "cc": (71.48, 71.71), "rkd": (71.82, 72.65), "vid": (72.61, 73.10), "crd": (73.48, 74.03),
        "dkd": (74.11, 74.36), "reviewkd": (73.89, 74.01), "hsakd": (74.97, 75.71),
    },
    "wrn_40_2-wrn_16_2": {
        "kd": (74.92, 75.42), "at": (74.08, 74.49), "pkt": (74.54, 75.01), "sp": (73.83, 74.60),
        "cc": (73.56, 74.00), "rkd": (73.35, 73.97), "vid": (74.11, 74.44), "crd": (75.48, 75.82),
        "dkd": (76.24, 76.66), "reviewkd": (76.12, 76.29), "hsakd": (77.20, 77.36),
    },
    "wrn_40_2-wrn_40_1": {
        "kd": (73.54, 74.53), "at": (72.77, 73.25), "pkt": (73.45, 74.15), "sp": (72.43, 73.60),
        "cc": (72.21, 72.50), "rkd": (72.22, 72.66), "vid": (73.30, 73.58), "crd": (74.14, 74.86),
        "dkd": (74.81, 75.63), "reviewkd": (75.09, 75.47), "hsakd": (77.00, 77.55),
    },
    "vgg13-vgg8": {
        "kd": (72.98, 73.83), "at": (71.43, 71.76), "pkt": (72.88, 73.35), "sp": (72.68, 73.29),
        "cc": (70.71, 71.02), "rkd": (71.48, 72.03), "vid": (71.23, 71.93), "crd": (73.94, 74.23),
        "dkd": (74.68, 74.87), "reviewkd": (74.84, 74.96), "hsakd": (75.42, 75.86),
    },
    "resnet50-mobilenetv2": {
        "kd": (67.35, 70.23), "at": (58.58, 60.03), "pkt": (66.52, 67.42), "sp": (68.08, 69.07),
        "cc": (65.43, 66.76), "rkd": (64.43, 65.11), "vid": (67.57, 67.61), "crd": (69.11, 69.70),
        "dkd": (70.35, 71.70), "reviewkd": (69.89, 70.63), "hsakd": (71.83, 72.98),
    },
    "resnet50-vgg8": {
        "kd": (73.81, 74.59), "at": (71.84, 72.19), "pkt": (73.10, 73.43), "sp": (73.34, 74.14),
        "cc": (70.25, 70.90), "rkd": (71.50, 72.10), "vid": (70.30, 70.69), "crd": (74.30, 74.86),
        "dkd": (73.94, 75.35), "reviewkd": (73.43, 74.20), "hsakd": (75.87, 76.45),
    },
    "resnet32x4-shufflenetv1": {
        "kd": (74.07, 75.90), "at": (71.73, 75.05), "pkt": (74.10, 75.21), "sp": (73.48, 76.56),
        "cc": (71.14, 71.77), "rkd": (72.28, 73.59), "vid": (73.38, 74.58), "crd": (75.11, 76.82),
        "dkd": (76.45, 77.21), "reviewkd": (77.45, 77.78), "hsakd": (79.51, 79.77),
    },
    "resnet32x4-shufflenetv2": {
        "kd": (74.45, 76.32), "at": (72.73, 75.21), "pkt": (74.69, 76.34), "sp": (74.56, 76.70),
        "cc": (71.29, 73.02), "rkd": (73.21, 74.67), "vid": (73.40, 74.67), "crd": (75.65, 77.54),
        "dkd": (77.07, 77.66), "reviewkd": (77.78, 78.23), "hsakd": (79.93, 80.01),
    },
    "wrn_40_2-shufflenetv1": {
        "kd": (74.83, 76.45), "at": (73.32, 75.61), "pkt": (73.89, 75.39), "sp": (74.52, 76.82),
        "cc": (71.38, 71.80), "rkd": (72.21, 74.26), "vid": (73.61, 75.03), "crd": (76.05, 76.62),
        "dkd": (76.70, 77.42), "reviewkd": (77.14, 77.56), "hsakd": (78.51, 78.87),
    },
    "vgg13-mobilenetv2": {
        "kd": (67.37, 69.14), "at": (59.40, 62.07), "pkt": (67.13, 68.37), "sp": (66.30, 67.83),
        "cc": (64.86, 65.45), "rkd": (64.52, 65.37), "vid": (65.56, 65.77), "crd": (69.70, 69.98),
        "dkd": (69.71, 70.35), "reviewkd": (70.37, 71.70), "hsakd": (71.09, 72.80),
    },
}
#: Table 1's printed subscripts: MCMI - MLL (kept to check the transcription).
PAPER_GAINS: dict[str, dict[str, float]] = {
    "resnet56-resnet20": {
        "kd": 0.18, "at": 0.34, "pkt": 0.62, "sp": 1.31, "cc": 0.35, "rkd": 1.07,
        "vid": 0.26, "crd": 0.24, "dkd": 0.34, "reviewkd": 0.42, "hsakd": 0.12,
    },
    "resnet110-resnet20": {
        "kd": 0.18, "at": 0.46, "pkt": 0.78, "sp": 0.79, "cc": 0.54, "rkd": 0.99,
        "vid": 0.53, "crd": 0.47, "dkd": 0.32, "reviewkd": 0.46, "hsakd": 0.51,
    },
    "resnet110-resnet32": {
        "kd": 0.40, "at": 1.65, "pkt": 0.31, "sp": 0.65, "cc": 0.23, "rkd": 0.83,
        "vid": 0.49, "crd": 0.55, "dkd": 0.25, "reviewkd": 0.12, "hsakd": 0.74,
    },
    "wrn_40_2-wrn_16_2": {
        "kd": 0.50, "at": 0.41, "pkt": 0.47, "sp": 0.77, "cc": 0.44, "rkd": 0.62,
        "vid": 0.33, "crd": 0.34, "dkd": 0.42, "reviewkd": 0.17, "hsakd": 0.16,
    },
    "wrn_40_2-wrn_40_1": {
        "kd": 0.99, "at": 0.48, "pkt": 0.70, "sp": 1.17, "cc": 0.29, "rkd": 0.44,
        "vid": 0.28, "crd": 0.72, "dkd": 0.82, "reviewkd": 0.38, "hsakd": 0.55,
    },
    "vgg13-vgg8": {
        "kd": 0.85, "at": 0.33, "pkt": 0.47, "sp": 0.61, "cc": 0.31, "rkd": 0.55,
        "vid": 0.70, "crd": 0.29, "dkd": 0.19, "reviewkd": 0.12, "hsakd": 0.44,
    },
    "resnet50-mobilenetv2": {
        "kd": 2.88, "at": 1.45, "pkt": 0.90, "sp": 0.99, "cc": 1.33, "rkd": 0.68,
        "vid": 0.04, "crd": 0.59, "dkd": 1.35, "reviewkd": 0.74, "hsakd": 1.15,
    },
    "resnet50-vgg8": {
        "kd": 0.78, "at": 0.35, "pkt": 0.33, "sp": 0.80, "cc": 0.65, "rkd": 0.60,
        "vid": 0.39, "crd": 0.56, "dkd": 1.41, "reviewkd": 0.77, "hsakd": 0.58,
    },
    "resnet32x4-shufflenetv1": {
        "kd": 1.83, "at": 3.32, "pkt": 1.11, "sp": 3.08, "cc": 0.63, "rkd": 1.31,
        "vid": 1.20, "crd": 1.71, "dkd": 0.76, "reviewkd": 0.33, "hsakd": 0.26,
    },
    "resnet32x4-shufflenetv2": {
        "kd": 1.87, "at": 2.48, "pkt": 1.65, "sp": 2.14, "cc": 1.73, "rkd": 1.46,
        "vid": 1.27, "crd": 1.89, "dkd": 0.59, "reviewkd": 0.45, "hsakd": 0.08,
    },
    "wrn_40_2-shufflenetv1": {
        "kd": 1.62, "at": 2.29, "pkt": 1.50, "sp": 2.30, "cc": 0.42, "rkd": 2.05,
        "vid": 1.42, "crd": 0.57, "dkd": 0.72, "reviewkd": 0.42, "hsakd": 0.36,
    },
    "vgg13-mobilenetv2": {
        "kd": 1.77, "at": 2.67, "pkt": 1.24, "sp": 1.53, "cc": 0.59, "rkd": 0.85,
        "vid": 0.21, "crd": 0.28, "dkd": 0.64, "reviewkd": 1.33, "hsakd": 1.71,
    },
}
#: Tables 10 (same architectures) and 11 (different): MCMI-teacher student accuracy as
#: (mean, spread); the paper calls the spread a variance, it prints mean ± spread.
PAPER_MCMI_MEAN_STD: dict[str, dict[str, tuple[float, float]]] = {
    "resnet56-resnet20": {
        "kd": (70.84, 0.10), "at": (70.89, 0.28), "pkt": (70.96, 0.38), "sp": (70.98, 0.07),
        "cc": (69.98, 0.47), "rkd": (70.68, 0.13), "vid": (70.64, 0.25), "crd": (71.40, 0.13),
        "dkd": (72.31, 0.12), "reviewkd": (72.31, 0.26), "hsakd": (72.70, 0.28),
    },
    "resnet110-resnet20": {
        "kd": (70.85, 0.20), "at": (70.68, 0.32), "pkt": (71.03, 0.12), "sp": (70.83, 0.26),
        "cc": (70.02, 0.18), "rkd": (70.24, 0.17), "vid": (70.69, 0.09), "crd": (71.93, 0.17),
        "dkd": (71.83, 0.18), "reviewkd": (72.11, 0.30), "hsakd": (73.15, 0.16),
    },
    "resnet110-resnet32": {
        "kd": (73.48, 0.13), "at": (73.96, 0.18), "pkt": (72.92, 0.14), "sp": (73.34, 0.18),
        "cc": (71.71, 0.23), "rkd": (72.65, 0.24), "vid": (73.10, 0.13), "crd": (74.03, 0.08),
        "dkd": (74.36, 0.14), "reviewkd": (74.01, 0.43), "hsakd": (75.71, 0.13),
    },
    "wrn_40_2-wrn_16_2": {
        "kd": (75.42, 0.12), "at": (74.49, 0.15), "pkt": (75.01, 0.15), "sp": (74.60, 0.27),
        "cc": (74.00, 0.24), "rkd": (73.97, 0.15), "vid": (74.44, 0.25), "crd": (75.82, 0.15),
        "dkd": (76.66, 0.22), "reviewkd": (76.29, 0.16), "hsakd": (77.36, 0.17),
    },
    "wrn_40_2-wrn_40_1": {
        "kd": (74.53, 0.34), "at": (73.25, 0.28), "pkt": (74.15, 0.28), "sp": (73.60, 0.16),
        "cc": (72.50, 0.16), "rkd": (72.66, 0.21), "vid": (73.58, 0.28), "crd": (74.86, 0.11),
        "dkd": (75.63, 0.09), "reviewkd": (75.47, 0.14), "hsakd": (77.55, 0.22),
    },
    "vgg13-vgg8": {
        "kd": (73.83, 0.22), "at": (71.76, 0.16), "pkt": (73.35, 0.20), "sp": (73.29, 0.14),
        "cc": (71.02, 0.29), "rkd": (72.03, 0.28), "vid": (71.93, 0.10), "crd": (74.23, 0.05),
        "dkd": (74.87, 0.11), "reviewkd": (74.96, 0.18), "hsakd": (75.86, 0.20),
    },
    "resnet50-mobilenetv2": {
        "kd": (70.23, 0.34), "at": (60.03, 0.21), "pkt": (67.42, 0.18), "sp": (69.07, 0.17),
        "cc": (66.76, 0.42), "rkd": (65.11, 0.49), "vid": (67.61, 0.19), "crd": (69.70, 0.69),
        "dkd": (71.70, 0.35), "reviewkd": (70.63, 0.26), "hsakd": (72.98, 0.26),
    },
    "resnet50-vgg8": {
        "kd": (74.59, 0.16), "at": (72.19, 0.94), "pkt": (73.43, 0.17), "sp": (74.14, 0.19),
        "cc": (70.90, 0.20), "rkd": (72.10, 0.27), "vid": (70.69, 0.17), "crd": (74.86, 0.17),
        "dkd": (75.35, 0.13), "reviewkd": (74.20, 0.85), "hsakd": (76.45, 0.19),
    },
    "resnet32x4-shufflenetv1": {
        "kd": (75.90, 0.11), "at": (75.05, 0.17), "pkt": (75.21, 0.27), "sp": (76.56, 0.29),
        "cc": (71.77, 0.17), "rkd": (73.59, 0.18), "vid": (74.58, 0.23), "crd": (76.82, 0.22),
        "dkd": (77.21, 0.14), "reviewkd": (77.78, 0.31), "hsakd": (79.77, 0.09),
    },
    "resnet32x4-shufflenetv2": {
        "kd": (76.32, 0.47), "at": (75.21, 0.13), "pkt": (76.34, 0.18), "sp": (76.70, 0.18),
        "cc": (73.02, 0.17), "rkd": (74.67, 0.29), "vid": (74.67, 0.25), "crd": (77.54, 0.10),
        "dkd": (77.66, 0.19), "reviewkd": (78.23, 0.14), "hsakd": (80.01, 0.16),
    },
    "wrn_40_2-shufflenetv1": {
        "kd": (76.45, 0.27), "at": (75.61, 0.25), "pkt": (75.39, 0.14), "sp": (76.82, 0.14),
        "cc": (71.80, 0.19), "rkd": (74.26, 0.31), "vid": (75.03, 0.17), "crd": (76.62, 0.27),
        "dkd": (77.42, 0.45), "reviewkd": (77.56, 0.32), "hsakd": (78.87, 0.42),
    },
    "vgg13-mobilenetv2": {
        "kd": (69.14, 0.22), "at": (62.07, 0.26), "pkt": (68.37, 0.35), "sp": (67.83, 0.28),
        "cc": (65.45, 0.39), "rkd": (65.37, 0.10), "vid": (65.77, 0.36), "crd": (69.98, 0.13),
        "dkd": (70.35, 0.08), "reviewkd": (71.70, 0.46), "hsakd": (72.80, 0.11),
    },
}
#: Table 1's asterisks: (pair, method) whose MLL value the paper reproduced locally.
PAPER_REPRODUCED: frozenset[tuple[str, str]] = frozenset({
    ("resnet110-resnet20", "dkd"),
    ("resnet110-resnet20", "reviewkd"),
    ("resnet110-resnet20", "hsakd"),
    ("resnet110-resnet32", "hsakd"),
    ("vgg13-vgg8", "hsakd"),
    ("resnet50-vgg8", "dkd"),
    ("resnet50-vgg8", "reviewkd"),
    ("resnet50-mobilenetv2", "hsakd"),
    ("resnet50-vgg8", "hsakd"),
    ("resnet32x4-shufflenetv1", "hsakd"),
    ("vgg13-mobilenetv2", "hsakd"),
})


# ------------------------------------------------------------------------------------ helpers
def arch_family(name: str) -> str:
    """``resnet56`` -> ``resnet``, ``wrn_40_2`` -> ``wrn``, ``mobilenetv2`` -> ``mobilenetv``."""
    m = re.match(r"[a-z]+", name)
    return m.group(0) if m else name


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the source tree (marked when it has uncommitted changes); None
    outside a checkout (:func:`mcmi.engine.provenance.git_commit`)."""
    from mcmi.engine.provenance import git_commit as commit

    return commit()


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def _stats(values: Sequence[float]) -> dict[str, Any] | None:
    if not values:
        return None
    m, s = mean_std(values)
    return {"mean": m, "std": s, "n": len(values), "values": list(values)}


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _top5_stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``best_top5`` / ``last_top5``: statistics of the runs' top-5 (None where none has one)."""
    return {f"{which}_top5": _stats([r[f"{which}_top5"] for r in rows if r.get(f"{which}_top5") is not None])
            for which in ("best", "last")}


# ------------------------------------------------------------------------------------ collect
def collect_results(cfg, runs) -> dict[str, Any]:
    """Every number of the grid from its run folders (accuracies in %)."""
    from mcmi.config import to_dict
    from mcmi.experiments.table1 import read_summary, run_status, teacher_key

    status: dict[str, int] = {"done": 0, "partial": 0, "todo": 0}
    failures = []
    for run in runs:
        st = run_status(run)
        status[st] += 1
        err = run.out_dir / "error.txt"
        if st != "done" and err.is_file():
            lines = err.read_text(errors="replace").strip().splitlines()
            failures.append({"run": run.key, "error": lines[0] if lines else ""})

    teachers: dict[str, dict[str, Any]] = {}
    for arch in dict.fromkeys(p.teacher for p in cfg.pairs):
        for kind in cfg.teacher_kinds:
            d = Path(cfg.out) / teacher_key(arch, kind)
            s = read_summary(d) or {}
            ev = _read_json(d / "teacher_eval.json") or {}
            train = ev.get("train") or {}
            teachers.setdefault(arch, {})[kind] = {
                "done": bool(s), "best_acc": _pct(s.get("best_acc")), "last_acc": _pct(s.get("last_acc")),
                "best_epoch": s.get("best_epoch"), "train_acc": _pct(train.get("accuracy")),
                "train_ll": train.get("log_likelihood"), "train_cmi": train.get("cmi"),
                # test top-5 (summaries written before mcmi recorded it have none)
                "best_top5": _pct(s.get("best_top5")), "last_top5": _pct(s.get("last_top5")),
                # teacher_eval.json files without a view were computed unaugmented
                "train_view": (ev.get("view") or "train-plain") if train else None,
                "train_view_seed": ev.get("view_seed") if train else None,
            }

    students, baselines = [], []
    for run in runs:
        if run.stage not in ("student", "baseline"):
            continue
        s = read_summary(run.out_dir)
        if s is None:
            continue
        row = {"run": run.key, "student": run.label("student"), "seed": int(run.label("seed")),
               "best_acc": _pct(s.get("best_acc")), "last_acc": _pct(s.get("last_acc")),
               "best_epoch": s.get("best_epoch"), "epochs": s.get("epochs"),
               "best_top5": _pct(s.get("best_top5")), "last_top5": _pct(s.get("last_top5"))}
        if run.stage == "baseline":
            baselines.append(row)
        else:
            students.append({"pair": run.label("pair"), "teacher": run.label("teacher"), "method": run.label("method"),
                             "kind": run.label("kind"), **row})

    cells: dict[str, dict[str, Any]] = {}
    for pair in cfg.pairs:
        for method in cfg.methods:
            cell: dict[str, Any] = {}
            for kind in cfg.teacher_kinds:
                rows = [r for r in students if r["pair"] == pair.name and r["method"] == method and r["kind"] == kind]
                cell[kind] = {which: _stats([r[f"{which}_acc"] for r in rows if r[f"{which}_acc"] is not None])
                              for which in ("best", "last")}
                cell[kind].update(_top5_stats(rows))
            for which in ("best", "last"):
                a, b = (cell.get(k, {}).get(which) for k in ("mll", "mcmi"))
                cell[f"gain_{which}"] = b["mean"] - a["mean"] if a and b else None
                # paired by seed: the seed fixes the student's initialization and data order for both kinds
                by_seed = {k: {r["seed"]: r[f"{which}_acc"] for r in students if r["pair"] == pair.name
                               and r["method"] == method and r["kind"] == k and r[f"{which}_acc"] is not None}
                           for k in ("mll", "mcmi")}
                seeds = sorted(set(by_seed["mll"]) & set(by_seed["mcmi"]))
                diffs = [by_seed["mcmi"][sd] - by_seed["mll"][sd] for sd in seeds]
                cell[f"paired_{which}"] = {"seeds": seeds, "diffs": diffs, **(_stats(diffs) or {})} if diffs else None
            w = method_weight_status(cfg, pair, method)
            cell["weights"] = None if w is None else {
                "status": w.status, "values": w.values, "source": w.source,
                "source_pair": list(w.source_pair) if w.source_pair else None, "reason": w.reason}
            cells.setdefault(pair.name, {})[method] = cell
    base_cells = {}
    for student in dict.fromkeys(p.student for p in cfg.pairs):
        rows = [r for r in baselines if r["student"] == student]
        base_cells[student] = {which: _stats([r[f"{which}_acc"] for r in rows if r[f"{which}_acc"] is not None])
                               for which in ("best", "last")}
        base_cells[student].update(_top5_stats(rows))
    return {
        "table": "paper Table 1 (student top-1 %, MLL vs MCMI teachers)",
        "data": to_dict(cfg.data), "status": status, "failures": failures,
        "teachers": teachers, "baselines": base_cells, "cells": cells,
        "students": students, "baseline_runs": baselines, "config": to_dict(cfg),
    }


def method_weight_status(cfg, pair, method: str):
    """How ``method``'s per-pair weights are set for ``pair`` in grid ``cfg``
    (:func:`mcmi.methods.pair_defaults.pair_default_status`; the grid's own ``method_args`` and
    ``pair_method_args`` are explicit and never marked), or None for methods without them."""
    from mcmi.experiments.table1 import grid_method_args
    from mcmi.methods.pair_defaults import pair_default_status

    return pair_default_status(method, pair.teacher, pair.student, explicit=grid_method_args(cfg, pair, method),
                               use_table=cfg.use_pair_defaults)


# ------------------------------------------------------------------------------------ render
FALLBACK_MARKS = {"nearest-pair": "†", "class-default": "‡"}


def fallback_mark(cell: Mapping[str, Any]) -> str:
    """``†`` / ``‡`` for a cell whose per-pair weights are a fallback (see the module notes)."""
    return FALLBACK_MARKS.get(((cell.get("weights") or {}).get("status")) or "", "")


def _value_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())


def fallback_notes(cfg, res: Mapping[str, Any], pairs) -> list[str]:
    """Footnotes of the marked cells of ``pairs``: the values, the source pair and file."""
    notes = []
    for p in pairs:
        for method in cfg.methods:
            w = (res["cells"][p.name][method].get("weights") or {})
            mark = FALLBACK_MARKS.get(w.get("status") or "")
            if not mark:
                continue
            name = METHOD_NAMES.get(method, method)
            if w["status"] == "nearest-pair":
                t, st = w["source_pair"]
                notes.append(f"{mark} {name}, {p.teacher}→{p.student}: {_value_text(w['values'])}. The authors give no "
                             f"config for this pair; the value of the nearest pair {t}→{st}, {w['source']}. Why that "
                             f"pair: {w['reason']}.")
            else:
                notes.append(f"{mark} {name}, {p.teacher}→{p.student}: {_value_text(w['values'])}. No per-pair value "
                             f"{'(use_pair_defaults is off)' if not cfg.use_pair_defaults else 'for this pair'}; "
                             f"the method's default: {w['source']}.")
    return notes


def _fmt(st: Mapping[str, Any] | None, n_full: int) -> str:
    if not st:
        return "–"
    text = fmt_mean_std(st["values"])
    return text + (f" (n={st['n']})" if st["n"] < n_full else "")


def _num(x: Any, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _table(cfg, res: Mapping[str, Any], pairs, which: str, paper: bool) -> str:
    n_full = len(cfg.seeds)
    kinds = list(cfg.teacher_kinds)
    header = [""] + [f"{p.teacher}→{p.student} {k.upper()}" for p in pairs for k in kinds]
    rows: list[list[str]] = []
    for label, field_name, digits, idx in (("Teacher top-1", f"{which}_acc", 2, 0),
                                           ("Teacher LL (train)", "train_ll", 3, 1),
                                           ("Teacher CMI (train)", "train_cmi", 4, 2)):
        row = [label]
        for p in pairs:
            for k in kinds:
                text = _num(res["teachers"][p.teacher][k][field_name], digits)
                if paper and p.teacher in PAPER_TEACHERS:
                    text += f" / {PAPER_TEACHERS[p.teacher][k][idx]:.{digits}f}"
                row.append(text)
        rows.append(row)
    if cfg.student_baseline:
        row = ["Student alone"]
        for p in pairs:
            text = _fmt(res["baselines"][p.student][which], n_full)
            if paper and p.student in PAPER_STUDENT_BASELINE:
                text += f" / {PAPER_STUDENT_BASELINE[p.student]:.2f}"
            row += [text] * len(kinds)
        rows.append(row)
    for method in cfg.methods:
        row = [METHOD_NAMES.get(method, method)]
        for p in pairs:
            cell = res["cells"][p.name][method]
            ref = PAPER_TABLE1.get(p.name, {}).get(method) if paper else None
            star = "*" if (p.name, method) in PAPER_REPRODUCED else ""
            mark = fallback_mark(cell)
            for k in kinds:
                text = _fmt(cell[k][which], n_full) + (f" {mark}" if mark else "")
                gain = cell.get(f"gain_{which}")
                if k == "mcmi" and gain is not None:
                    text += f" ({gain:+.2f})"
                if ref is not None:
                    if k == "mll":
                        text += f" / {ref[0]:.2f}{star}"
                    else:
                        spread = PAPER_MCMI_MEAN_STD[p.name][method][1]
                        text += f" / {ref[1]:.2f} ± {spread:.2f} ({ref[1] - ref[0]:+.2f})"
                row.append(text)
        rows.append(row)
    return markdown_table(header, rows)


def has_top5(res: Mapping[str, Any]) -> bool:
    """Whether any run of the results recorded a top-5 accuracy (older results have none)."""
    cells = [c.get(k) or {} for per in (res.get("cells") or {}).values() for c in per.values() for k in ("mll", "mcmi")]
    cells += list((res.get("baselines") or {}).values())
    teachers = [t for per in (res.get("teachers") or {}).values() for t in per.values()]
    return any(c.get(f"{w}_top5") for c in cells for w in ("best", "last")) or any(
        t.get(f"{w}_top5") is not None for t in teachers for w in ("best", "last"))


def _top5_table(cfg, res: Mapping[str, Any], pairs, which: str) -> str:
    """Table 1's layout with test top-5 (%): teacher row, student alone, one row per method (the
    MCMI cell adds the gain of the means). The paper reports no top-5, so there is no reference."""
    n_full = len(cfg.seeds)
    kinds = list(cfg.teacher_kinds)
    key = f"{which}_top5"
    header = [""] + [f"{p.teacher}→{p.student} {k.upper()}" for p in pairs for k in kinds]
    rows = [["Teacher top-5"] + [_num(res["teachers"][p.teacher][k].get(key), 2) for p in pairs for k in kinds]]
    if cfg.student_baseline:
        rows.append(["Student alone"] + [_fmt((res["baselines"].get(p.student) or {}).get(key), n_full)
                                         for p in pairs for _ in kinds])
    for method in cfg.methods:
        row = [METHOD_NAMES.get(method, method)]
        for p in pairs:
            cell = res["cells"][p.name][method]
            for k in kinds:
                text = _fmt((cell.get(k) or {}).get(key), n_full)
                a, b = ((cell.get(kk) or {}).get(key) for kk in ("mll", "mcmi"))
                if k == "mcmi" and a and b:
                    text += f" ({b['mean'] - a['mean']:+.2f})"
                row.append(text)
        rows.append(row)
    return markdown_table(header, rows)


def _top5_sections(cfg, res: Mapping[str, Any], groups) -> list[str]:
    """The top-5 tables, when the runs recorded top-5 (none for results of older runs)."""
    if not has_top5(res):
        return []
    lines = ["", "Top-5 tables: test top-5 accuracy (%) of the same runs (at the best top-1 epoch, and at the "
             "last epoch), mean ± sample std over seeds; `–` for runs that recorded none (older runs, or fewer "
             "than 5 classes)."]
    for which, title in (("best", "Top-5 at the best epoch"), ("last", "Top-5 at the last epoch")):
        lines += ["", f"## {title} (%)"]
        for group_title, pairs in groups:
            if pairs:
                lines += ["", f"### {group_title}", "", _top5_table(cfg, res, pairs, which)]
    return lines


def render_report(cfg, res: Mapping[str, Any], command: str = "", commit: str | None = None,
                  outcomes: Sequence[Any] = ()) -> str:
    """The Markdown of ``out/README.md``."""
    from mcmi.config import to_dict
    from mcmi.experiments.table1 import recipe_data

    paper = cfg.data.name == "cifar100"
    st = res["status"]
    lines = [f"# Paper Table 1: students of MLL vs MCMI teachers ({cfg.data.name})", ""]
    lines += ["Command:", "", f"    {command or '(library call: mcmi.experiments.table1.run_table1)'}", ""]
    lines += [f"Commit: `{commit or 'unknown (not a git checkout)'}`  ",
              f"Written: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}", ""]
    total = sum(st.values())
    lines += [f"Runs of the grid: {total} ({st['done']} done, {st['partial']} partial, {st['todo']} todo). "
              f"Grid: {len(cfg.pairs)} pairs x {len(cfg.methods)} methods x {len(cfg.teacher_kinds)} teacher kinds "
              f"x {len(cfg.seeds)} seeds (seeds {', '.join(map(str, cfg.seeds))})."]
    if outcomes:
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o.result] = counts.get(o.result, 0) + 1
        lines += ["", "This invocation: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "."]
    if res["failures"]:
        lines += ["", "Runs that failed (see `error.txt` in their folders):", ""]
        lines += [f"- `{f['run']}`: {f['error']}" for f in res["failures"]]
    epochs = {name: (recipe_data(getattr(cfg, name)).get("train") or {}).get("epochs")
              for name in ("teacher_recipe", "mcmi_recipe", "student_recipe")}
    data = cfg.data
    how = "the first in file order" if data.subset_mode == "first" else "the same number from every class"
    subset = f", {data.train_subset} training images ({how})" if data.train_subset else ""
    lines += ["", f"Setting: data `{data.name}`{subset}; epochs: teacher {epochs['teacher_recipe']}, "
              f"MCMI fine-tune {epochs['mcmi_recipe']}, students {epochs['student_recipe']}; "
              f"students read the teachers' `{cfg.teacher_checkpoint}.pt`; "
              "MCMI lambda per teacher: " + ", ".join(f"{a} {cfg.lambda_for(a):g}" for a in dict.fromkeys(
                  p.teacher for p in cfg.pairs)) + "."]
    from mcmi.metrics.train_view import views_sentence

    lines += ["", "Cells: top-1 accuracy (%) of the student, mean ± sample std over seeds (n when fewer seeds than "
              "the grid's have finished); the MCMI cell adds the gain of the means over the MLL cell. Teacher rows: "
              "test top-1 of the teacher at the same epoch choice; LL and CMI on the training set for the "
              "checkpoint the students read. " + views_sentence(
                  {"view": t["train_view"], "view_seed": t["train_view_seed"]}
                  for kinds in res["teachers"].values() for t in kinds.values() if t.get("train_view"))]
    if any(fallback_mark(c) for per in res["cells"].values() for c in per.values()):
        lines += ["", "DKD's beta and ReviewKD's loss weight are the methods' authors' values for each pair "
                  "(mdistiller's configs, ReviewKD's CIFAR-100 script) where they give one; † marks cells where they "
                  "give none and the value of the nearest pair they give is used, ‡ cells with the method's default "
                  "(footnotes under each table)."]
    if paper:
        lines += ["", "After ` / `: the paper's Table 1 (mean of 5 runs, 240 epochs; MCMI spread from Tables 10-11, "
                  "gain in parentheses; * marks values the paper reproduced locally). Compare with ours only when "
                  "the recipes are the paper's."]
    groups = [("Teacher and student of the same architecture family",
               [p for p in cfg.pairs if arch_family(p.teacher) == arch_family(p.student)]),
              ("Teacher and student of different architectures",
               [p for p in cfg.pairs if arch_family(p.teacher) != arch_family(p.student)])]
    for which, title in (("best", "Top-1 at the best epoch"), ("last", "Top-1 at the last epoch")):
        lines += ["", f"## {title} (%)"]
        for group_title, pairs in groups:
            if pairs:
                lines += ["", f"### {group_title}", "", _table(cfg, res, pairs, which, paper)]
                notes = fallback_notes(cfg, res, pairs)
                if notes:
                    lines += [""] + [f"{n}  " if i < len(notes) - 1 else n for i, n in enumerate(notes)]
    lines += _top5_sections(cfg, res, groups)
    if {"mll", "mcmi"} <= set(cfg.teacher_kinds):
        lines += ["", "## MCMI - MLL, paired by seed (points of top-1)", "",
                  "Each seed's MCMI student minus its MLL student (same initialization and data order); mean ± "
                  "sample std over the seeds where both finished, and how many of them gained.", ""]
        rows = []
        for pair in cfg.pairs:
            for method in cfg.methods:
                mark = fallback_mark(res["cells"][pair.name][method])
                row = [f"{pair.teacher}→{pair.student}", METHOD_NAMES.get(method, method) + (f" {mark}" if mark else "")]
                for which in ("best", "last"):
                    pg = res["cells"][pair.name][method].get(f"paired_{which}")
                    row.append("–" if not pg else f"{fmt_mean_std(pg['diffs'], signed=True)} "
                               f"({sum(d > 0 for d in pg['diffs'])}/{len(pg['diffs'])} seeds gained; "
                               + ", ".join(f"{d:+.2f}" for d in pg["diffs"]) + ")")
                rows.append(row)
        lines += [markdown_table(["pair", "method", "best epoch", "last epoch"], rows)]
    lines += ["", "## Configuration", "", "```yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).rstrip(), "```",
              "", "All numbers, per run too: `results.json`.", ""]
    return "\n".join(lines)


def write_table1_report(cfg, runs=None, command: str = "", outcomes: Sequence[Any] = ()) -> Path:
    """Write ``out/README.md`` and ``out/results.json`` of the grid ``cfg`` (all its runs, whatever
    an ``--only`` filter trained). Returns the README path."""
    from mcmi.experiments.table1 import expand_grid

    runs = expand_grid(cfg) if runs is None else runs
    res = collect_results(cfg, runs)
    commit = git_commit()
    out = Path(cfg.out)
    res = {**res, "command": command, "commit": commit}
    if cfg.data.name == "cifar100":
        res["paper"] = {"teachers": PAPER_TEACHERS, "student_baseline": PAPER_STUDENT_BASELINE,
                        "table1": PAPER_TABLE1, "mcmi_mean_std_tables10_11": PAPER_MCMI_MEAN_STD,
                        "reproduced_by_the_paper": sorted(map(list, PAPER_REPRODUCED))}
    write_json(out / "results.json", res)
    return write_text(out / "README.md", render_report(cfg, res, command, commit, outcomes))
