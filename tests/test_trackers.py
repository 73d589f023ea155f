"""Experiment trackers (mcmi.engine.trackers): what a run sends, checked on an in-memory tracker
(always), and read back from the real packages' own stores (MLflow's SQLite store through
``MlflowClient``, a W&B offline run file, TensorBoard event files): marked slow and skipped
where the package is not installed (CI installs none of them)."""
from __future__ import annotations

import json
import logging
import math
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from helpers import NUM_CLASSES, TinyNet, ToyLoader, toy_data

from mcmi.config import ConfigError, load_config
from mcmi.engine import TrainConfig, Trainer, seed_everything
from mcmi.engine import trackers as T
from mcmi.methods import KD, MLL

STEPS_PER_EPOCH = 4  # 64 samples / 16


@dataclass
class _Recipe:
    train: TrainConfig = field(default_factory=TrainConfig)


def loaders():
    xtr, ytr = toy_data(64, seed=1)
    xte, yte = toy_data(40, seed=2)
    return ToyLoader(xtr, ytr), ToyLoader(xte, yte, batch_size=20, shuffle=False)


def train(out, epochs=3, resume=False, method_fn=None, **kw):
    seed_everything(0)
    base = dict(epochs=epochs, lr=0.1, schedule="constant", deterministic=True, seed=3, progress=False,
                log_every_steps=2)
    base.update(kw)
    method = (method_fn or (lambda: MLL(TinyNet())))()
    tr, te = loaders()
    trainer = Trainer(method, tr, te, TrainConfig(**base), out, NUM_CLASSES, run_config={"note": "x"})
    return trainer, trainer.fit(resume=resume)


class Memory(T.Tracker):
    """Records every call (class-level, so a test sees the instances a run created)."""

    calls: list[tuple] = []

    def start(self, config, saved, step):
        Memory.calls.append(("start", json.loads(json.dumps(config)), saved, step, self.run_name))
        return {"id": "run-1", "starts": (saved or {}).get("starts", 0) + 1}

    def log_metrics(self, metrics, step):
        Memory.calls.append(("metrics", dict(metrics), step))

    def log_summary(self, metrics, step):
        Memory.calls.append(("summary", dict(metrics), step))

    def finish(self, status):
        Memory.calls.append(("finish", status))


@pytest.fixture
def memory(monkeypatch):
    monkeypatch.setitem(T.TRACKERS, "memory", Memory)
    monkeypatch.setattr(Memory, "name", "memory")
    Memory.calls = []
    return Memory.calls


def of(calls, kind):
    return [c for c in calls if c[0] == kind]


def test_what_a_run_sends(tmp_path, memory):
    trainer, summary = train(tmp_path / "run", loggers=["csv", "memory"])
    starts = of(memory, "start")
    assert len(starts) == 1
    _, config, saved, step, name = starts[0]
    assert saved is None and step == 0 and name == "run"
    assert config["train"]["lr"] == 0.1 and config["train"]["loggers"] == ["csv", "memory"]
    assert config["run"] == {"note": "x"}

    metrics = of(memory, "metrics")
    step_calls = [c for c in metrics if "step/loss" in c[1]]
    # every 2 optimizer steps, global step on the x axis
    assert [c[2] for c in step_calls] == list(range(2, 3 * STEPS_PER_EPOCH + 1, 2))
    first = step_calls[0][1]
    assert {"step/loss", "step/loss_ce", "step/acc", "step/lr", "step/images_per_s"} <= first.keys()
    assert first["step/lr"] == pytest.approx(0.1) and first["step/images_per_s"] > 0
    assert first["step/loss"] == pytest.approx(first["step/loss_ce"])  # MLL: one term

    epoch_calls = [c for c in metrics if "epoch" in c[1]]
    assert [c[1]["epoch"] for c in epoch_calls] == [1.0, 2.0, 3.0]
    assert [c[2] for c in epoch_calls] == [4, 8, 12]
    rows = trainer.history
    for (_, m, _), row in zip(epoch_calls, rows):
        assert m["train/loss"] == row["train_loss"] and m["train/loss_ce"] == row["train_loss_ce"]
        assert m["eval/acc"] == row["val_acc"] and m["eval/cmi"] == row["val_cmi"]
        assert m["eval/top5"] == row["val_top5"] == 1.0  # 5 classes: top-5 is every sample
        assert m["eval/ece"] == row["val_ece"] and m["train/lr"] == row["lr"]
        assert "time/epoch_s" in m and "global_step" not in m

    (_, final, fstep), = of(memory, "summary")
    assert fstep == 12 and final["summary/best_acc"] == summary["best_acc"]
    assert final["summary/last_ece"] == summary["last_ece"]
    assert of(memory, "finish") == [("finish", "finished")]
    assert json.loads((tmp_path / "run" / "trackers.json").read_text()) == {"memory": {"id": "run-1", "starts": 1}}


