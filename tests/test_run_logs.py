"""A run's own log and records: ``OUT/train.log`` (the console's lines, appended across resumes),
progress lines every N steps off a terminal and a bar on one, ``summary.json`` provenance
(versions, commit, device) and a distiller's teacher figures computed once per run."""
from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import NUM_CLASSES, TinyNet, ToyLoader, assert_same_weights, toy_data

import mcmi
from mcmi.engine import TrainConfig, Trainer, seed_everything
from mcmi.engine import provenance as prov
from mcmi.engine.progress import StepProgress, format_duration
from mcmi.engine.state import EpochSums
from mcmi.methods import KD, MLL
from mcmi.metrics import evaluate

TESTS = Path(__file__).resolve().parent
PROGRESS = re.compile(r"epoch (\d)/(\d) step (\d)/4 loss \d+\.\d{4} lr 0\.1 \d+ img/s eta \d:\d\d:\d\d \(run \d:\d\d:\d\d\)")


def loaders():
    xtr, ytr = toy_data(64, seed=1)
    xte, yte = toy_data(40, seed=2)
    return ToyLoader(xtr, ytr, noise=0.3), ToyLoader(xte, yte, batch_size=20, shuffle=False)


def teacher() -> TinyNet:
    torch.manual_seed(11)
    return TinyNet(p=0.0)


def train(out, epochs=2, resume=False, method_fn=None, **kw):
    seed_everything(0)
    base = dict(epochs=epochs, lr=0.1, schedule="constant", deterministic=True, seed=3, log_every_steps=2)
    base.update(kw)
    method = (method_fn or (lambda: MLL(TinyNet())))()
    tr, te = loaders()
    trainer = Trainer(method, tr, te, TrainConfig(**base), out, NUM_CLASSES)
    return trainer, trainer.fit(resume=resume)


def test_train_log_has_the_console_lines_and_appends_on_resume(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("mcmi.engine.loop.interactive", lambda: False)  # as under SLURM / nohup
    caplog.set_level(logging.INFO, logger="mcmi")  # what the mcmi command configures
    out = tmp_path / "run"
    train(out, epochs=2)
    console = [r.getMessage() for r in caplog.records if r.name.startswith("mcmi")]
    text = (out / "train.log").read_text()
    lines = text.splitlines()
    for message in console:  # every console line is in the file, in order, with a timestamp
        assert any(line.endswith(message) for line in lines), message
    # the console's format (here pytest's) after a timestamp
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO +mcmi\.engine\.trainer:\S* started ", lines[0])
    assert f"mcmi {mcmi.__version__}, torch {torch.__version__}, device cpu" in lines[0]
    progress = [m for m in console if PROGRESS.fullmatch(m)]
    assert [m.split(" loss")[0] for m in progress] == [
        "epoch 1/2 step 2/4", "epoch 1/2 step 4/4", "epoch 2/2 step 2/4", "epoch 2/2 step 4/4"]
    assert sum("epoch 2/2 lr=" in m for m in console) == 1

    caplog.clear()
    train(out, epochs=3, resume=True)
    again = (out / "train.log").read_text()
    assert again.startswith(text)  # appended, not rewritten
    added = again[len(text):]
    assert " resumed " in added and "epoch 3/3 step 4/4" in added and "epoch 3/3 lr=" in added
    assert "epoch 1/2" not in added
    assert not logging.getLogger("mcmi").handlers  # detached at the end


def test_bar_on_a_terminal_keeps_progress_lines_in_the_file_only(tmp_path, caplog, monkeypatch, capsys):
    monkeypatch.setattr("mcmi.engine.loop.interactive", lambda: True)
    caplog.set_level(logging.INFO, logger="mcmi")
    out = tmp_path / "run"
    train(out, epochs=1)
    console = [r.getMessage() for r in caplog.records]
    assert not any(PROGRESS.fullmatch(m) for m in console)
    assert any("epoch 1/1 lr=" in m for m in console)
    text = (out / "train.log").read_text()
    assert len(PROGRESS.findall(text)) == 2
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "eval" in err  # tqdm bars: the epoch and its evaluation


def test_error_traceback_goes_to_the_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mcmi")

    class Broken(ToyLoader):
        def __iter__(self):
            raise RuntimeError("loader exploded")

    seed_everything(0)
    trainer = Trainer(MLL(TinyNet()), Broken(*toy_data(32)), None, TrainConfig(epochs=1, progress=False),
                      tmp_path / "run", NUM_CLASSES)
    with pytest.raises(RuntimeError):
        trainer.fit()
    text = (tmp_path / "run" / "train.log").read_text()
    assert "run stopped by RuntimeError: loader exploded" in text and "Traceback" in text
    assert not any("run stopped" in r.getMessage() for r in caplog.records)  # not on the console


def test_library_call_without_logging_config_still_fills_train_log(tmp_path):
    """No logging configured (only warnings reach the console): the file has the INFO lines,
    the console stays quiet."""
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(TESTS)!r})
        import torch
        from helpers import NUM_CLASSES, TinyNet, ToyLoader, toy_data
        from mcmi.engine import TrainConfig, Trainer
        from mcmi.methods import MLL
        x, y = toy_data(64, seed=1)
        t = Trainer(MLL(TinyNet()), ToyLoader(x, y), ToyLoader(x, y, shuffle=False),
                    TrainConfig(epochs=1, progress=False, log_every_steps=2), {str(tmp_path / 'run')!r}, NUM_CLASSES)
        t.fit()
        import logging; assert logging.getLogger("mcmi").level == logging.NOTSET
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "epoch 1/1" not in done.stderr
    text = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 1/1 step 2/4" in text and "epoch 1/1 lr=" in text and " started " in text


