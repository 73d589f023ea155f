"""Top-5 in the Table 1 report: tables from the runs' ``best_top5``/``last_top5`` when they have
them, nothing (and no error) for results of runs from before mcmi recorded top-5."""
import json

import numpy as np
import pytest
import yaml

from mcmi.config import load_config
from mcmi.experiments.table1 import Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.reports import table1 as report


def grid(tmp_path):
    recipe = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1}}
    cfg = {"pairs": [{"teacher": "resnet8", "student": "resnet8"}], "methods": ["kd"],
           "teacher_kinds": ["mll", "mcmi"], "seeds": [0, 1], "student_baseline": True,
           "data": {"name": "npz", "root": str(tmp_path / "none.npz")},
           "teacher_recipe": recipe, "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml"}, "student_recipe": recipe,
           "device": "cpu", "out": str(tmp_path / "out")}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(Table1Config, path)


def fake_runs(cfg, with_top5: bool) -> dict:
    """summary.json of every run of the grid; returns the top-5 written per run key."""
    rng = np.random.default_rng(0)
    top5 = {}
    for run in expand_grid(cfg):
        run.out_dir.mkdir(parents=True, exist_ok=True)
        s = {"best_acc": float(rng.uniform(0.5, 0.7)), "last_acc": float(rng.uniform(0.5, 0.7)), "best_epoch": 1,
             "epochs": 1}
        if with_top5:
            s.update(best_top5=float(rng.uniform(0.8, 0.9)), last_top5=float(rng.uniform(0.8, 0.9)))
            top5[run.key] = s
        (run.out_dir / "summary.json").write_text(json.dumps(s))
    return top5


def test_top5_tables_when_the_runs_have_it(tmp_path):
    cfg = grid(tmp_path)
    written = fake_runs(cfg, with_top5=True)
    readme = report.write_table1_report(cfg, expand_grid(cfg))
    text = readme.read_text()
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "## Top-5 at the best epoch (%)" in text and "## Top-5 at the last epoch (%)" in text
    assert "| Teacher top-5 |" in text and text.index("## Top-1 at the best epoch") < text.index("## Top-5")
    cell = res["cells"]["resnet8-resnet8"]["kd"]
    for kind in ("mll", "mcmi"):
        values = [100 * written[f"students/resnet8-resnet8/kd/{kind}/seed{seed}"]["best_top5"] for seed in (0, 1)]
        st = cell[kind]["best_top5"]
        assert st["n"] == 2 and st["mean"] == pytest.approx(np.mean(values))
        assert report.fmt_mean_std(st["values"]) in text.split("## Top-5 at the best epoch")[1]
    gain = cell["mcmi"]["last_top5"]["mean"] - cell["mll"]["last_top5"]["mean"]
    assert f"({gain:+.2f})" in text.split("## Top-5 at the last epoch")[1]
    assert res["baselines"]["resnet8"]["best_top5"]["n"] == 2
    assert res["teachers"]["resnet8"]["mll"]["best_top5"] is not None


def test_runs_without_top5_keep_the_old_report(tmp_path):
    cfg = grid(tmp_path)
    fake_runs(cfg, with_top5=False)
    text = report.write_table1_report(cfg, expand_grid(cfg)).read_text()
    assert "Top-5" not in text and "## Top-1 at the best epoch" in text
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["cells"]["resnet8-resnet8"]["kd"]["mll"]["best_top5"] is None
    # a results dict from before top-5 (no *_top5 keys anywhere) still renders
    for per in res["cells"].values():
        for c in per.values():
            for k in ("mll", "mcmi"):
                c[k] = {w: c[k][w] for w in ("best", "last")}
    for b in res["baselines"].values():
        b.pop("best_top5"), b.pop("last_top5")
    for per in res["teachers"].values():
        for t in per.values():
            t.pop("best_top5"), t.pop("last_top5")
    assert not report.has_top5(res)
    assert "Top-5" not in report.render_report(cfg, res)
