"""The Table 1 harness (paper Table 1) end to end on a tiny npz data set: grid, skip, resume,
report, failures; plus the grid expansion of the paper's config and the paper's numbers."""
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import ConfigError, load_config
from mcmi.experiments.table1 import Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.experiments.train import subset_indices
from mcmi.grid.plan import format_plan, parse_only, select_runs
from mcmi.recipes import RECIPES
from mcmi.reports import table1 as report


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=64, n_test=32, size=32)


def grid_yaml(path, data, out, **extra):
    one_epoch = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    cfg = {
        "pairs": [{"teacher": "resnet8", "student": "resnet8"}],
        "methods": ["kd", "dkd"],
        "teacher_kinds": ["mll", "mcmi"],
        "seeds": [0, 1],
        "data": {"name": "npz", "root": str(data), "batch_size": 32, "eval_batch_size": 64},
        "teacher_recipe": one_epoch,
        "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
        "student_recipe": one_epoch,
        "device": "cpu",
        "out": str(out),
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def student_dirs(out):
    return sorted(p for p in (out / "students").glob("*/*/*/seed*") if p.is_dir())


def mtimes(out):
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix in (".pt", ".json")
            and p.name not in ("results.json",)}


@pytest.fixture(scope="module")
def grid(tmp_path_factory, tiny_npz):
    root = tmp_path_factory.mktemp("table1")
    out = root / "out"
    cfg_path = grid_yaml(root / "grid.yaml", tiny_npz, out)
    rc = main(["table1", "--config", str(cfg_path)])
    return {"rc": rc, "out": out, "config": cfg_path}


