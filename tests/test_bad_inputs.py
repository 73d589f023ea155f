"""Bad inputs and faults, each typed as a user would: every one is one line on stderr naming the
file / key / value (and the nearest valid names), exit status 2, and no file created or damaged.

Most cases call ``mcmi.cli.main([...])`` in this process (fast); a few run ``python -m mcmi.cli``
as a subprocess to check the real exit status and stderr. Data are small npz archives written
into each test's folder (tests/helpers.py ``write_npz``); the models are resnet8 on 8x8 images.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_npz

from mcmi.cli import main
from mcmi.methods import METHODS
from mcmi.methods.options import method_options

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with its content hash (folders: "dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def common(npz: Path) -> list[str]:
    return ["data.name=npz", f"data.root={npz}", "data.batch_size=16", "model.name=resnet8",
            "train.epochs=1", "train.progress=false", "device=cpu"]


def fails(capsys, watch: Path, argv: list[str], *expected: str) -> str:
    """Run ``mcmi argv``: exit status 2, one line on stderr containing every ``expected`` piece,
    nothing under ``watch`` created, changed or removed. Returns the line."""
    before = snapshot(watch)
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # usage errors keep argparse's protocol
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("mcmi") and "\n" not in err, err
    for piece in expected:
        assert str(piece) in err, (piece, err)
    assert snapshot(watch) == before, "files created or changed"
    return err


@pytest.fixture
def npz(tmp_path):
    return write_npz(tmp_path / "data.npz", n_train=48, n_test=16, size=8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 1-epoch resnet8 run on 4 classes (teacher for the distillation cases, and a run
    folder to resume)."""
    base = tmp_path_factory.mktemp("trained")
    data = write_npz(base / "data.npz", n_train=48, n_test=16, size=8)
    out = base / "run"
    assert main(["train-teacher", "--out", str(out), *common(data)]) == 0
    return out, data


@pytest.fixture
def run_copy(tmp_path, trained):
    """A copy of the trained run in this test's folder, with its data."""
    out, data = trained
    shutil.copytree(out, tmp_path / "run")
    shutil.copy(data, tmp_path / "data.npz")
    return tmp_path / "run", tmp_path / "data.npz"


# ------------------------------------------------------------------------------------ config
def test_unknown_key(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "train.epoch=3"],
          "unknown key 'train.epoch'", "did you mean 'train.epochs'?")


def test_wrong_type(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "train.epochs=ten"],
          "train.epochs must be int", "'ten'")


def test_float_key_that_is_not_a_number(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "train.weight_decay=high"],
          "+ overrides", "train.weight_decay must be a number", "'high'")


@pytest.mark.parametrize("override, expected", [
    ("train.lr=-1", "train.lr must be a number >= 0, got -1.0"),
    ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
    ("train.epochs=0", "train.epochs must be >= 1, got 0"),
    ("train.momentum=1.5", "train.momentum must be in [0, 1), got 1.5"),
])
def test_out_of_range(tmp_path, npz, capsys, override, expected):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), override], expected)


def test_yaml_syntax_error_names_file_and_line(tmp_path, npz, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  epochs: 3\n  lr: [0.1\n")
    fails(capsys, tmp_path, ["train-teacher", "--config", recipe, "--out", tmp_path / "o", *common(npz)],
          "bad.yaml", "not valid YAML", "line")


def test_missing_recipe(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--config", "teachers/resnet57_cifar100", *common(npz)],
          "recipe 'teachers/resnet57_cifar100' not found", "mcmi recipes")


def test_base_cycle_names_the_files(tmp_path, npz, capsys):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\ntrain: {epochs: 1}\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    fails(capsys, tmp_path, ["train-teacher", "--config", tmp_path / "a.yaml", *common(npz)],
          "_base_ cycle", "a.yaml -> ", "b.yaml -> ")


def test_unknown_method(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["distill", "--out", tmp_path / "o", *common(npz), "method=kdd"],
          "method='kdd'", "unknown method", "did you mean 'kd'")


@pytest.mark.parametrize("method", METHODS.names())
def test_method_option_typo_for_every_method(tmp_path, npz, capsys, method):
    """A misspelt option of every registered method is refused when the recipe is loaded, naming
    the nearest option (``--print-config``: the error comes before anything else)."""
    names = sorted(method_options(method))
    typo = (names[0][:-1] + names[0][-1] * 2) if names else "weight"
    expected = [f"method_args.{typo}", f"method {method!r} has no option {typo!r}"]
    if names:
        expected.append(f"did you mean {names[0]!r}")
    fails(capsys, tmp_path, ["train-teacher", "--print-config", *common(npz), f"method={method}",
                             f"method_args.{typo}=1"], *expected)


@pytest.mark.parametrize("method, override, expected", [
    ("kd", "method_args.temprature=2", "did you mean 'temperature'"),
    ("dkd", "method_args.betta=2", "did you mean 'beta'"),
])
def test_method_option_typos_of_the_issue(tmp_path, npz, capsys, method, override, expected):
    fails(capsys, tmp_path, ["distill", "--config", "_base_/cifar_student", "model.name=resnet8", "--out",
                             tmp_path / "D", f"method={method}", override, *common(npz)[:2]], expected)


def test_method_option_of_the_wrong_type(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "method_args.label_smoothing=lots"],
          "method_args.label_smoothing must be a number", "'lots'")


@pytest.mark.parametrize("override, expected", [
    ("model.name=resnet9", ("model.name='resnet9'", "unknown model", "did you mean 'resnet8'")),
    ("data.name=cifar1000", ("data.name='cifar1000'", "unknown data set", "did you mean 'cifar100'")),
    ("device=gpu", ("device must be auto, cpu, cuda", "'gpu'")),
])
def test_unknown_model_data_set_or_device(tmp_path, npz, capsys, override, expected):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), override], *expected)


