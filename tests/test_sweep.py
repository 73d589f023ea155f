"""Sweeps through submitit (``mcmi sweep``, :mod:`mcmi.grid.scheduler`) on a tiny npz data set:
local jobs in parallel, dependency order, retries, failures that do not stop the others, reruns
that skip finished runs; recipe grids; the SLURM job script that a spec produces."""
from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import cloudpickle
import pytest
import yaml
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import ConfigError, load_config
from mcmi.experiments.sweep import expand_recipe_grid, parse_grid, run_name, split_values
from mcmi.experiments.table1 import Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.grid.executors import ExecutorSpec, local_threads, make_executor, slurm_parameters
from mcmi.grid.jobs import TrainJob
from mcmi.grid.plan import select_runs
from mcmi.grid.scheduler import run_plan
from mcmi.recipes import RECIPES
from mcmi.reports.table1 import write_table1_report

TEACHER, BASELINE = "teachers/resnet8/mll", "students/resnet8/baseline/seed0"
KD, DKD = "students/resnet8-resnet8/kd/mll/seed0", "students/resnet8-resnet8/dkd/mll/seed0"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny8px.npz", n_train=32, n_test=16, size=8)


class RecordingJob(TrainJob):
    """TrainJob that records when each attempt ran, and fails the first attempt of ``flaky``
    (a transient failure: the retry succeeds). The runs in ``meet`` wait (up to a minute) until
    all of them have started: they all do only if they run at the same time. Pickled by value
    into the job processes."""

    def __init__(self, record_dir: Path, flaky: str, meet: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.record_dir, self.flaky, self.meet = str(record_dir), flaky, meet

    def _started(self, key: str) -> Path:
        return Path(self.record_dir, "started-" + key.replace("/", "_"))

    def __call__(self, run):
        start, met = time.time(), None
        try:
            if run.key in self.meet:
                self._started(run.key).touch()
                while not (met := all(self._started(k).exists() for k in self.meet)) and time.time() < start + 60:
                    time.sleep(0.05)
            marker = run.out_dir / "flaky_attempted"
            if run.key == self.flaky and not marker.exists():
                run.out_dir.mkdir(parents=True, exist_ok=True)
                marker.touch()
                raise RuntimeError("transient failure (simulated)")
            return super().__call__(run)
        finally:
            rec = {"key": run.key, "start": start, "end": time.time(), "met": met}
            Path(self.record_dir, f"{uuid.uuid4().hex}.json").write_text(json.dumps(rec))


cloudpickle.register_pickle_by_value(sys.modules[__name__])


def records(folder: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in folder.glob("*.json")), key=lambda r: r["start"])


def max_overlap(recs: list[dict]) -> int:
    events = sorted([(r["start"], 1) for r in recs] + [(r["end"], -1) for r in recs], key=lambda e: (e[0], e[1]))
    now = best = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def mtimes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.suffix in (".pt", ".json")}


def grid_config(path: Path, data: Path, out: Path) -> Table1Config:
    one_epoch = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    path.write_text(yaml.safe_dump({
        "pairs": [{"teacher": "resnet8", "student": "resnet8"}], "methods": ["kd", "dkd"],
        "teacher_kinds": ["mll"], "seeds": [0], "student_baseline": True,
        "method_args": {"dkd": {"temperature": 0.0}},  # a valid number the loss refuses: every dkd run fails
        "data": {"name": "npz", "root": str(data), "batch_size": 16, "eval_batch_size": 16},
        "teacher_recipe": one_epoch, "student_recipe": one_epoch, "device": "cpu", "out": str(out)}))
    return load_config(Table1Config, path)