def test_grid_runs_every_run_once(grid, capsys):
    out = grid["out"]
    assert grid["rc"] == 0
    for kind in ("mll", "mcmi"):
        assert (out / "teachers" / "resnet8" / kind / "summary.json").is_file()
        ev = json.loads((out / "teachers" / "resnet8" / kind / "teacher_eval.json").read_text())
        assert ev["train"]["n"] == 64 and ev["train"]["cmi"] >= 0
    dirs = student_dirs(out)
    assert len(dirs) == 2 * 2 * 2
    for d in dirs:
        assert (d / "summary.json").is_file() and not (d / "error.txt").exists()
    # the MCMI teacher started from the MLL teacher's last checkpoint, with Table 6's default lambda
    mcmi_cfg = json.loads((out / "teachers/resnet8/mcmi/summary.json").read_text())["config"]["run"]
    assert mcmi_cfg["model"]["weights"].endswith("teachers/resnet8/mll/last.pt")
    assert mcmi_cfg["method_args"]["lam"] == 0.15
    # students of the MCMI kind read the MCMI teacher
    s = json.loads((out / "students/resnet8-resnet8/dkd/mcmi/seed1/summary.json").read_text())["config"]["run"]
    assert s["teacher"]["weights"].endswith("teachers/resnet8/mcmi/last.pt") and s["train"]["seed"] == 1

    # a rerun trains nothing: the dry run says done everywhere and no file changes
    capsys.readouterr()
    assert main(["table1", "--config", str(grid["config"]), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "10 runs: 10 done, 0 partial, 0 todo" in plan
    before = mtimes(out)
    assert main(["table1", "--config", str(grid["config"])]) == 0
    assert "10 skipped" in capsys.readouterr().out
    assert mtimes(out) == before


def test_partial_run_resumes_alone(grid, capsys):
    out = grid["out"]
    victim = out / "students/resnet8-resnet8/kd/mll/seed0"
    (victim / "summary.json").unlink()
    cfg = load_config(Table1Config, grid["config"])
    status = {r.key: r.status() for r in expand_grid(cfg)}
    assert status["students/resnet8-resnet8/kd/mll/seed0"] == "partial"
    assert sum(v == "done" for v in status.values()) == 9
    before = {p: t for p, t in mtimes(out).items() if victim not in p.parents}
    capsys.readouterr()
    assert main(["table1", "--config", str(grid["config"])]) == 0
    assert "1 done, 9 skipped" in capsys.readouterr().out
    assert (victim / "summary.json").is_file()
    assert {p: t for p, t in mtimes(out).items() if victim not in p.parents and p in before} == before


def test_report_has_cells_and_mean_std(grid):
    out = grid["out"]
    text = (out / "README.md").read_text()
    res = json.loads((out / "results.json").read_text())
    assert "resnet8→resnet8 MLL" in text and "resnet8→resnet8 MCMI" in text
    assert "Top-1 at the best epoch" in text and "Top-1 at the last epoch" in text
    assert "| KD |" in text and "| DKD |" in text and "Teacher CMI (train)" in text
    assert " ± " in text and "mcmi table1 --config" in text and "```yaml" in text
    assert " / " not in text.split("## Top-1")[1].split("## Configuration")[0]  # no paper values off CIFAR-100
    assert "paper" not in res
    for method in ("kd", "dkd"):
        cell = res["cells"]["resnet8-resnet8"][method]
        for kind in ("mll", "mcmi"):
            accs = [100 * json.loads((out / f"students/resnet8-resnet8/{method}/{kind}/seed{s}/summary.json")
                                     .read_text())["best_acc"] for s in (0, 1)]
            st = cell[kind]["best"]
            assert st["n"] == 2 and st["mean"] == pytest.approx(np.mean(accs))
            assert st["std"] == pytest.approx(np.std(accs, ddof=1))
            assert report.fmt_mean_std(accs) in text
        assert cell["gain_best"] == pytest.approx(cell["mcmi"]["best"]["mean"] - cell["mll"]["best"]["mean"])
        last = {(kind, s): 100 * json.loads((out / f"students/resnet8-resnet8/{method}/{kind}/seed{s}/summary.json")
                                            .read_text())["last_acc"] for kind in ("mll", "mcmi") for s in (0, 1)}
        diffs = [last["mcmi", s] - last["mll", s] for s in (0, 1)]
        paired = cell["paired_last"]
        assert paired["seeds"] == [0, 1] and paired["diffs"] == pytest.approx(diffs)
        assert paired["std"] == pytest.approx(np.std(diffs, ddof=1))
    assert "## MCMI - MLL, paired by seed" in text and "seeds gained" in text
    assert res["teachers"]["resnet8"]["mcmi"]["train_cmi"] is not None


def test_failing_run_is_reported_and_others_continue(grid, tmp_path, tiny_npz, capsys):
    out = tmp_path / "out"
    shutil.copytree(grid["out"] / "teachers", out / "teachers")  # trained teachers are reused
    teacher_times = mtimes(out)
    # an option the recipe check accepts (a number) but the loss refuses at the first step
    cfg = grid_yaml(tmp_path / "bad.yaml", tiny_npz, out, seeds=[0], method_args={"dkd": {"temperature": 0.0}})
    capsys.readouterr()
    assert main(["table1", "--config", str(cfg)]) == 1
    printed = capsys.readouterr().out
    assert "failed: students/resnet8-resnet8/dkd/mll/seed0" in printed
    for kind in ("mll", "mcmi"):
        assert (out / f"students/resnet8-resnet8/kd/{kind}/seed0/summary.json").is_file()
        err = (out / f"students/resnet8-resnet8/dkd/{kind}/seed0/error.txt").read_text()
        assert "temperature must be > 0" in err and "Traceback" in err
    assert mtimes(out / "teachers") == teacher_times
    text = (out / "README.md").read_text()
    assert "Runs that failed" in text and "dkd/mcmi/seed0" in text


def test_only_filter_and_dry_run_on_the_paper_grid(capsys):
    cfg = load_config(Table1Config, RECIPES / "experiments/table1_cifar100.yaml", ["out=/nonexistent/t1"])
    runs = expand_grid(cfg)
    students = [r for r in runs if r.stage == "student"]
    assert len(students) == 12 * 11 * 2 * 5 and len(cfg.pairs) == 12
    assert {r.key for r in runs if r.stage in ("teacher", "mcmi")} == {
        f"teachers/{a}/{k}" for a in ("resnet56", "resnet110", "wrn_40_2", "vgg13", "resnet50", "resnet32x4")
        for k in ("mll", "mcmi")}
    mcmi = {r.label("teacher"): r.config.method_args["lam"] for r in runs if r.stage == "mcmi"}
    assert mcmi == {"resnet56": 0.15, "resnet110": 0.10, "wrn_40_2": 0.15, "vgg13": 0.20, "resnet50": 0.20,
                    "resnet32x4": 0.15}
    lr = {r.label("student"): r.config.train.lr for r in students}
    assert lr["mobilenetv2"] == lr["shufflenetv1"] == lr["shufflenetv2"] == 0.01 and lr["resnet20"] == 0.05
    dkd = next(r for r in students if r.label("pair") == "resnet56-resnet20" and r.label("method") == "dkd")
    assert dkd.config.method_args == {"beta": 2.0}  # DKD's per-pair weight from its official configs
    sel = select_runs(runs, parse_only("method=kd,pair=resnet56-resnet20"))
    assert [r.key for r in sel][:2] == ["teachers/resnet56/mll", "teachers/resnet56/mcmi"]
    assert len(sel) == 2 + 2 * 5
    sel = select_runs(runs, parse_only(["method=hsakd|kd", "kind=mcmi", "seed=0", "teacher=vgg13"]))
    assert {r.key for r in sel} >= {"teachers/vgg13/mll", "teachers/vgg13/mcmi", "teachers/vgg13/mcmi+hsakd_teacher"}
    assert len([r for r in sel if r.stage == "student"]) == 2 * 2
    assert len(select_runs(runs, parse_only("stage=teacher"))) == 24
    plan = format_plan(sel)
    assert "todo     students/vgg13-vgg8/kd/mcmi/seed0" in plan and "0 done, 0 partial" in plan
    with pytest.raises(ConfigError, match="unknown key 'methd'"):
        select_runs(runs, parse_only("methd=kd"))
    with pytest.raises(ConfigError, match="matches nothing"):
        select_runs(runs, parse_only("method=kdd"))
    capsys.readouterr()
    assert main(["table1", "--config", "table1_cifar100", "methods=[mll]", "--dry-run"]) == 2
    assert "not a distiller" in capsys.readouterr().err
    assert main(["table1", "--config", "table1_tinyimagenet_cpu", "--dry-run", "out=/nonexistent/t2"]) == 0
    assert "runs: 0 done, 0 partial" in capsys.readouterr().out


def test_paper_table1_transcription_is_consistent():
    assert len(report.PAPER_TABLE1) == 12
    for pair, methods in report.PAPER_TABLE1.items():
        assert list(methods) == ["kd", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "dkd", "reviewkd", "hsakd"]
        teacher, student = pair.split("-")
        assert teacher in report.PAPER_TEACHERS and student in report.PAPER_STUDENT_BASELINE
        for method, (mll, mcmi) in methods.items():
            # the printed gain, and the mean of Tables 10-11, agree with the two columns
            assert round(mcmi - mll, 2) == pytest.approx(report.PAPER_GAINS[pair][method]), (pair, method)
            assert report.PAPER_MCMI_MEAN_STD[pair][method][0] == mcmi, (pair, method)
            assert mcmi > mll  # the paper: MCMI improves every cell
    for acc_mll, acc_mcmi in ((v["mll"][0], v["mcmi"][0]) for v in report.PAPER_TEACHERS.values()):
        assert acc_mcmi < acc_mll  # "the test accuracy of the MCMI teacher is always lower"
    assert report.PAPER_TABLE1["resnet50-mobilenetv2"]["kd"] == (67.35, 70.23)
    assert report.PAPER_TABLE1["resnet110-resnet32"]["at"] == (72.31, 73.96)
    assert report.PAPER_TEACHERS["resnet56"]["mcmi"] == (72.09, -0.344, 0.4428)


def test_stratified_subset_keeps_every_class():
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)  # class-sorted, like the bundled archives
    first = subset_indices(labels, 6, "first")
    strat = subset_indices(labels, 6, "stratified")
    assert labels[first].unique().tolist() == [0, 1]
    assert torch.bincount(labels[strat]).tolist() == [2, 2, 2]
    assert strat.tolist() == [0, 1, 5, 6, 10, 11]


def test_teacher_train_views_in_the_grid(grid, capsys):
    """Teachers' train LL/CMI in both views (mcmi.metrics.train_view): the grid's default is the
    unaugmented set, recorded in teacher_eval.json and named in the report; switching the grid to
    the augmented view (the paper's analysis script) re-evaluates the teachers and nothing else."""
    from mcmi.grid.jobs import evaluate_teacher

    def figures(ev):  # the view's numbers (other fields may be NaN, which never compares equal)
        return {k: ev["train"][k] for k in ("accuracy", "log_likelihood", "cmi", "n")}

    out = grid["out"]
    cfg = load_config(Table1Config, grid["config"])
    teacher = next(r for r in expand_grid(cfg) if r.key == "teachers/resnet8/mll")
    ev = json.loads((out / "teachers/resnet8/mll/teacher_eval.json").read_text())
    assert ev["view"] == "train-plain" and ev["view_seed"] is None
    assert "the unaugmented training set (view train-plain" in (out / "README.md").read_text()
    plain = evaluate_teacher(teacher)
    assert figures(plain) == figures(ev)
    aug = evaluate_teacher(teacher, view="train-augmented", seed=0)
    assert aug["view"] == "train-augmented" and aug["view_seed"] == 0 and aug["train"]["n"] == 64
    assert figures(evaluate_teacher(teacher, view="train-augmented", seed=0)) == figures(aug)  # reproducible
    assert aug["train"]["cmi"] != plain["train"]["cmi"]
    assert evaluate_teacher(teacher, view="train-augmented", seed=1)["train"]["cmi"] != aug["train"]["cmi"]
    students = mtimes(out / "students")
    capsys.readouterr()
    assert main(["table1", "--config", str(grid["config"]), "teacher_eval_view=train-augmented"]) == 0
    assert "10 skipped" in capsys.readouterr().out
    ev = json.loads((out / "teachers/resnet8/mll/teacher_eval.json").read_text())
    assert ev["view"] == "train-augmented" and figures(ev) == figures(aug)
    assert mtimes(out / "students") == students
    text = (out / "README.md").read_text()
    assert "view train-augmented: every image once" in text and "MTCMI.py" in text
    capsys.readouterr()
    try:
        rc, err = main(["table1", "--config", str(grid["config"]), "teacher_eval_view=augmented", "--dry-run"]), None
    except SystemExit as e:
        rc, err = 2, str(e.code)
    assert rc != 0 and "teacher_eval_view must be one of" in (err or capsys.readouterr().err)