@pytest.mark.parametrize("argv, expected", [
    (["train-teacher", "--fersh"], ("unrecognized arguments: --fersh", "did you mean '--fresh'")),
    (["distil", "--config", "students/kd"], ("invalid choice: 'distil'", "did you mean 'distill'")),
])
def test_unknown_option_or_command_suggests_the_nearest(tmp_path, capsys, argv, expected):
    fails(capsys, tmp_path, argv, *expected)


# -------------------------------------------------------------------------------------- data
def test_missing_data_root(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={tmp_path / 'nope.npz'}"],
          "npz archive not found", "nope.npz")


def test_truncated_npz(tmp_path, npz, capsys):
    bad = tmp_path / "cut.npz"
    bad.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={bad}"],
          "cannot read npz archive", "cut.npz")


def test_npz_with_wrong_keys(tmp_path, npz, capsys):
    bad = tmp_path / "keys.npz"
    np.savez(bad, images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(4, np.int64))
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={bad}"],
          "keys.npz", "missing keys", "x_train")


def test_labels_out_of_range(tmp_path, npz, capsys):
    bad = tmp_path / "labels.npz"
    x = np.zeros((8, 8, 8, 3), np.uint8)
    np.savez(bad, x_train=x, y_train=np.array([0, 1, 2, -1, 0, 1, 2, 0]), x_test=x, y_test=np.zeros(8, np.int64))
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={bad}"],
          "labels out of range", "labels.npz", "[-1, 2]")


def test_images_of_another_shape(tmp_path, npz, capsys):
    bad = tmp_path / "shapes.npz"
    y = np.arange(8) % 2
    np.savez(bad, x_train=np.zeros((8, 8, 8, 3), np.uint8), y_train=y, x_test=np.zeros((8, 16, 16, 3), np.uint8),
             y_test=y)
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={bad}"],
          "shapes.npz", "(3, 8, 8)", "(3, 16, 16)")


def test_images_of_another_channel_count(tmp_path, npz, capsys):
    bad = tmp_path / "gray.npz"
    y = np.arange(8) % 2
    x = np.zeros((8, 8, 8, 1), np.uint8)
    np.savez(bad, x_train=x, y_train=y, x_test=x, y_test=y)
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), f"data.root={bad}"],
          "gray.npz", "3 channels", "(8, 8, 8, 1)")


def test_cifar_folder_missing_a_file(tmp_path, npz, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "batches.meta"):
        (folder / name).write_bytes(b"")
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "data.name=cifar10",
                             f"data.root={tmp_path}"], "incomplete CIFAR-10 folder", "missing", "data_batch_3")


def test_empty_image_folder(tmp_path, npz, capsys):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "val").mkdir()
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "data.name=imagefolder",
                             f"data.root={tmp_path / 'images'}"], "no class folders", "images")


def test_train_subset_larger_than_the_data_set(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", tmp_path / "o", *common(npz), "data.train_subset=1000"],
          "data.train_subset=1000 is larger than the training set", "48 images")


