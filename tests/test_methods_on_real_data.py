"""Every KD method trains a student end to end on real images: the bundled tinyimagenet100-32px
(100 classes, 32 px), through the Table 1 harness (MLL teacher, MCMI fine-tune, HSAKD's teacher
heads, then one student per method and teacher kind), on a small stratified subset."""
import json
import math

import pytest

from mcmi.config import build
from mcmi.data import DataError, find_bundled
from mcmi.experiments.table1 import Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.grid.experiment import train_runs
from mcmi.methods import METHODS, Distiller

try:
    find_bundled("tinyimagenet100-32px", None)
    HAVE_DATA = True
except DataError:
    HAVE_DATA = False

DISTILLERS = sorted(n for n in METHODS.names()
                    if isinstance(METHODS.get(n), type) and issubclass(METHODS.get(n), Distiller))


@pytest.mark.skipif(not HAVE_DATA, reason="needs ../shared/data/tinyimagenet100-32px.npz")
def test_every_distiller_trains_on_tinyimagenet(tmp_path):
    assert {"kd", "fitnet", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "dkd", "reviewkd", "hsakd"} <= set(DISTILLERS)
    one_epoch = {"epochs": 1, "milestones": [1], "progress": False}
    cfg = build(Table1Config, {
        "pairs": [{"teacher": "resnet14", "student": "resnet8"}],
        "methods": DISTILLERS,
        "teacher_kinds": ["mll", "mcmi"],
        "seeds": [0],
        # 2 images per class: every class is present, as the CRD memory bank and CMI need
        "data": {"name": "tinyimagenet100-32px", "batch_size": 50, "eval_batch_size": 200,
                 "train_subset": 200, "test_subset": 200, "subset_mode": "stratified"},
        "teacher_recipe": {"_base_": "_base_/cifar_teacher.yaml", "train": one_epoch},
        "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
        "student_recipe": {"_base_": "_base_/cifar_student.yaml", "train": one_epoch},
        "heads_recipe": {"_base_": "_base_/cifar_hsakd_heads.yaml", "train": one_epoch},
        "method_args": {"crd": {"num_negatives": 64}},
        "device": "cpu",
        "out": str(tmp_path / "grid"),
    }, source="test grid")
    runs = expand_grid(cfg)
    outcomes = train_runs(runs, out=cfg.out)
    failed = [(o.key, o.message) for o in outcomes if o.result != "done"]
    assert not failed, failed
    students = [r for r in runs if r.stage == "student"]
    assert len(students) == 2 * len(DISTILLERS)
    for run in students:
        summary = json.loads((run.out_dir / "summary.json").read_text())
        rows = [json.loads(line) for line in (run.out_dir / "metrics.jsonl").read_text().splitlines()]
        assert summary["epochs"] == 1 and len(rows) == 1, run.key
        assert math.isfinite(rows[0]["train_loss"]) and rows[0]["train_loss"] > 0, run.key
        assert 0.0 <= summary["last_acc"] <= 1.0, run.key
        # the method's named loss terms were logged next to CE
        assert any(k.startswith("train_loss_") and k != "train_loss_ce" for k in rows[0]), run.key
