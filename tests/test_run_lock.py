"""One trainer per run folder (:mod:`mcmi.engine.lock`): a live holder keeps others out, a killed
one's lock is taken over, a stale one from another host expires, the heartbeat refreshes it;
``run_training`` refuses a held folder before touching it, and a sweep waits for a run that
another process trains instead of training it twice."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers import write_npz

from mcmi.config import load_config
from mcmi.engine.lock import LOCK_NAME, RunLock, RunLockedError, lock_holder
from mcmi.experiments.table1 import Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.grid.executors import ExecutorSpec
from mcmi.grid.plan import format_plan, select_runs
from mcmi.grid.scheduler import run_plan


def hold_in_subprocess(folder: Path, seconds: float, then: str = "") -> subprocess.Popen:
    """A Python process holding ``folder``'s lock for ``seconds`` (then runs ``then``)."""
    code = textwrap.dedent(f"""
        import time, pathlib
        from mcmi.engine.lock import RunLock
        with RunLock({str(folder)!r}):
            pathlib.Path({str(folder / 'held')!r}).touch()
            time.sleep({seconds})
            {then or 'pass'}
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while not (folder / "held").exists():
        assert proc.poll() is None and time.time() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc


def test_lock_file_records_holder_and_is_removed(tmp_path):
    with RunLock(tmp_path / "run") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert lock_holder(tmp_path / "run")["pid"] == os.getpid()
    assert not (tmp_path / "run" / LOCK_NAME).exists() and lock_holder(tmp_path / "run") is None


def test_live_holder_keeps_others_out_and_a_killed_one_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = hold_in_subprocess(folder, 120)
    try:
        assert lock_holder(folder)["pid"] == proc.pid
        with pytest.raises(RunLockedError, match=rf"{folder}.*pid {proc.pid} on {socket.gethostname()}"):
            RunLock(folder).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (folder / LOCK_NAME).exists()  # SIGKILL leaves the file ...
    assert lock_holder(folder) is None  # ... but its pid is gone: free
    with RunLock(folder):
        assert lock_holder(folder)["pid"] == os.getpid()


def test_other_host_lock_expires_and_heartbeat_refreshes(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "job": "42", "started": "t"}))
    with pytest.raises(RunLockedError, match="pid 1 on node-elsewhere, SLURM job 42"):
        RunLock(folder).acquire()  # fresh: held, whatever pid 1 is here
    old = time.time() - 601
    os.utime(path, (old, old))
    assert lock_holder(folder) is None  # no heartbeat for > 10 minutes: stale
    lock = RunLock(folder, heartbeat_s=0.05, stale_after_s=5)
    lock.acquire()
    try:
        os.utime(path, (old, old))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 2  # the heartbeat thread touched it again
    finally:
        lock.release()
    with pytest.raises(ValueError, match="heartbeat_s"):
        RunLock(folder, heartbeat_s=10, stale_after_s=5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny8px.npz", n_train=32, n_test=16, size=8)


def teacher_grid(tmp_path: Path, data: Path) -> Table1Config:
    one_epoch = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({
        "pairs": [{"teacher": "resnet8", "student": "resnet8"}], "methods": ["kd"], "teacher_kinds": ["mll"],
        "seeds": [0], "data": {"name": "npz", "root": str(data), "batch_size": 16, "eval_batch_size": 16},
        "teacher_recipe": one_epoch, "student_recipe": one_epoch, "device": "cpu", "out": str(tmp_path / "out")}))
    return load_config(Table1Config, tmp_path / "grid.yaml")


def test_training_refuses_a_held_folder_and_a_sweep_waits_for_it(tmp_path, data):
    from mcmi.experiments.train import run_training

    cfg = teacher_grid(tmp_path, data)
    # the stand-in teacher below leaves no checkpoint to evaluate: plan no teacher evaluation
    runs = [dataclasses.replace(r, evaluate=None) for r in select_runs(expand_grid(cfg), None)]
    teacher = runs[0]
    assert teacher.key == "teachers/resnet8/mll"
    folder = teacher.out_dir
    folder.mkdir(parents=True)
    # another process "trains" the teacher for 3 s and finishes it (a summary.json of its own)
    proc = hold_in_subprocess(folder, 3, then=f"pathlib.Path({str(folder / 'summary.json')!r}).write_text('{{}}')")
    try:
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            run_training(teacher.config)
        assert sorted(p.name for p in folder.iterdir()) == ["held", LOCK_NAME]  # nothing read or written
        assert f"training now: pid {proc.pid}" in format_plan(runs)
        # the sweep trains nothing for the teacher: it waits, sees it finished, then runs the student
        outcomes = run_plan(runs, ExecutorSpec(workers=1, poll_s=0.1), folder=tmp_path / "submitit")
    finally:
        proc.wait(timeout=60)
    result = {o.key: (o.result, o.message) for o in outcomes}
    assert result[teacher.key] == ("skipped", "finished by another process")
    student = next(r for r in runs if r.stage == "student")
    # it was submitted once the teacher counted as done; the stand-in teacher left no checkpoint
    assert result[student.key][0] == "failed" and f"{folder / 'last.pt'}: no such checkpoint" in result[student.key][1]
    assert (folder / "summary.json").read_text() == "{}"  # the other process's result is untouched