# ------------------------------------------------------------------------ models, checkpoints
def test_teacher_of_another_arch(tmp_path, npz, trained, capsys):
    run, _ = trained
    fails(capsys, tmp_path, ["distill", "--out", tmp_path / "s", *common(npz), "method=kd", "teacher.name=resnet20",
                             f"teacher.weights={run / 'last.pt'}"], "last.pt", "'resnet8'", "'resnet20'")


def test_teacher_of_another_class_count(tmp_path, trained, capsys):
    run, _ = trained  # 4 classes
    five = write_npz(tmp_path / "five.npz", n_train=40, n_test=10, size=8, classes=5)
    fails(capsys, tmp_path, ["distill", "--out", tmp_path / "s", *common(five), "method=kd", "teacher.name=resnet8",
                             f"teacher.weights={run / 'last.pt'}"], "last.pt", "4 classes", "5")


def test_teacher_weights_missing(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["distill", "--out", tmp_path / "s", *common(npz), "method=kd", "teacher.name=resnet8",
                             f"teacher.weights={tmp_path / 'none.pt'}"], "none.pt", "no such checkpoint file")


def test_teacher_weights_not_set(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["distill", "--out", tmp_path / "s", *common(npz), "method=kd", "teacher.name=resnet8"],
          "teacher.weights is not set")


@pytest.mark.parametrize("content, expected", [
    (b"PK\x03\x04 half a zip", "truncated, corrupt or not a torch file"),
    (b"epoch: 3\n", "truncated, corrupt or not a torch file"),
])
def test_damaged_last_pt_is_refused_and_left_alone(run_copy, capsys, content, expected):
    run, data = run_copy
    (run / "last.pt").write_bytes(content)
    (run / "last.prev.pt").unlink(missing_ok=True)
    fails(capsys, run.parent, ["train-teacher", "--out", run, *common(data), "train.epochs=2"], "last.pt", expected)


def test_resume_with_a_changed_model(run_copy, capsys):
    run, data = run_copy
    fails(capsys, run.parent, ["train-teacher", "--out", run, *common(data), "model.name=resnet14"],
          "last.pt", "resnet14")


def test_resume_with_a_changed_lr_is_refused_naming_the_key(run_copy, capsys):
    run, data = run_copy
    err = fails(capsys, run.parent, ["train-teacher", "--out", run, *common(data), "train.lr=0.1", "train.epochs=2"],
                "the recipe changed since this checkpoint", "train.lr 0.05 -> 0.1", "--allow-changes train.lr")
    assert "train.epochs" not in err  # the one key that may change


# ------------------------------------------------------------------------------------ faults
def test_out_under_a_file(tmp_path, npz, capsys):
    fails(capsys, tmp_path, ["train-teacher", "--out", npz / "run", *common(npz)], "data.npz is a file, not a folder")