def test_resume_passes_saved_state_and_failures_end_the_run(tmp_path, memory):
    out = tmp_path / "run"
    train(out, epochs=2, loggers=["memory"])
    memory.clear()
    train(out, epochs=3, resume=True, loggers=["memory"])
    (_, _, saved, step, _), = of(memory, "start")
    assert saved == {"id": "run-1", "starts": 1} and step == 2 * STEPS_PER_EPOCH
    assert json.loads((out / "trackers.json").read_text())["memory"]["starts"] == 2
    epochs = [c[1]["epoch"] for c in of(memory, "metrics") if "epoch" in c[1]]
    assert epochs == [3.0]

    memory.clear()

    class Boom(ToyLoader):
        def __iter__(self):
            raise RuntimeError("disk gone")

    seed_everything(0)
    trainer = Trainer(MLL(TinyNet()), Boom(*toy_data(32)), None,
                      TrainConfig(epochs=1, progress=False, loggers=("memory",)), tmp_path / "b", NUM_CLASSES)
    with pytest.raises(RuntimeError, match="disk gone"):
        trainer.fit()
    assert of(memory, "finish") == [("finish", "failed")]


def test_teacher_figures_are_sent_once(tmp_path, memory):
    torch.manual_seed(1)
    teacher = TinyNet(p=0.0)
    train(tmp_path / "kd", epochs=1, loggers=["memory"], method_fn=lambda: KD(TinyNet(), teacher))
    summaries = of(memory, "summary")
    assert len(summaries) == 2
    _, first, step = summaries[0]
    assert step == 0 and {"teacher/acc", "teacher/ll", "teacher/cmi", "teacher/top5", "teacher/ece"} <= first.keys()


class Flaky(Memory):
    def log_metrics(self, metrics, step):
        raise ConnectionError("server went away")


def test_a_failing_tracker_is_switched_off_not_the_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(T.TRACKERS, "flaky", Flaky)
    monkeypatch.setattr(Flaky, "name", "flaky")
    Memory.calls = []
    with caplog.at_level(logging.WARNING, logger="mcmi"):
        _, summary = train(tmp_path / "run", epochs=2, loggers=["flaky"])
    assert summary["epochs"] == 2
    warnings = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert len(warnings) == 1 and "switched off" in warnings[0]


def test_missing_package_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    real = T.importlib.util.find_spec
    monkeypatch.setattr(T.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("wandb", "mlflow", "tensorboard") else real(name, *a))
    for name, extra in (("wandb", "wandb"), ("mlflow", "mlflow"), ("tensorboard", "tb")):
        with pytest.raises(T.TrackerUnavailable) as e:
            train(tmp_path / name, epochs=1, loggers=[name])
        msg = str(e.value)
        assert "\n" not in msg and f"pip install 'mcmi[{extra}]'" in msg and repr(name) in msg
        assert isinstance(e.value, ConfigError)  # the mcmi command prints it as one line, exit 2
        assert not (tmp_path / name).exists()  # raised before anything is written