def test_step_progress_line_and_interval_means():
    lines, sent = [], []
    sums = EpochSums()
    p = StepProgress(epoch=0, epochs=3, steps_per_epoch=4, start_step=0, sums=sums, every=2, bar=False,
                     world_size=2, emit=lines.append, on_step=lambda m, s: sent.append((m, s)), lr=lambda: 0.05)
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    for step, (ce, kd) in enumerate([(1.0, 0.5), (3.0, 0.5), (2.0, 1.0), (2.0, 1.0)]):
        losses = {"ce": torch.tensor(ce), "kd": torch.tensor(kd)}
        sums.add(losses, torch.tensor(ce + kd), logits, labels)
        p.update(step, sums, step + 1)
    p.close()
    assert [s for _, s in sent] == [2, 4]
    first, second = sent[0][0], sent[1][0]
    assert first["step/loss"] == pytest.approx(2.5) and first["step/loss_ce"] == pytest.approx(2.0)
    assert second["step/loss"] == pytest.approx(3.0) and second["step/loss_kd"] == pytest.approx(1.0)
    assert first["step/acc"] == 0.5 and first["step/lr"] == 0.05 and first["step/images_per_s"] > 0
    assert re.fullmatch(r"epoch 1/3 step 2/4 loss 2\.5000 \(ce 2\.0000, kd 0\.5000\) lr 0\.05 \d+ img/s "
                        r"eta \d:\d\d:\d\d \(run \d:\d\d:\d\d\)", lines[0]), lines[0]
    assert format_duration(3725.2) == "1:02:05" and format_duration(float("nan")) == "?"


def test_summary_records_versions_commit_and_device(tmp_path):
    _, summary = train(tmp_path / "run", epochs=1, progress=False)
    disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert disk["mcmi_version"] == mcmi.__version__ and disk["torch_version"] == str(torch.__version__)
    assert disk["device"] == "cpu"
    commit = disk["git_commit"]
    assert commit is None or re.match(r"[0-9a-f]{40}( \(with uncommitted changes\))?$", commit)
    assert disk["teacher"] is None  # no teacher in this run
    assert disk["last_top5"] == 1.0 and 0 <= disk["last_ece"] <= 1 and disk["best_top5"] == 1.0


def test_git_commit_is_none_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(prov, "source_root", lambda: None)
    assert prov.git_commit() is None
    monkeypatch.setattr(prov, "source_root", lambda: tmp_path)  # a folder that is no git work tree
    assert prov.git_commit() is None

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(prov.subprocess, "run", no_git)
    assert prov.git_commit() is None
    # an installed copy: mcmi imported from site-packages, not <checkout>/src/mcmi
    monkeypatch.undo()
    monkeypatch.setattr(prov.mcmi, "__file__", str(tmp_path / "site-packages" / "mcmi" / "__init__.py"))
    assert prov.source_root() is None


def test_teacher_figures_once_per_run(tmp_path, monkeypatch):
    import mcmi.engine.trainer as trainer_module

    calls = []

    def counting(model, *a, **k):
        calls.append(model)
        return evaluate(model, *a, **k)

    monkeypatch.setattr(trainer_module, "evaluate", counting)
    out = tmp_path / "kd"
    t = teacher()
    trainer, summary = train(out, epochs=2, progress=False, method_fn=lambda: KD(TinyNet(), t))
    assert sum(m is t for m in calls) == 1
    figures = summary["teacher"]
    assert set(figures) == {"acc", "top5", "ll", "cmi", "ece", "entropy", "n"}
    ref = evaluate(t, loaders()[1], NUM_CLASSES)
    assert figures["acc"] == ref.accuracy and figures["cmi"] == pytest.approx(ref.cmi, abs=1e-12)
    assert figures["ll"] == pytest.approx(ref.log_likelihood) and figures["n"] == 40
    assert json.loads((out / "teacher_metrics.json").read_text()) == figures

    calls.clear()  # a resume reads the figures from the checkpoint
    _, resumed = train(out, epochs=3, resume=True, progress=False, method_fn=lambda: KD(TinyNet(), t))
    assert not any(m is t for m in calls) and resumed["teacher"] == figures

    # and the evaluation leaves the training untouched: resumed = uninterrupted
    straight, _ = train(tmp_path / "straight", epochs=3, progress=False, method_fn=lambda: KD(TinyNet(), t))
    again, _ = train(tmp_path / "kd2", epochs=3, progress=False, method_fn=lambda: KD(TinyNet(), t))
    assert_same_weights(straight.method.model, again.method.model)
    from mcmi.engine import load_checkpoint

    assert_same_weights(straight.method.model, _model_from(load_checkpoint(out / "last.pt")))


def _model_from(checkpoint) -> TinyNet:
    m = TinyNet()
    m.load_state_dict({k[len("model."):]: v for k, v in checkpoint["method"].items() if k.startswith("model.")})
    return m


def test_no_metrics_files_before_the_first_epoch_and_a_fresh_start_drops_old_ones(tmp_path):
    """A run killed in its first epoch used to leave a header-less one-byte metrics.csv."""
    import csv

    from mcmi.engine.logs import MetricsLog

    log = MetricsLog(tmp_path)
    log.write_rows([])
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "metrics.jsonl").exists()
    log.write_rows([{"epoch": 1, "val_acc": 0.5}])
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{"epoch": "1", "val_acc": "0.5"}]
    log.write_rows([])  # a fresh start over that folder
    assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "metrics.jsonl").exists()