def test_locked_run_is_one_line(run_copy, capsys):
    run, data = run_copy
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "job": None,
                                                  "started": "now"}))
        fails(capsys, run.parent, ["train-teacher", "--out", run, *common(data), "train.epochs=2"],
              "is being trained by another process", f"pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def _mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.mark.root
def test_read_only_folder(tmp_path, npz, capsys):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        fails(capsys, tmp_path, ["train-teacher", "--out", ro / "run", *common(npz)],
              "cannot write in", "read-only file system")
    finally:
        _umount(ro)


def test_folder_without_write_permission(tmp_path, npz, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into any folder; test_read_only_folder covers the root case")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        fails(capsys, tmp_path, ["train-teacher", "--out", locked / "run", *common(npz)], "cannot write in", "locked")
    finally:
        locked.chmod(0o755)


@pytest.mark.root
def test_full_disk_is_no_space_left(tmp_path, npz, capsys):
    """A 2 MB tmpfs holding a filler with ~100 KB free: the first checkpoint does not fit. One line
    "no space left on ...", exit 2, no checkpoint or temporary file left, the filler intact."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=2m")
    try:
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * (free - 100 * 1024))
        before = (disk / "filler").stat().st_size
        capsys.readouterr()
        rc = main(["train-teacher", "--out", str(disk / "run"), *common(npz)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "\n" not in err, err
        assert err.startswith("mcmi: no space left on"), err
        left = [p.name for p in disk.rglob("*") if p.is_file() and p.name != "filler"]
        assert not [n for n in left if n.endswith((".pt", ".tmp")) or n == "run.lock"], left
        assert (disk / "filler").stat().st_size == before
    finally:
        _umount(disk)


# ----------------------------------------------------------------------- measure, evaluate
@pytest.mark.parametrize("content, expected", [
    ({"probs": torch.tensor([0.5, 0.5]), "labels": torch.tensor([0])}, "must be (N, C)"),
    ({"logits": torch.zeros(3, 2), "labels": torch.tensor([0, 1])}, "'labels' must be (3,)"),
    ({"logits": torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), "labels": torch.tensor([0, 1])}, "NaN or infinite"),
    ({"probs": torch.tensor([[float("inf"), 0.0]]), "labels": torch.tensor([0])}, "NaN or infinite"),
    ({"logits": torch.zeros(2, 2), "labels": torch.tensor([0, 2])}, "labels out of range"),
    ({"outputs": torch.zeros(2, 2)}, "needs keys 'labels' and 'probs' or 'logits'"),
])
def test_measure_refuses_bad_outputs(tmp_path, capsys, content, expected):
    f = tmp_path / "out.pt"
    torch.save(content, f)
    fails(capsys, tmp_path, ["measure", f], "out.pt", expected)


def test_measure_missing_file(tmp_path, capsys):
    fails(capsys, tmp_path, ["measure", tmp_path / "none.npz"], "none.npz", "no such file")


def test_evaluate_refuses_non_finite_weights(tmp_path, trained, capsys):
    from mcmi.engine import load_checkpoint, save_checkpoint

    run, data = trained
    state = load_checkpoint(run / "last.pt")
    key = next(k for k, v in state["method"].items() if v.is_floating_point() and k.startswith("model."))
    state["method"][key] = torch.full_like(state["method"][key], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", {k: v for k, v in state.items() if k not in ("format", "format_version")})
    fails(capsys, tmp_path, ["evaluate", tmp_path / "nan.pt", "--data", "npz", "--root", data],
          "nan.pt", "NaN or infinite weights", key[len("model."):])


def test_evaluate_unknown_data_set(tmp_path, trained, capsys):
    run, _ = trained
    fails(capsys, tmp_path, ["evaluate", run / "last.pt", "--data", "cifar1000"],
          "unknown dataset 'cifar1000'", "did you mean 'cifar100'")


# ------------------------------------------------------------------- as a separate process
def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "mcmi.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("case", ["method", "measure-nan"])
def test_exit_status_and_stderr_of_the_process(tmp_path, case):
    npz = write_npz(tmp_path / "data.npz", n_train=16, n_test=8, size=8)
    if case == "method":
        args, expected = ["distill", "--out", tmp_path / "D", *common(npz), "method=kdd"], "did you mean 'kd'"
    else:
        torch.save({"logits": torch.tensor([[float("nan"), 0.0]]), "labels": torch.tensor([0])}, tmp_path / "o.pt")
        args, expected = ["measure", tmp_path / "o.pt"], "NaN or infinite"
    before = snapshot(tmp_path)
    r = _cli(args, tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stdout == "" and r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
    assert snapshot(tmp_path) == before


def test_a_bug_still_gives_a_traceback(tmp_path, monkeypatch):
    """Errors that are not the user's are not turned into one line: traceback, exit status 1."""
    import mcmi.cli

    def boom(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(mcmi.cli, "cmd_recipes", boom)
    parser_args = mcmi.cli.parse(["recipes"])
    assert parser_args.func is boom
    with pytest.raises(RuntimeError, match="a bug"):
        main(["recipes"])


# ------------------------------------------------------------------ options added with cohorts
def test_allow_changes_with_a_key_that_does_not_exist(tmp_path, run_copy, capsys):
    out, data = run_copy
    fails(capsys, tmp_path, ["train-teacher", "--out", out, *common(data), "train.lr=0.2",
                             "--allow-changes", "train.lrr"],
          "--allow-changes 'train.lrr'", "no such recipe key", "did you mean 'train.lr'")


@pytest.mark.parametrize("members, override, expected", [
    ("kd,dkk", "kd:method_args.temperature=2", ("method='dkk'", "did you mean 'dkd'")),
    ("kd,dkd", "dkd:method_args.betta=2", ("cohort member dkd", "did you mean 'beta'")),
])
def test_cohort_member_typos(tmp_path, trained, capsys, members, override, expected):
    teacher, data = trained
    # the member override comes after an option: it must still be read as an override
    fails(capsys, tmp_path, ["distill", *common(data), "method=kd", "teacher.name=resnet8",
                             f"teacher.weights={teacher / 'last.pt'}", "--cohort", members,
                             "--out", tmp_path / "c", override], *expected)