def test_local_parallel_sweep_retries_reports_and_skips(tmp_path, data):
    out, rec = tmp_path / "out", tmp_path / "records"
    rec.mkdir()
    cfg = grid_config(tmp_path / "grid.yaml", data, out)
    runs = select_runs(expand_grid(cfg), None)
    assert [r.key for r in runs] == [TEACHER, BASELINE, KD, DKD]
    spec = ExecutorSpec(executor="local", workers=2, retries=1, poll_s=0.1)
    outcomes = run_plan(runs, spec, folder=tmp_path / "submitit",
                        job=RecordingJob(rec, flaky=KD, meet=(TEACHER, BASELINE)))
    result = {o.key: o for o in outcomes}
    assert {k: o.result for k, o in result.items()} == {TEACHER: "done", BASELINE: "done", KD: "done", DKD: "failed"}
    assert "temperature must be > 0" in result[DKD].message

    # KD failed once, was retried and finished; DKD failed on both attempts and says why
    attempts = records(rec)
    assert [r["key"] for r in attempts].count(KD) == 2 and [r["key"] for r in attempts].count(DKD) == 2
    assert (out / KD / "summary.json").is_file() and not (out / KD / "error.txt").exists()
    err = (out / DKD / "error.txt").read_text()
    assert "temperature must be > 0" in err and "Traceback" in err
    assert (out / TEACHER / "teacher_eval.json").is_file()  # what the Table 1 report reads

    # two jobs at a time (the teacher and the baseline ran together), never more; students
    # started after their teacher finished
    assert [r["met"] for r in attempts if r["key"] in (TEACHER, BASELINE)] == [True, True]
    assert max_overlap(attempts) == 2
    teacher_end = next(r["end"] for r in attempts if r["key"] == TEACHER)
    assert all(r["start"] >= teacher_end for r in attempts if r["key"] in (KD, DKD))

    report = write_table1_report(cfg, runs, outcomes=outcomes).read_text()
    assert "Runs that failed" in report and DKD in report

    # a rerun submits only the failed run; finished runs are skipped and their files untouched
    done = {p: t for p, t in mtimes(out).items() if DKD not in str(p)}
    outcomes = run_plan(runs, ExecutorSpec(workers=2, poll_s=0.1), folder=tmp_path / "submitit",
                        job=RecordingJob(rec, flaky=KD))
    assert [o.result for o in outcomes] == ["skipped", "skipped", "skipped", "failed"]
    assert [r["key"] for r in records(rec)[len(attempts):]] == [DKD]
    assert {p: t for p, t in mtimes(out).items() if DKD not in str(p)} == done


def test_recipe_grid_sweep_from_the_command_line(tmp_path, data, capsys):
    out = tmp_path / "lr_sweep"
    args = ["sweep", "--recipe", "teachers/resnet56_cifar100", "--out", str(out),
            "--grid", "train.lr=0.05,0.1", "--grid", "train.seed=3", "--workers", "2", "--poll-s", "0.1",
            "data.name=npz", f"data.root={data}", "data.batch_size=16", "model.name=resnet8", "train.epochs=1",
            "train.milestones=[1]", "train.progress=false", "device=cpu"]
    assert main([*args, "--dry-run"]) == 0
    assert "2 runs: 0 done, 0 partial, 2 todo" in capsys.readouterr().out
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 done" in printed
    for lr in (0.05, 0.1):
        run = out / f"lr={lr}_seed=3"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["config"]["train"]["lr"] == lr and summary["config"]["train"]["seed"] == 3
        assert f"lr={lr}_seed=3" in printed
    rows = json.loads((out / "sweep.json").read_text())
    assert [(r["run"], r["train.lr"], r["status"]) for r in rows] == [
        ("lr=0.05_seed=3", "0.05", "done"), ("lr=0.1_seed=3", "0.1", "done")]
    assert all(r["last_acc"] is not None for r in rows)


