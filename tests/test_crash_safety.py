"""Crash safety with real processes: ``mcmi train-teacher`` runs in a child process that is
killed with SIGKILL (no cleanup handler runs, as after an OOM kill or a node failure) at several
points -- right after the first checkpoint, mid-epoch, and in the middle of writing a
checkpoint -- then rerun. Every kill must leave a loadable checkpoint, and the resumed run must
end bit for bit where an uninterrupted run ends: same weights, optimizer, metric rows, summary.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_same_training_state, write_npz

from mcmi.config import load_config
from mcmi.engine import load_checkpoint, load_latest_checkpoint, previous_path
from mcmi.experiments.train import RunConfig, run_training
from mcmi.recipes import RECIPES

RECIPE = "teachers/resnet56_cifar100"
STEPS_PER_EPOCH, EPOCHS = 8, 3  # 64 images, batch 8; a checkpoint after every step


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny8px.npz", n_train=64, n_test=32, size=8)


def overrides(data: Path) -> list[str]:
    return ["data.name=npz", f"data.root={data}", "data.batch_size=8", "data.eval_batch_size=64",
            "model.name=resnet8", f"train.epochs={EPOCHS}", "train.milestones=[2]", "train.deterministic=true",
            "train.checkpoint_every_steps=1", "train.progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    """The uninterrupted run, in this process (one thread, as the children)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    cfg = load_config(RunConfig, RECIPES / f"{RECIPE}.yaml", overrides(data) + [f"out={out}"])
    run_training(cfg, resume=False)
    return out


def child_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cli_args(out: Path, data: Path) -> list[str]:
    return ["train-teacher", "--config", RECIPE, "--out", str(out), *overrides(data)]


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env or child_env(),
                                cwd=Path(__file__).resolve().parents[1])


def wait_until(proc: subprocess.Popen, ready, log: Path, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"child exited with {proc.returncode} before the kill point:\n"
                                 + log.read_text()[-3000:])
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("kill point not reached in time")
        time.sleep(0.002)


def sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL  # it was still running: a real interruption


def assert_loadable(out: Path) -> dict:
    """After a kill: last.pt and last.prev.pt, where present, each load whole; return the state
    a resume starts from."""
    last = out / "last.pt"
    for p in (last, previous_path(last)):
        if p.exists():
            load_checkpoint(p)
    state, _ = load_latest_checkpoint(last)
    return state


def finish(out: Path, data: Path, log: Path) -> None:
    proc = start([sys.executable, "-m", "mcmi.cli", *cli_args(out, data)], log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]


def comparable_summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    for k in ("wall_time_s", "resumed_from", "checkpoint", "best_checkpoint"):
        s.pop(k)
    s["config"]["run"].pop("out")
    return s


def assert_same_as_reference(out: Path, ref: Path) -> None:
    assert_same_training_state(out, ref)
    assert comparable_summary(out) == comparable_summary(ref)


def test_sigkill_at_several_points_then_resume_is_bit_identical(tmp_path, data, reference):
    out, log = tmp_path / "run", tmp_path / "child.log"
    cli = [sys.executable, "-m", "mcmi.cli", *cli_args(out, data)]
    last = out / "last.pt"

    # 1. right after the first checkpoint (written before the first step) appears
    proc = start(cli, log)
    wait_until(proc, last.exists, log)
    sigkill(proc)
    first = assert_loadable(out)
    assert first["global_step"] < STEPS_PER_EPOCH * EPOCHS

    # 2. rerun (resumes), killed mid-way: after ten more checkpoint files have replaced last.pt
    seen: set[tuple[int, int]] = set()

    def ten_new_checkpoints() -> bool:
        try:
            st = last.stat()  # every checkpoint is a new file renamed over last.pt
        except FileNotFoundError:
            return False
        seen.add((st.st_ino, st.st_mtime_ns))
        return len(seen) > 10

    proc = start(cli, log)
    wait_until(proc, ten_new_checkpoints, log)
    sigkill(proc)
    mid = assert_loadable(out)
    assert first["global_step"] < mid["global_step"] < STEPS_PER_EPOCH * EPOCHS
    assert not (out / "summary.json").exists()

    # 3. rerun to completion
    finish(out, data, log)
    assert "resumed from" in log.read_text()
    assert_same_as_reference(out, reference)


WRITER = """
import io, os, sys, time
import torch
real_save, calls = torch.save, [0]

def half_then_hang(obj, f, *args, **kwargs):  # the checkpoint write that the kill interrupts
    calls[0] += 1
    if calls[0] < int(os.environ["MCMI_TEST_SAVE_CALL"]):
        return real_save(obj, f, *args, **kwargs)
    buf = io.BytesIO()
    real_save(obj, buf, *args, **kwargs)
    data = buf.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    os.fsync(f.fileno())
    open(os.environ["MCMI_TEST_MARKER"], "w").close()
    time.sleep(600)

torch.save = half_then_hang
from mcmi.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_during_checkpoint_write_leaves_loadable_checkpoint(tmp_path, data, reference):
    out, log, marker = tmp_path / "run", tmp_path / "child.log", tmp_path / "in_write"
    env = child_env()
    # torch.save calls: 1 = the initial checkpoint, k + 1 = the checkpoint after step k
    env.update(MCMI_TEST_SAVE_CALL="6", MCMI_TEST_MARKER=str(marker))
    proc = start([sys.executable, "-c", WRITER, *cli_args(out, data)], log, env)
    wait_until(proc, marker.exists, log)
    sigkill(proc)
    half_written = sorted(p.name for p in out.glob(".last.pt.*.tmp"))
    assert len(half_written) == 1  # the interrupted write went to a temporary file ...
    state = assert_loadable(out)  # ... while last.pt stayed whole: the checkpoint of step 4
    assert (state["global_step"], state["step_in_epoch"]) == (4, 4)
    # the previous copy was taken as the write began: it is that same checkpoint
    assert load_checkpoint(previous_path(out / "last.pt"))["global_step"] == 4

    finish(out, data, log)
    assert_same_as_reference(out, reference)
