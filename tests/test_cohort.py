"""Cohorts (:mod:`mcmi.engine.cohort`, :mod:`mcmi.experiments.cohort`): several students of one
teacher in one process, one teacher forward per batch, reproduce their separate runs; a cohort
interrupted mid-way resumes exactly; a diverging member stops alone; the grids train in cohorts
into the same run folders; ``--runs-per-gpu`` places runs on GPU slots; ``data.device_resident``."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import load_config
from mcmi.engine import load_checkpoint
from mcmi.engine.cohort import SharedTeacher
from mcmi.experiments.cohort import (
    check_cohort,
    cohort_configs,
    split_member_overrides,
    train_cohort,
)
from mcmi.experiments.train import RunConfig, build_loaders, run_training
from mcmi.grid.cohorts import CohortUnit, group_cohorts
from mcmi.models import create_model

RUN_FILES = {"last.pt", "best.pt", "summary.json", "metrics.csv", "metrics.jsonl", "config.json"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny npz data set and a resnet8 teacher trained on it for one epoch."""
    root = tmp_path_factory.mktemp("cohort")
    data = write_npz(root / "tiny.npz", n_train=48, n_test=16, size=8)
    common = ["data.name=npz", f"data.root={data}", "data.batch_size=16", "data.eval_batch_size=16",
              "device=cpu", "train.progress=false", "train.milestones=[1]", "train.lr=0.02"]
    teacher = load_config(RunConfig, None, [*common, "model.name=resnet8", "method=mll", "train.epochs=1",
                                            f"out={root / 'teacher'}"])
    run_training(teacher)
    student = [*common, "model.name=resnet8", "teacher.name=resnet8", f"teacher.weights={root / 'teacher/last.pt'}",
               "train.epochs=2", "train.warmup_epochs=0.5", "train.schedule_per_step=true"]
    return {"root": root, "data": data, "common": common, "student": student}


def separate(setup, methods, out, extra=()):
    for cfg in cohort_configs(None, [*setup["student"], *extra], methods, out=out):
        try:
            run_training(cfg)
        except Exception as err:  # noqa: BLE001 -- a diverging run: compared by its files
            logging.getLogger(__name__).info("separate run %s failed: %s", cfg.out, err)


def assert_same_run(a: Path, b: Path, atol: float = 1e-6) -> None:
    """Two run folders end with the same weights (to ``atol``), position, best epoch and metric rows."""
    ca, cb = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert ca["method"].keys() == cb["method"].keys()
    for k in ca["method"]:
        torch.testing.assert_close(ca["method"][k], cb["method"][k], rtol=0, atol=atol, msg=k)
    for key in ("epoch", "step_in_epoch", "global_step", "best"):
        assert ca[key] == cb[key], key
    assert _rows(ca["history"]) == _rows(cb["history"])


def _rows(history):
    """Metric rows without wall times, NaN (an undefined metric) as None."""
    def nan(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return [{k: nan(v) for k, v in r.items() if "time" not in k} for r in history]


def test_cohort_reproduces_separate_runs(setup, capsys):
    root = setup["root"]
    rc = main(["distill", "--cohort", "crd,dkd", "--out", str(root / "cohort"), *setup["student"]])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"crd", "dkd"}
    separate(setup, ["crd", "dkd"], root / "separate")
    for m in ("crd", "dkd"):  # CRD draws its negatives from the global RNG: per-member streams
        d = root / "cohort" / m
        assert RUN_FILES <= {p.name for p in d.iterdir()}
        assert not (d / "error.txt").exists()
        assert_same_run(d, root / "separate" / m)
        assert json.loads((d / "summary.json").read_text())["epochs"] == 2
    # a rerun resumes finished members: nothing to train, same results
    assert main(["distill", "--cohort", "crd,dkd", "--out", str(root / "cohort"), *setup["student"]]) == 0