def test_grid_parsing_naming_and_errors(tmp_path, capsys):
    assert split_values("0.05,0.1,[1,2],{a: 1, b: 2}") == ["0.05", "0.1", "[1,2]", "{a: 1, b: 2}"]
    grid = parse_grid(["method_args.lam=0.05,0.1", "train.seed=0,1,2"])
    assert grid == [("method_args.lam", ["0.05", "0.1"]), ("train.seed", ["0", "1", "2"])]
    assert run_name([("method_args.lam", "0.1"), ("train.seed", "2")], ["method_args.lam", "train.seed"]) == \
        "lam=0.1_seed=2"
    assert run_name([("model.name", "a"), ("teacher.name", "b/c")], ["model.name", "teacher.name"]) == \
        "model.name=a_teacher.name=b_c"
    recipe = RECIPES / "mcmi/resnet56_cifar100.yaml"
    runs = expand_recipe_grid(recipe, grid, ["train.epochs=1"], tmp_path / "s")
    assert len(runs) == 6 and runs[-1].key == "lam=0.1_seed=2"
    assert runs[-1].config.method_args["lam"] == 0.1 and runs[-1].config.train.seed == 2
    assert runs[-1].config.out == str(tmp_path / "s" / "lam=0.1_seed=2") and runs[-1].config.train.epochs == 1
    assert runs[0].config.method_args["centroids"] == "frozen"  # the rest of the recipe stays
    default = expand_recipe_grid(recipe, [("train.seed", ["0"])])
    assert default[0].config.out == "runs/mcmi/resnet56_cifar100-sweep/seed=0"
    with pytest.raises(ConfigError, match=r"resnet56_cifar100.yaml.*unknown key 'train.epoch'"):
        expand_recipe_grid(recipe, [("train.epoch", ["1", "2"])])
    with pytest.raises(ConfigError, match=r"resnet56_cifar100.yaml \+ overrides: method_args.lamb: method 'mcmi' "
                       r"has no option 'lamb'; did you mean 'lam'\?"):
        expand_recipe_grid(recipe, [("method_args.lamb", ["0.1"])])
    with pytest.raises(ConfigError, match="twice"):
        parse_grid(["train.seed=0,1", "train.seed=2"])
    with pytest.raises(ConfigError, match="cannot vary 'out'"):
        parse_grid(["out=a,b"])
    capsys.readouterr()
    assert main(["sweep", "--config", "table1_tinyimagenet_cpu", "--grid", "train.seed=0,1"]) == 2
    assert "--grid varies a recipe" in capsys.readouterr().err
    assert main(["sweep", "--recipe", "teachers/resnet56_cifar100", "--dry-run", "--cluster", str(
        _write(tmp_path / "c.yaml", {"executor": "kubernetes"}))]) == 2
    assert "executor must be one of" in capsys.readouterr().err


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_slurm_spec_becomes_the_sbatch_script(tmp_path, monkeypatch):
    import submitit.slurm.slurm as slurm

    spec = ExecutorSpec(executor="slurm", slurm_partition="gpu", gpus_per_node=8, tasks_per_node=8, cpus_per_task=10,
                        timeout_min=240, slurm={"account": "proj", "setup": ["source .venv/bin/activate"]})
    assert slurm_parameters(spec)["slurm_partition"] == "gpu"
    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no cluster here
    ex = make_executor(spec, tmp_path)
    script = slurm._make_sbatch_string(command="python -m job", folder=tmp_path, **ex._executor.parameters)
    for line in ("--partition=gpu", "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=10", "--time=240",
                 "--account=proj", "--job-name=mcmi"):
        assert f"#SBATCH {line}" in script, line
    assert "source .venv/bin/activate" in script
    with pytest.raises(ValueError, match="without the slurm_ prefix"):
        ExecutorSpec(executor="slurm", slurm={"slurm_qos": "high"})


@pytest.mark.ddp
def test_a_job_of_two_tasks_is_one_data_parallel_run(tmp_path, data):
    """``tasks_per_node=2``: the job's two processes join one process group (gloo here) and
    train one run together."""
    runs = expand_recipe_grid(RECIPES / "teachers/resnet56_cifar100.yaml", [("train.seed", ["0"])],
                              ["data.name=npz", f"data.root={data}", "data.batch_size=8", "model.name=resnet8",
                               "train.epochs=1", "train.milestones=[1]", "train.progress=false", "device=cpu"],
                              tmp_path / "out")
    outcomes = run_plan(runs, ExecutorSpec(tasks_per_node=2, poll_s=0.1), folder=tmp_path / "submitit")
    assert [o.result for o in outcomes] == ["done"]
    summary = json.loads((tmp_path / "out" / "seed=0" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 2  # 32 images / (2 ranks x 8)


def test_local_threads_share_the_cores_and_honour_omp_num_threads():
    assert local_threads(2, 10, cores=8, env={}) == 4
    assert local_threads(4, 1, cores=8, env={}) == 8  # one job left: it gets every core
    assert local_threads(1, 5, cores=2, env={"OMP_NUM_THREADS": "1"}) == 1  # two sweeps told to use one thread each
    assert local_threads(2, 5, cores=8, env={"OMP_NUM_THREADS": "16"}) == 4
    assert local_threads(3, 5, cores=2, env={"OMP_NUM_THREADS": "junk"}) == 1
