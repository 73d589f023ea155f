"""Teacher variants (paper Table 4, Table 7, Figs. 5 and 7): the grid, its sharing with Table 1, the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import write_npz

from mcmi.config import ConfigError, build
from mcmi.engine.rundir import read_summary
from mcmi.experiments import teacher_variants
from mcmi.experiments.teacher_variants import (
    TeacherVariantsConfig,
    plan,
)
from mcmi.grid.experiment import run_experiment
from mcmi.reports.teacher_variants import size_pairs
from mcmi.reports.variant_figures import size_section

ONE = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 2, "milestones": [1], "progress": False}}


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("variants") / "tiny.npz", n_train=64, n_test=32, size=32)


def config(tmp_path, npz, **extra):
    data = {
        "teacher": "resnet8", "student": "resnet8", "methods": ["kd"], "seeds": [0, 1],
        "data": {"name": "npz", "root": str(npz), "batch_size": 16, "eval_batch_size": 64},
        "teacher_recipe": ONE, "student_recipe": ONE,
        "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
        "variants": [{"name": "mll"},
                     {"name": "lam0", "init": "mll", "method": "mll"},
                     {"name": "mcmi", "init": "mll", "method": "mcmi", "method_args": {"lam": 0.2}},
                     {"name": "ls", "init": "mll", "method": "mll", "method_args": {"label_smoothing": 0.3}},
                     {"name": "es1", "recipe_overrides": {"train": {"epochs": 1}}}],
        "device": "cpu", "out": str(tmp_path / "out"), **extra}
    return build(TeacherVariantsConfig, data)


def test_variants_expand_to_table1_layout_and_validate(tmp_path, tiny_npz):
    cfg = config(tmp_path, tiny_npz)
    runs = {r.key: r for r in plan(cfg)}
    assert len(runs) == 5 + 5 * 2
    lam0 = runs["teachers/resnet8/lam0"].config
    assert lam0.method == "mll" and "lam" not in lam0.method_args  # the MCMI recipe's lam stays with MCMI
    assert lam0.train.epochs == 1 and lam0.train.schedule == "cosine"  # the fine-tuning recipe
    assert lam0.model.weights.endswith("teachers/resnet8/mll/last.pt")
    mcmi = runs["teachers/resnet8/mcmi"].config
    assert mcmi.method_args == {"lam": 0.2, "centroids": "frozen"}
    assert runs["teachers/resnet8/es1"].config.train.epochs == 1 and runs["teachers/resnet8/es1"].deps == ()
    student = runs["students/resnet8-resnet8/kd/ls/seed1"]
    assert student.deps == ("teachers/resnet8/ls",) and student.config.train.seed == 1
    assert student.config.teacher.weights.endswith("teachers/resnet8/ls/last.pt")
    bad = [{"variants": [{"name": "a", "init": "b"}, {"name": "b"}]},
           {"variants": [{"name": "a"}, {"name": "m", "method": "mcmi"}]},
           {"variants": [{"name": "a"}, {"name": "a"}]},
           {"variants": [{"name": "a/b"}]},
           {"methods": ["hsakd"]}]
    for extra in bad:
        with pytest.raises(ConfigError):
            config(tmp_path, tiny_npz, **extra)


def test_variants_end_to_end_report(tmp_path, tiny_npz):
    cfg = config(tmp_path, tiny_npz)
    runs, outcomes, report = run_experiment(teacher_variants.EXPERIMENT, cfg, command="mcmi teacher-variants --config v.yaml")
    assert {o.result for o in outcomes} == {"done"} and len(outcomes) == 15
    out = tmp_path / "out"
    res = json.loads((out / "teacher_variants/results.json").read_text())
    rows = {r["variant"]: r for r in res["variants"]}
    for name, row in rows.items():
        ev = json.loads((out / f"teachers/resnet8/{name}/teacher_eval.json").read_text())["train"]
        assert row["train_entropy"] == pytest.approx(ev["entropy"]) and 0 <= ev["entropy"] <= np.log(4) + 1e-9
        for seed in (0, 1):
            s = read_summary(out / f"students/resnet8-resnet8/kd/{name}/seed{seed}")
            assert row["students"]["kd"][seed] == {"seed": seed, "best": pytest.approx(100 * s["best_acc"]),
                                                   "last": pytest.approx(100 * s["last_acc"])}
    text = report.read_text()
    assert "mcmi teacher-variants --config v.yaml" in text and "| `ls` |" in text
    assert "gain vs mll (best, paired)" in text
    diffs = [rows["mcmi"]["students"]["kd"][s]["best"] - rows["mll"]["students"]["kd"][s]["best"] for s in (0, 1)]
    mcmi_row = next(ln for ln in text.splitlines() if ln.startswith("| `mcmi` |"))
    assert mcmi_row.rstrip(" |").endswith(f"{np.mean(diffs):+.2f} ± {np.std(diffs, ddof=1):.2f}")
    assert "mcmi lam=0.2, from mll" in mcmi_row  # how the teacher was trained (centroids policy left out)
    assert (out / "teacher_variants/variants.png").is_file() and (out / "teacher_variants/variants.pdf").is_file()
    assert "Teacher size" not in text  # one architecture: no size view
    # a rerun trains nothing and keeps the evaluations
    _, outcomes, _ = run_experiment(teacher_variants.EXPERIMENT, cfg)
    assert {o.result for o in outcomes} == {"skipped"}
    # the teachers' train figures name their view; the other view re-evaluates them (paper's script)
    assert "the unaugmented training set (view train-plain" in text
    plain = json.loads((out / "teachers/resnet8/mll/teacher_eval.json").read_text())
    cfg.teacher_eval_view = "train-augmented"
    _, _, report = run_experiment(teacher_variants.EXPERIMENT, cfg, report_only=True)
    ev = json.loads((out / "teachers/resnet8/mll/teacher_eval.json").read_text())
    assert ev["view"] == "train-augmented" and ev["view_seed"] == 0 and ev["train"]["cmi"] != plain["train"]["cmi"]
    assert "view train-augmented: every image once" in report.read_text()


def test_teacher_size_view_pairs_each_arch_with_its_own_mll_teacher(tmp_path, tiny_npz):
    def row(name, arch, method="mll", init=None, cmi=0.5, ll=-1.0, best=(10.0, 12.0)):
        return {"variant": name, "arch": arch, "method": method, "init": init, "train_cmi": cmi, "train_ll": ll,
                "students": {"kd": [{"seed": s, "best": b, "last": b} for s, b in enumerate(best)]}}

    rows = [row("r8", "resnet8", best=(10.0, 11.0)), row("r8-mcmi", "resnet8", "mcmi", "r8", 0.7, -1.1, (10.5, 12.5)),
            row("mll", "resnet20", best=(20.0, 21.0)), row("lam0", "resnet20", "mll", "mll"),
            row("mcmi", "resnet20", "mcmi", "mll", 0.9, -0.9, (19.0, 22.0)),
            row("other", "resnet20", "mcmi", "r8")]  # fine-tuned across archs: not a size pair
    pairs = size_pairs(rows)
    assert [(a["variant"], b["variant"]) for a, b in pairs] == [("r8", "r8-mcmi"), ("mll", "mcmi")]
    assert size_pairs(rows[:2]) == []  # one architecture
    cfg = config(tmp_path, tiny_npz)
    lines = size_section(cfg, rows, tmp_path / "size", 2)
    table = "\n".join(lines)
    # gains paired by seed: resnet8 (+0.5, +1.5), resnet20 (-1.0, +1.0)
    assert "| resnet8 | 0.5000 | 0.7000 | -1.000 | -1.100 |" in table
    assert f"{np.mean([0.5, 1.5]):+.2f} ± {np.std([0.5, 1.5], ddof=1):.2f}" in table
    assert f"{0.0:+.2f} ± {np.std([-1.0, 1.0], ddof=1):.2f}" in table
    assert (tmp_path / "size.png").is_file() and (tmp_path / "size.pdf").is_file()