def test_interrupted_cohort_resumes_exactly(setup, monkeypatch):
    """A kill between two members' steps leaves them at different positions (checkpoints every
    step): the rerun brings the one behind up to the others, and both end as separate runs do."""
    from mcmi.engine.trainer import Trainer

    root = setup["root"]
    extra = ["train.checkpoint_every_steps=1"]
    cfgs = cohort_configs(None, [*setup["student"], *extra], ["kd", "vid"], out=root / "interrupted")
    real = Trainer._train_step
    calls = {"n": 0}

    def killed(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # the second member's first step of epoch 2 (3 batches per epoch)
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train_cohort(cfgs)
    monkeypatch.setattr(Trainer, "_train_step", real)
    kd, vid = (load_checkpoint(root / "interrupted" / m / "last.pt") for m in ("kd", "vid"))
    assert (kd["epoch"], kd["step_in_epoch"]) == (1, 1) and (vid["epoch"], vid["step_in_epoch"]) == (1, 0)
    results = train_cohort(cfgs)
    assert all(isinstance(r, dict) for r in results.values())
    separate(setup, ["kd", "vid"], root / "interrupted_separate", extra)
    for m in ("kd", "vid"):
        assert_same_run(root / "interrupted" / m, root / "interrupted_separate" / m)


def test_diverging_member_stops_alone(setup, caplog):
    root = setup["root"]
    extra = ["kd:train.lr=1e30"]
    cfgs = cohort_configs(None, [*setup["student"], *extra], ["kd", "at"], out=root / "diverge")
    assert cfgs[0].train.lr == 1e30 and cfgs[1].train.lr == 0.02
    with caplog.at_level(logging.ERROR):
        results = train_cohort(cfgs, names=["kd", "at"])
    assert type(results["kd"]).__name__ == "TrainingDiverged" and isinstance(results["at"], dict)
    err = (root / "diverge/kd/error.txt").read_text()
    assert err.startswith("TrainingDiverged") and not (root / "diverge/kd/summary.json").exists()
    assert "cohort member kd failed" in caplog.text
    separate(setup, ["at"], root / "diverge_separate")
    assert_same_run(root / "diverge/at", root / "diverge_separate/at")


def test_shared_teacher_caches_one_pass_per_input():
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=4).eval()
    cls = type(model)
    t = SharedTeacher(model)
    assert type(model) is cls and t.module is model  # the model stays itself (isinstance checks)
    x, y = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert model.forward_features(x) is not model.forward_features(x)  # sharing off: plain forwards
        t.sharing = True
        a = model.forward_features(x)
        assert model.forward_features(x) is a and model.forward_features(y) is not a
        assert model.forward_features(x) is a and torch.equal(model(x), a.logits)
        assert (t.forwards, t.reused) == (2, 3)
        x.add_(1.0)  # the input changed in place: computed again
        assert model.forward_features(x) is not a
        with torch.autocast("cpu", dtype=torch.bfloat16):  # another autocast: another entry
            b = model.forward_features(x)
            assert b.logits.dtype == torch.bfloat16
        t.clear()
        assert model.forward_features(x) is not b
    assert model.state_dict().keys() == create_model("resnet8", num_classes=4).state_dict().keys()
    with pytest.raises(ValueError, match="already shared"):
        SharedTeacher(model)


def test_member_overrides_and_checks(setup):
    common, per = split_member_overrides(["train.epochs=3", "dkd:method_args.beta=2.0", "data.root=/a:b"], ["kd", "dkd"])
    assert common == ["train.epochs=3", "data.root=/a:b"] and per == {"kd": [], "dkd": ["method_args.beta=2.0"]}
    with pytest.raises(ValueError, match="not in the cohort"):
        split_member_overrides(["at:train.lr=1"], ["kd"])
    cfgs = cohort_configs(None, [*setup["student"], "method=kd", "method_args.temperature=2",
                                 "dkd:method_args.beta=2.0"], ["kd", "dkd"], out="x")
    assert cfgs[0].method_args == {"temperature": 2} and cfgs[1].method_args.get("beta") == 2.0
    assert "temperature" not in cfgs[1].method_args and cfgs[1].out == str(Path("x") / "dkd")
    other = cohort_configs(None, [*setup["student"], "train.seed=1"], ["at"], out="y")
    with pytest.raises(ValueError, match="train.seed"):
        check_cohort([cfgs[0], other[0]])
    with pytest.raises(ValueError, match="twice"):
        cohort_configs(None, setup["student"], ["kd", "kd"])


