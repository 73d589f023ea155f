"""The mcmi command end to end on a tiny npz data set: teacher -> MCMI fine-tune -> student, and errors."""
import json

import numpy as np
import pytest
import torch
from helpers import write_npz

from mcmi.checkpoint import load_checkpoint
from mcmi.cli import build_parser, main


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=96, n_test=32, size=32)


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd")
    for name in sub.choices:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
    assert "train-teacher" in sub.choices and "finetune-mcmi" in sub.choices


def test_teacher_mcmi_student_pipeline(tmp_path, tiny_npz, capsys):
    common = ["data.name=npz", f"data.root={tiny_npz}", "data.batch_size=32", "model.name=resnet8", "train.progress=false"]
    t = tmp_path / "teacher"
    assert main(["train-teacher", "--config", "teachers/resnet56_cifar100", "--out", str(t), *common,
                 "train.epochs=2", "train.milestones=[1]"]) == 0
    summary = json.loads((t / "summary.json").read_text())
    assert summary["last_acc"] is not None
    # the checkpoint records its input statistics (numpy over the archive's training pixels)
    x = np.load(tiny_npz)["x_train"].astype(np.float64) / 255
    norm = load_checkpoint(t / "last.pt")["meta"]["normalization"]
    np.testing.assert_allclose(norm["mean"], x.mean(axis=(0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(norm["std"], x.std(axis=(0, 1, 2)), atol=1e-5)
    m = tmp_path / "mcmi"
    assert main(["finetune-mcmi", "--config", "mcmi/resnet56_cifar100", "--out", str(m), *common,
                 f"model.weights={t / 'last.pt'}", "train.epochs=1"]) == 0
    s = tmp_path / "student"
    assert main(["distill", "--out", str(s), *common, "method=kd", "teacher.name=resnet8",
                 f"teacher.weights={m / 'last.pt'}", "train.epochs=1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(s / "last.pt"), "--data", "npz", "--root", str(tiny_npz), "--per-class"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 32 and len(out["per_class_cmi"]) == 4 and out["cmi"] >= 0


def test_user_errors_are_one_line(tmp_path, tiny_npz, capsys):
    # a wrong data path names the path
    rc = main(["train-teacher", "--out", str(tmp_path / "x"), "data.name=npz", f"data.root={tmp_path / 'nope.npz'}"])
    assert rc == 2
    assert "nope.npz" in capsys.readouterr().err
    # a checkpoint of another class count names the file
    torch.save({"not": "mcmi"}, tmp_path / "foreign.pt")
    rc = main(["evaluate", str(tmp_path / "foreign.pt"), "--data", "npz", "--root", str(tiny_npz)])
    assert rc == 2
    assert "foreign.pt" in capsys.readouterr().err
    assert main(["train-teacher", "--config", "teachers/resnet56_cifar100", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'train.epoch'" in err and "did you mean 'train.epochs'?" in err and err.count("\n") == 1
    assert main(["finetune-mcmi", "--config", "mcmi/resnet56_cifar100", "model.weights=null"]) == 2
    assert "MCMI fine-tunes a pretrained teacher" in capsys.readouterr().err


def test_measure_command(tmp_path, capsys):
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    torch.save({"probs": p, "labels": torch.tensor([0, 1, 0])}, tmp_path / "out.pt")
    assert main(["measure", str(tmp_path / "out.pt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 3 and out["accuracy"] == 1.0
    # centroid of class 0 is (0.75, 0.25); CMI = (KL(.9,.1||.75,.25) + KL(.6,.4||.75,.25)) / 3
    kl = lambda a, q: sum(x * np.log(x / y) for x, y in zip(a, q))  # noqa: E731
    assert out["cmi"] == pytest.approx((kl([0.9, 0.1], [0.75, 0.25]) + kl([0.6, 0.4], [0.75, 0.25])) / 3)


def test_teacher_of_other_data_warns(tmp_path, tiny_npz, caplog):
    from mcmi.models.io import load_model

    t = tmp_path / "teacher"
    assert main(["train-teacher", "--config", "teachers/resnet56_cifar100", "--out", str(t), "data.name=npz",
                 f"data.root={tiny_npz}", "data.batch_size=32", "model.name=resnet8", "train.progress=false",
                 "train.epochs=1", "train.milestones=[1]"]) == 0
    norm = load_checkpoint(t / "last.pt")["meta"]["normalization"]
    with caplog.at_level("WARNING", logger="mcmi.models.io"):
        load_model(t / "last.pt", normalization=(norm["mean"], norm["std"]))
        assert not caplog.records  # the statistics it was trained with: silent
        load_model(t / "last.pt", normalization=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))
    (record,) = caplog.records
    assert str(t / "last.pt") in record.getMessage() and "'npz'" in record.getMessage()
    assert "this run normalizes by mean (0.5071, 0.4865, 0.4409)" in record.getMessage()


def test_version_and_recipes(capsys):
    from mcmi.cli import version
    from mcmi.recipes import list_recipes

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mcmi {version()}"
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in list_recipes():
        assert name in out
    assert "students/dkd" in out and "experiments/table1_tinyimagenet_cpu" in out


def test_print_config_applies_overrides_and_creates_nothing(tmp_path, tiny_npz, capsys, monkeypatch):
    import yaml

    monkeypatch.chdir(tmp_path)
    assert main(["distill", "--config", "students/dkd", "teacher.name=resnet56", "--out", str(tmp_path / "o"),
                 "teacher.weights=t.pt", "--print-config", "train.lr=1e-2", "method_args.beta=2"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["method"] == "dkd" and printed["teacher"] == {"name": "resnet56", "weights": "t.pt", "args": {}}
    assert printed["train"]["lr"] == 0.01 and printed["method_args"]["beta"] == 2.0
    assert printed["out"] == str(tmp_path / "o") and printed["train"]["milestones"] == [150, 180, 210]
    assert main(["table1", "--config", "table1_tinyimagenet_cpu", "--print-config", "seeds=[0]"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seeds"] == [0]
    assert main(["demo", "--print-config"]) == 0
    assert "epochs" in yaml.safe_load(capsys.readouterr().out)
    assert list(tmp_path.iterdir()) == []


def test_options_and_overrides_in_any_order(tmp_path, tiny_npz, capsys):
    out = tmp_path / "D"
    argv = ["train-teacher", "--config", "_base_/cifar_student", "model.name=resnet8", "--out", str(out),
            "method=mll", "--fresh", "data.name=npz", f"data.root={tiny_npz}", "train.epochs=1",
            "train.progress=false", "data.batch_size=32"]
    from mcmi.cli import parse

    args = parse(argv)
    assert args.override == ["model.name=resnet8", "method=mll", "data.name=npz", f"data.root={tiny_npz}",
                             "train.epochs=1", "train.progress=false", "data.batch_size=32"]
    assert args.out == str(out) and args.fresh
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())["run"]
    assert saved["model"]["name"] == "resnet8" and saved["data"]["batch_size"] == 32
    # a later override wins, wherever it stands
    assert parse(["table1", "seeds=[0]", "--dry-run", "seeds=[1]", "--only", "method=kd"]).override == \
        ["seeds=[0]", "seeds=[1]"]


def test_measure_prints_standard_json_for_an_absent_class(tmp_path, capsys):
    p = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]])  # class 2 has no sample: its CMI is undefined
    torch.save({"probs": p, "labels": torch.tensor([0, 1])}, tmp_path / "out.pt")
    assert main(["measure", str(tmp_path / "out.pt"), "--per-class"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text
    out = json.loads(text)
    assert out["per_class_cmi"][2] is None and out["n"] == 2
