"""A resumed run and a changed recipe: refused naming the keys, or continued with
``--allow-changes KEY`` (the new values take effect and ``OUT/changes.jsonl`` records them)."""
from __future__ import annotations

import json

import pytest
from helpers import write_npz

from mcmi.cli import main
from mcmi.engine import load_checkpoint
from mcmi.engine.changes import config_changes, config_keys, is_allowed


@pytest.fixture
def run(tmp_path):
    data = write_npz(tmp_path / "d.npz", n_train=32, n_test=16, size=8)
    common = ["data.name=npz", f"data.root={data}", "data.batch_size=16", "model.name=resnet8",
              "train.progress=false", "device=cpu", "train.schedule=constant", "--out", str(tmp_path / "run")]
    assert main(["train-teacher", *common, "train.epochs=1"]) == 0
    return tmp_path / "run", common


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_epochs_may_change_and_are_recorded(run, capsys):
    out, common = run
    assert main(["train-teacher", *common, "train.epochs=2", "train.progress=true"]) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    (rec,) = lines(out / "changes.jsonl")
    assert rec["changes"] == {"train.epochs": {"old": 1, "new": 2}}  # display settings are not listed
    assert rec["resumed_at_epoch"] == 1 and rec["allowed"] == []


def test_a_changed_lr_is_refused_then_allowed_and_applied(run, capsys):
    out, common = run
    before = (out / "last.pt").read_bytes()
    assert main(["train-teacher", *common, "train.epochs=2", "train.lr=0.1", "train.weight_decay=0"]) == 2
    err = capsys.readouterr().err
    assert "train.lr 0.05 -> 0.1" in err and "train.weight_decay 0.0005 -> 0.0" in err
    assert "--allow-changes train.lr --allow-changes train.weight_decay" in err
    assert (out / "last.pt").read_bytes() == before and not (out / "changes.jsonl").exists()
    # allowing one of the two keys is not enough
    assert main(["train-teacher", *common, "train.epochs=2", "train.lr=0.1", "train.weight_decay=0",
                 "--allow-changes", "train.lr"]) == 2
    err = capsys.readouterr().err
    assert "train.weight_decay 0.0005 -> 0.0" in err and "train.lr 0.05" not in err  # only the refused key
    assert main(["train-teacher", *common, "train.epochs=2", "train.lr=0.1", "--allow-changes", "train.lr",
                 "train.weight_decay=0", "--allow-changes", "train.weight_decay"]) == 0
    state = load_checkpoint(out / "last.pt")
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(0.1) and group["weight_decay"] == 0.0  # the new values took effect
    assert state["history"][1]["lr"] == pytest.approx(0.1)
    (rec,) = lines(out / "changes.jsonl")
    assert rec["changes"]["train.lr"] == {"old": 0.05, "new": 0.1}
    assert rec["allowed"] == ["train.lr", "train.weight_decay"]
    assert json.loads((out / "config.json").read_text())["run"]["train"]["lr"] == 0.1


def test_a_section_allows_its_keys():
    assert is_allowed("data.root", ["data"]) and is_allowed("data.root", ["data."])
    assert not is_allowed("database.x", ["data"])
    assert is_allowed("train.epochs", []) and is_allowed("train.progress", []) and is_allowed("out", [])
    assert not is_allowed("train.lr", [])


def test_config_changes_compare_dotted_keys_present_on_both_sides():
    saved = {"train": {"lr": 0.05, "milestones": [1, 2]}, "run": {"model": {"name": "a"}, "gone": 1}}
    now = {"train": {"lr": 0.05, "milestones": [1, 3], "new_key": 1}, "run": {"model": {"name": "b"}}}
    assert config_changes(saved, now) == {"train.milestones": ([1, 2], [1, 3]), "model.name": ("a", "b")}
    assert config_keys(now)["train.new_key"] == 1