def test_device_resident_is_the_same_data(setup):
    cfg = load_config(RunConfig, None, [*setup["student"], "data.device_resident=true"])
    assert cfg.data.device_resident
    a = build_loaders(cfg.data, torch.device("cpu"), 0, False)[2]
    cfg.data.device_resident = False
    b = build_loaders(cfg.data, torch.device("cpu"), 0, False)[2]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["index"], y["index"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_resident_batches_on_cuda_match(setup):
    cfg = load_config(RunConfig, None, [*setup["student"], "data.device_resident=true"])
    train, _, a, _, _ = build_loaders(cfg.data, torch.device("cuda"), 0, False)
    assert train.images.is_cuda
    cfg.data.device_resident = False
    b = build_loaders(cfg.data, torch.device("cuda"), 0, False)[2]
    for x, y in zip(a, b, strict=True):
        assert x["image"].is_cuda and torch.equal(x["image"], y["image"])


# ------------------------------------------------------------------------------------ grids
def grid_yaml(path: Path, data: Path, out: Path) -> Path:
    one_epoch = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    cfg = {"pairs": [{"teacher": "resnet8", "student": "resnet8"}], "methods": ["kd", "at"],
           "teacher_kinds": ["mll"], "seeds": [0],
           "data": {"name": "npz", "root": str(data), "batch_size": 16, "eval_batch_size": 16},
           "teacher_recipe": one_epoch, "student_recipe": {**one_epoch, "train": {**one_epoch["train"], "epochs": 2}},
           "device": "cpu", "out": str(out)}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def plain_grid(setup):
    """A tiny Table 1 grid (one pair, KD and AT, MLL teacher, one seed) trained run by run."""
    root = setup["root"] / "grid"
    plain = grid_yaml(root.parent / "grid_plain.yaml", setup["data"], root / "plain")
    assert main(["table1", "--config", str(plain)]) == 0
    return root


def test_grid_cohorts_train_the_same_run_folders(setup, plain_grid):
    from mcmi.experiments.table1 import Table1Config
    from mcmi.experiments.table1 import plan as expand_grid

    root = plain_grid
    shutil.copytree(root / "plain/teachers", root / "cohort/teachers")
    coh = grid_yaml(root.parent / "grid_cohort.yaml", setup["data"], root / "cohort")
    assert main(["table1", "--config", str(coh), "--cohort"]) == 0
    for m in ("kd", "at"):
        a, b = root / "plain/students/resnet8-resnet8" / m / "mll/seed0", root / "cohort/students/resnet8-resnet8" / m / "mll/seed0"
        assert {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()}
        assert_same_run(a, b)
    cfg = load_config(Table1Config, coh, ["methods=[kd,at,hsakd]", "seeds=[0,1]", "teacher_kinds=[mll,mcmi]"])
    units = group_cohorts(expand_grid(cfg))
    cohorts = [u for u in units if isinstance(u, CohortUnit)]
    # one cohort per teacher kind and seed; HSAKD, which also waits for the teacher's heads, trains alone
    assert len(cohorts) == 4 and all({r.labels["method"][0] for r in u.members} == {"kd", "at"} for u in cohorts)
    assert sum(1 for u in units if not isinstance(u, CohortUnit) and u.stage == "student") == 4


def test_sweep_runs_cohorts_as_jobs_and_places_runs_on_gpu_slots(setup, plain_grid, monkeypatch, caplog):
    from mcmi.experiments.table1 import Table1Config
    from mcmi.experiments.table1 import plan as expand_grid
    from mcmi.grid import scheduler as sweep
    from mcmi.grid.executors import ExecutorSpec, gpu_slots
    from mcmi.grid.experiment import train_runs, workers_spec
    from mcmi.grid.plan import select_runs
    from mcmi.grid.scheduler import run_plan as run_sweep

    root = plain_grid
    shutil.copytree(root / "plain/teachers", root / "swept/teachers")
    cfg = load_config(Table1Config, root.parent / "grid_plain.yaml", [f"out={root / 'swept'}"])
    runs = select_runs(expand_grid(cfg), {})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's torch threads: as this process's, same rounding
    outcomes = train_runs(runs, workers_spec(1), out=cfg.out, cohort=True)  # one local job for the cohort of two
    assert [o.key for o in outcomes] == [r.key for r in runs]
    assert {o.key: o.result for o in outcomes if "students" in o.key} == {r.key: "done" for r in runs if r.stage == "student"}
    for m in ("kd", "at"):
        assert_same_run(root / "swept/students/resnet8-resnet8" / m / "mll/seed0",
                        root / "plain/students/resnet8-resnet8" / m / "mll/seed0")

    assert gpu_slots([0, 1], 3) == [0, 1, 0, 1, 0, 1] and gpu_slots([], 4) == []
    with pytest.raises(ValueError, match="local executor"):
        ExecutorSpec(executor="slurm", runs_per_gpu=2)
    with pytest.raises(ValueError, match="gpus_per_node"):
        ExecutorSpec(runs_per_gpu=2, gpus_per_node=2)

    class Done:
        def __init__(self, i):
            self.job_id = str(i)

        def done(self):
            return True

        def exception(self):
            return None

    class Recorder:
        def __init__(self):
            self.gpus, self.n = [], 0

        def update_parameters(self, **kw):
            self.gpus.append(kw.get("visible_gpus"))

        def submit(self, job, run):
            self.n += 1
            return Done(self.n)

    todo = [r for r in runs if r.stage == "student"]
    many = [dataclasses.replace(todo[0], key=f"x{i}", deps=(),
                                config=dataclasses.replace(todo[0].config, out=str(root / f"fake{i}")))
            for i in range(5)]
    rec = Recorder()
    monkeypatch.setattr(sweep, "make_executor", lambda spec, folder: rec)
    monkeypatch.setattr(sweep, "local_gpus", lambda: [0, 1])
    run_sweep(many, ExecutorSpec(runs_per_gpu=2, poll_s=0.01), folder=root / ".sub")
    assert rec.gpus[:4] == [(0,), (1,), (0,), (1,)] and len(rec.gpus) == 5
    monkeypatch.setattr(sweep, "local_gpus", list)
    rec2 = Recorder()
    monkeypatch.setattr(sweep, "make_executor", lambda spec, folder: rec2)
    with caplog.at_level(logging.WARNING):
        run_sweep(many, ExecutorSpec(runs_per_gpu=2, poll_s=0.01), folder=root / ".sub")
    assert "runs_per_gpu=2 ignored" in caplog.text and rec2.gpus == [()] * 5


# ----------------------------------------------------------------------------- slow
TABLE1_METHODS = ["kd", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "dkd", "reviewkd", "hsakd"]


@pytest.mark.slow
def test_every_table1_method_in_one_cohort_reproduces_its_separate_run(setup):
    """All eleven Table 1 distillers (and FitNet) as one cohort, HSAKD with the teacher's heads."""
    root = setup["root"]
    heads = load_config(RunConfig, None, [*setup["common"], "model.name=resnet8",
                                          f"model.weights={root / 'teacher/last.pt'}", "method=hsakd_teacher",
                                          "train.epochs=1", f"out={root / 'heads'}"])
    run_training(heads)
    extra = [f"hsakd:method_args.teacher_heads={root / 'heads/last.pt'}"]
    methods = [*TABLE1_METHODS, "fitnet"]
    results = train_cohort(cohort_configs(None, [*setup["student"], *extra], methods, out=root / "all"))
    assert all(isinstance(r, dict) for r in results.values()), results
    separate(setup, methods, root / "all_separate", extra)
    for m in methods:
        assert_same_run(root / "all" / m, root / "all_separate" / m)


def _load(name: str):
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_bench_cohort_quick_writes_tables(tmp_path):
    out, js = tmp_path / "c.md", tmp_path / "c.json"
    _load("bench_cohort").main(["--quick", "--threads", "1", "--out", str(out), "--json", str(js)])
    text = out.read_text()
    for needle in ("3 members: KD, DKD, AT", "11 members", "cohort/separate", "loader alone", "Contention"):
        assert needle in text, needle
    res = json.loads(js.read_text())
    assert res["rows"]["cohort:3"]["teacher_passes_per_batch"] == 1.0
    assert res["rows"]["cohort:11"]["teacher_passes_per_batch"] == 2.0  # HSAKD's rotated batch
    assert res["rows"]["sep:11"]["ips"] > 0 and res["memory"]["cohort:3"]["peak_bytes"] > 0


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tmp_path):
    rc = _load("gpu_check").main(["--device", "cpu", "--quick", "--threads", "1", "--out-dir", str(tmp_path)])
    summary = (tmp_path / "gpu_check.md").read_text()
    assert rc == 0, summary
    for name in ("tests", "bench_kd", "bench_cohort", "real_data"):
        assert f"| {name} | ok |" in summary
    assert (tmp_path / "kd_speed_cpu.md").is_file() and (tmp_path / "cohort_speed_cpu.md").is_file()
    assert "rel. diff" in (tmp_path / "real_data.log").read_text()