def test_log_tensorboard_alias_only_warns_when_missing(tmp_path, monkeypatch, caplog):
    real = T.importlib.util.find_spec
    monkeypatch.setattr(T.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = TrainConfig(log_tensorboard=True)
    assert cfg.trackers == ("tensorboard",)
    with caplog.at_level(logging.WARNING, logger="mcmi"):
        _, summary = train(tmp_path / "run", epochs=1, log_tensorboard=True)
    assert summary["epochs"] == 1 and any("mcmi[tb]" in m for m in caplog.messages)


def test_logger_names_are_checked():
    with pytest.raises(ValueError, match=r"unknown logger 'wandbb' \(did you mean 'wandb'\?\)"):
        TrainConfig(loggers=("csv", "wandbb"))
    with pytest.raises(ConfigError, match="train.loggers"):
        load_config(_Recipe, None, ["train.loggers=[tensorbord]"])
    assert TrainConfig(loggers=("csv", "wandb", "csv")).loggers == ("csv", "wandb")
    assert TrainConfig(loggers=("csv",), log_tensorboard=True).trackers == ("tensorboard",)
    assert TrainConfig(loggers=("mlflow", "tensorboard"), log_tensorboard=True).trackers == ("mlflow", "tensorboard")
    assert TrainConfig().loggers == ("csv",) and TrainConfig().trackers == ()


def test_metric_tags_are_grouped():
    tag = T.metric_tag
    assert [tag(k) for k in ("train_loss", "train_loss_kd", "train_acc", "val_acc", "val_top5", "val_ece",
                             "lr", "time_s", "epoch", "global_step")] == [
        "train/loss", "train/loss_kd", "train/acc", "eval/acc", "eval/top5", "eval/ece", "train/lr",
        "time/epoch_s", None, None]
    assert T.scalars({"a": 1, "b": math.nan, "c": None, "d": True, "e": "x", "f": 2.5}) == {"a": 1.0, "f": 2.5}
    assert T.flatten({"train": {"lr": 0.1, "milestones": [1, 2]}, "m": {}}) == {
        "train.lr": 0.1, "train.milestones": [1, 2], "m": {}}


# ----------------------------------------------------------------------------- real packages
@pytest.mark.slow
def test_mlflow_local_store_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "run"
    trainer, _ = train(out, epochs=2, loggers=["csv", "mlflow"])
    state = json.loads((out / "trackers.json").read_text())["mlflow"]
    assert state["tracking_uri"] == f"sqlite:///{(out / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert client.get_experiment(run.info.experiment_id).name == "mcmi"
    params = run.data.params
    assert params["train.lr"] == "0.1" and params["train.epochs"] == "2" and params["run.note"] == "x"
    acc = client.get_metric_history(run.info.run_id, "eval/acc")
    assert [(m.step, m.value) for m in acc] == [(4, trainer.history[0]["val_acc"]), (8, trainer.history[1]["val_acc"])]
    loss = client.get_metric_history(run.info.run_id, "step/loss_ce")
    assert sorted(m.step for m in loss) == [2, 4, 6, 8]
    assert client.get_metric_history(run.info.run_id, "eval/ece")[-1].value == trainer.history[-1]["val_ece"]
    assert run.data.metrics["summary/best_acc"] == max(r["val_acc"] for r in trainer.history)

    # a resume continues the same MLflow run
    train(out, epochs=3, resume=True, loggers=["csv", "mlflow"])
    again = json.loads((out / "trackers.json").read_text())["mlflow"]
    assert again["run_id"] == state["run_id"]
    assert [m.step for m in client.get_metric_history(state["run_id"], "eval/acc")] == [4, 8, 12]
    assert client.get_run(state["run_id"]).info.status == "FINISHED"


def _wandb_records(path: Path):
    """The protobuf records of a ``.wandb`` run file (LevelDB log format: 32 KiB blocks of
    chunks with a 7-byte header, after a 7-byte file header ``:W&B``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # padding
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(buf + chunk if kind == 4 else chunk)
            yield record
            buf = b""
        else:  # first, middle
            buf = chunk if kind == 2 else buf + chunk


@pytest.mark.slow
def test_wandb_offline_run_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for var in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    trainer, _ = train(out, epochs=2, loggers=["wandb"])
    run_id = json.loads((out / "trackers.json").read_text())["wandb"]["id"]
    files = list((out / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1
    records: list = []
    deadline = time.monotonic() + 60
    # wandb-core writes the file in the background: finish() can return before it is flushed
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.2)
        records = list(_wandb_records(files[0]))
    config, history, summary = {}, [], {}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            assert r.run.run_id == run_id and r.run.project == "mcmi" and r.run.display_name == "run"
            config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in r.summary.update if i.key})
    assert config["train"]["lr"] == 0.1 and config["run"] == {"note": "x"}
    steps = {h["_step"]: h for h in history}
    assert sorted(steps) == [2, 4, 6, 8]
    assert "step/loss_ce" in steps[2] and "step/images_per_s" in steps[6]
    assert steps[4]["eval/acc"] == trainer.history[0]["val_acc"] and steps[8]["epoch"] == 2
    assert steps[8]["eval/ece"] == pytest.approx(trainer.history[1]["val_ece"])
    assert summary["summary/best_acc"] == max(r["val_acc"] for r in trainer.history)


@pytest.mark.slow
def test_tensorboard_grouped_tags_and_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    trainer, _ = train(out, epochs=2, loggers=["tensorboard"])
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/loss_ce", "eval/acc", "eval/top5", "eval/ece", "step/loss"} <= tags
    assert [(e.step, e.value) for e in acc.Scalars("eval/acc")] == [
        (4, pytest.approx(trainer.history[0]["val_acc"])), (8, pytest.approx(trainer.history[1]["val_acc"]))]
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins


def test_cli_missing_tracker_package_is_one_line_exit_2(tmp_path):
    """``mcmi train-teacher ... train.loggers=[mlflow]`` without MLflow: one line naming the extra,
    exit status 2, no run folder (the package is hidden from the child process)."""
    import subprocess
    import sys

    from helpers import TINY_MODEL, write_npz

    data = write_npz(tmp_path / "d.npz", n_train=32, n_test=16, size=4)
    out = tmp_path / "run"
    hide = ("import importlib.util as u, sys; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if n == 'mlflow' else real(n, *a); "
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import helpers; "
            "from mcmi.cli import main; sys.exit(main(sys.argv[1:]))")
    args = ["train-teacher", f"model.name={TINY_MODEL}", "model.args.in_dim=48", "data.name=npz",
            f"data.root={data}", "train.epochs=1", "device=cpu", "train.loggers=[csv,mlflow]", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", hide, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'mcmi[mlflow]'" in lines[0] and "train.loggers" in lines[0], lines
    assert not out.exists()
