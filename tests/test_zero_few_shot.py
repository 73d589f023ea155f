"""Zero-shot, few-shot and binary-task data options (paper Sec. 6.2-6.3, A.11, A.13), per-class and
subset accuracy of the evaluator against numpy, and the zero-/few-shot grids end to end on a tiny
npz data set (teachers shared between the two grids)."""
import json
import math

import numpy as np
import pytest
import torch
import yaml
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import ConfigError, build, load_config
from mcmi.data import ImageDataset
from mcmi.experiments import binary, few_shot, semi_supervised, zero_shot
from mcmi.experiments.few_shot import FewShotConfig
from mcmi.experiments.shots import plan_cells
from mcmi.experiments.train import (
    DataSpec,
    build_loaders,
    pick_classes,
    reduce_training_set,
    regroup_classes,
    subset_indices,
)
from mcmi.experiments.zero_shot import ZeroShotConfig
from mcmi.grid.experiment import run_experiment, workers_spec
from mcmi.grid.plan import parse_only
from mcmi.metrics import accuracy_on_classes, confusion_matrix, evaluate, per_class_accuracy


# ------------------------------------------------------------------------------ evaluator
def test_confusion_and_subset_accuracy_match_numpy():
    rng = np.random.default_rng(0)
    c, n = 6, 500
    y = rng.integers(0, c - 1, n)  # class 5 never occurs
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, c, n))
    conf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(y), c)
    want = np.zeros((c, c), dtype=np.int64)
    np.add.at(want, (y, pred), 1)
    assert np.array_equal(conf.numpy(), want)
    pc = per_class_accuracy(conf)
    for k in range(c - 1):
        assert pc[k] == pytest.approx(np.mean(pred[y == k] == k))
    assert math.isnan(pc[5])
    for subset in ([0], [1, 3], [0, 2, 4, 5]):
        m = np.isin(y, subset)
        assert accuracy_on_classes(conf, subset) == pytest.approx(np.mean(pred[m] == y[m]))
    assert accuracy_on_classes(conf, list(range(c))) == pytest.approx(np.mean(pred == y))
    assert math.isnan(accuracy_on_classes(conf, [5])) and math.isnan(accuracy_on_classes(conf, []))
    with pytest.raises(ValueError):
        accuracy_on_classes(conf, [6])


def test_evaluate_reports_confusion_and_accuracy_on_classes():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    x, y = torch.randn(90, 8), torch.randint(0, 4, (90,))
    batches = [{"image": x[i:i + 32], "label": y[i:i + 32]} for i in range(0, 90, 32)]
    res = evaluate(model, batches, 4)
    pred = model(x).argmax(1).numpy()
    yn = y.numpy()
    want = np.zeros((4, 4), dtype=np.int64)
    np.add.at(want, (yn, pred), 1)
    assert np.array_equal(res.confusion.numpy(), want)
    assert res.accuracy == pytest.approx(np.trace(want) / 90)
    assert res.accuracy_on([1, 2]) == pytest.approx(np.mean(pred[np.isin(yn, [1, 2])] == yn[np.isin(yn, [1, 2])]))
    d = res.as_dict(per_class=True)
    assert d["per_class_accuracy"] == pytest.approx([np.mean(pred[yn == k] == k) for k in range(4)])
    assert "confusion" not in res.as_dict()


# ------------------------------------------------------------------------------ data options
def synthetic(n_per_class=10, classes=5, name="syn"):
    y = torch.arange(classes).repeat_interleave(n_per_class)  # class-sorted, like the bundled archives
    x = torch.arange(len(y), dtype=torch.int64).remainder(256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    return ImageDataset(x.clone(), y, [f"c{k}" for k in range(classes)], name)


def test_paired_differences_match_by_seed_and_skip_unfinished():
    from mcmi.reports.numbers import paired_differences

    rows = [{"kind": "mll", "seed": 0, "cell": "a", "acc": 10.0}, {"kind": "mcmi", "seed": 0, "cell": "a", "acc": 12.5},
            {"kind": "mll", "seed": 1, "cell": "a", "acc": 11.0}, {"kind": "mcmi", "seed": 1, "cell": "a", "acc": None},
            {"kind": "mcmi", "seed": 2, "cell": "a", "acc": 9.0}, {"kind": "mll", "seed": 2, "cell": "a", "acc": 9.5},
            {"kind": "mcmi", "seed": 0, "cell": "b", "acc": 50.0}]
    assert paired_differences(rows, "acc", cell="a") == [2.5, -0.5]


def test_binary_paired_section_pools_over_methods():
    from types import SimpleNamespace

    from mcmi.reports.binary import paired_section

    row = lambda m, k, s, a: {"method": m, "kind": k, "seed": s, "best_acc": a}  # noqa: E731
    students = [row("kd", "mll", 0, 80.0), row("kd", "mcmi", 0, 83.0), row("kd", "mll", 1, 70.0),
                row("kd", "mcmi", 1, 69.0), row("at", "mll", 0, 60.0), row("at", "mcmi", 0, 65.0),
                row("at", "mll", 1, 61.0)]  # at seed 1 unfinished for MCMI: left out of the pairs
    cfg = SimpleNamespace(methods=["kd", "at"], tasks=[SimpleNamespace(name="t")])
    lines = "\n".join(paired_section(cfg, {"t": {"students": students}})).splitlines()
    cells = {ln.split("|")[1].strip(): ln.split("|")[2].strip() for ln in lines if ln.startswith("| ")}
    assert cells["kd"] == f"+1.00 ± {np.std([3.0, -1.0], ddof=1):.2f} (1 of 2 > 0)"
    assert cells["at"] == "+5.00 (1 of 1 > 0)"
    assert cells["all methods, pooled"] == f"+2.33 ± {np.std([3.0, -1.0, 5.0], ddof=1):.2f} (2 of 3 > 0)"


def test_pick_classes_is_seeded_nested_and_distinct():
    a = pick_classes(100, 10, seed=3)
    assert a == pick_classes(100, 10, seed=3) and len(set(a)) == 10 and a == sorted(a)
    assert set(pick_classes(100, 5, seed=3)) <= set(a)  # nested: the 10 dropped include the 5
    assert pick_classes(100, 10, seed=4) != a
    assert pick_classes(10, 10, seed=0) == list(range(10)) and pick_classes(10, 0, seed=0) == []
    with pytest.raises(ValueError):
        pick_classes(10, 11, seed=0)
    spec = DataSpec(drop_num_classes=3, drop_seed=7)
    assert spec.dropped_classes(20) == pick_classes(20, 3, 7)
    assert DataSpec(drop_classes=[4, 1]).dropped_classes(5) == [1, 4]
    with pytest.raises(ValueError):
        DataSpec(drop_classes=[5]).dropped_classes(5)


@pytest.mark.parametrize("kwargs", [
    {"drop_classes": [1], "drop_num_classes": 1}, {"train_fraction": 0.0}, {"train_fraction": 1.5},
    {"class_groups": [[0, 1], [1, 2]]}, {"class_groups": [[0]]}, {"epoch_length": "long"},
    {"drop_classes": [2, 2]}, {"fraction_mode": "random"}])
def test_invalid_data_options(kwargs):
    with pytest.raises(ValueError):
        DataSpec(**kwargs)


def test_reduce_training_set_fraction_drop_and_epoch_length():
    ds = synthetic()  # 5 classes x 10, sorted by class
    first, idx = reduce_training_set(DataSpec(train_fraction=0.3, fraction_mode="first"), ds)
    assert torch.equal(first.labels, ds.labels[:15]) and idx is None  # the paper's first alpha*N
    strat, _ = reduce_training_set(DataSpec(train_fraction=0.3, fraction_mode="stratified"), ds)
    assert torch.bincount(strat.labels).tolist() == [3, 3, 3, 3, 3]
    # subset_mode decides when fraction_mode is unset
    same, _ = reduce_training_set(DataSpec(train_fraction=0.3, subset_mode="stratified"), ds)
    assert torch.equal(same.labels, strat.labels)
    dropped, idx = reduce_training_set(DataSpec(drop_classes=[1, 3], epoch_length="full"), ds)
    assert set(dropped.labels.tolist()) == {0, 2, 4} and len(dropped) == 30
    assert dropped.num_classes == 5 and dropped.classes == ds.classes  # the full head stays
    assert idx.tolist() == [i % 30 for i in range(50)]  # epochs keep the full set's length
    both, _ = reduce_training_set(DataSpec(train_fraction=0.4, fraction_mode="stratified", drop_classes=[0]), ds)
    assert torch.bincount(both.labels, minlength=5).tolist() == [0, 4, 4, 4, 4]
    with pytest.raises(ValueError):
        reduce_training_set(DataSpec(train_fraction=0.2, drop_classes=[0, 1]), ds)  # nothing left


def test_regroup_classes_binary_tasks():
    ds = synthetic(n_per_class=4, classes=10)
    two = regroup_classes(ds, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])  # CIFAR-2x5 (A.13, dataset 1)
    assert torch.equal(two.labels, (ds.labels >= 5).long()) and torch.equal(two.images, ds.images)
    assert two.classes == ["c0+c1+c2+c3+c4", "c5+c6+c7+c8+c9"] and two.name == ds.name
    pair = regroup_classes(ds, [[7], [2]])  # CIFAR-26-45 style: keep two classes, in the order given
    keep = np.isin(ds.labels.numpy(), [2, 7])
    assert torch.equal(pair.images, ds.images[torch.from_numpy(keep)])
    assert pair.labels.tolist() == [1] * 4 + [0] * 4 and pair.classes == ["c7", "c2"]
    with pytest.raises(ValueError):
        regroup_classes(ds, [[0], [10]])


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    return write_npz(tmp_path_factory.mktemp("shots") / "tiny.npz", n_train=64, n_test=32, size=32, class_sorted=True)


def test_build_loaders_reduce_training_only(tiny_npz):
    plain = DataSpec(name="npz", root=str(tiny_npz), batch_size=16, augment=False)
    spec = DataSpec(name="npz", root=str(tiny_npz), batch_size=16, augment=False, drop_classes=[2],
                    train_fraction=0.5, fraction_mode="stratified", epoch_length="full")
    tr0, te0, ld0, _, _ = build_loaders(plain, torch.device("cpu"), 0, False)
    tr, te, ld, test_ld, _ = build_loaders(spec, torch.device("cpu"), 0, False)
    labels = torch.cat([b["label"] for b in ld])
    assert 2 not in labels.tolist() and len(labels) == 64  # full epoch length, cycled subset
    assert tr.num_classes == 4 and len(tr) == len(subset_indices(tr0.labels, 32, "stratified")) - int(
        (tr0.labels[subset_indices(tr0.labels, 32, "stratified")] == 2).sum())
    assert torch.equal(torch.cat([b["label"] for b in test_ld]), te0.labels)  # test keeps every class
    # normalization from the whole training set: the teacher's statistics
    assert ld.transform.mean == ld0.transform.mean and ld.transform.std == ld0.transform.std
    binary = DataSpec(name="npz", root=str(tiny_npz), class_groups=[[0, 1], [2, 3]])
    trb, teb, _, _, _ = build_loaders(binary, torch.device("cpu"), 0, False)
    assert trb.num_classes == 2 and torch.equal(teb.labels, (te0.labels >= 2).long())


# ------------------------------------------------------------------------------ grids
def grid(tmp_path, npz, **extra):
    one = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    return {"teacher": "resnet8", "student": "resnet8", "methods": ["kd"], "seeds": [0],
            "data": {"name": "npz", "root": str(npz), "batch_size": 32, "eval_batch_size": 64},
            "teacher_recipe": one, "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
            "student_recipe": one, "device": "cpu", "out": str(tmp_path / "grid"), **extra}


def test_grid_configs_validate(tmp_path, tiny_npz):
    p = tmp_path / "z.yaml"
    p.write_text(yaml.safe_dump(grid(tmp_path, tiny_npz, drop_counts=[2, 1], drop_order=[3, 1])))
    cfg = load_config(ZeroShotConfig, p)
    assert [c.key for c in cfg.cells()] == ["drop1", "drop2"] and cfg.name == "zero_shot"
    assert cfg.cells()[1].data(0) == {"drop_classes": [1, 3]}
    cfg.drop_order = None
    assert cfg.cells()[0].data(5) == {"drop_num_classes": 1, "drop_seed": 5}
    for bad in ({"drop_counts": [3], "drop_order": [1]}, {"drop_counts": [0]},
                {"data": {"name": "npz", "drop_classes": [1]}}, {"mcmi_lambda": -1.0}):
        p.write_text(yaml.safe_dump(grid(tmp_path, tiny_npz, **bad)))
        with pytest.raises(ConfigError):
            load_config(ZeroShotConfig, p)
    p.write_text(yaml.safe_dump(grid(tmp_path, tiny_npz, fractions=[0.5, 0.25])))
    f = load_config(FewShotConfig, p)
    assert [c.key for c in f.cells()] == ["frac0.25", "frac0.5"]
    assert f.cells()[0].data(0) == {"train_fraction": 0.25, "fraction_mode": "first", "epoch_length": "full"}
    runs = plan_cells(f, f.cells())
    assert [r.key for r in runs if r.stage == "student"][:2] == ["few_shot/students/frac0.25/kd/mll/seed0",
                                                                 "few_shot/students/frac0.25/kd/mcmi/seed0"]
    assert parse_only("cell=frac0.5|frac0.25,kind=mcmi") == {"cell": {"frac0.5", "frac0.25"}, "kind": {"mcmi"}}


def test_zero_and_few_shot_grids_end_to_end(tmp_path, tiny_npz):
    z = build(ZeroShotConfig, grid(tmp_path, tiny_npz, drop_counts=[1], drop_order=[3], mcmi_lambda=0.2))
    runs, outcomes, report = run_experiment(zero_shot.EXPERIMENT, z, command="mcmi zero-shot --config z.yaml")
    assert [o.result for o in outcomes] == ["done"] * 4  # MLL, MCMI teachers + 2 students
    out = tmp_path / "grid"
    ev = json.loads((out / "zero_shot/students/drop1/kd/mcmi/seed0/class_eval.json").read_text())
    assert ev["dropped"] == [3] and len(ev["confusion"]) == 4
    conf = np.array(ev["confusion"])
    assert ev["accuracy_dropped"] == pytest.approx(conf[3, 3] / conf[3].sum())
    assert ev["accuracy_kept"] == pytest.approx(np.trace(conf[:3, :3]) / conf[:3].sum())
    text = report.read_text()
    assert "## Accuracy on dropped / kept classes" in text and "| kd | MCMI |" in text
    assert "mcmi zero-shot --config z.yaml" in text and "- drop1, seed 0: [3]" in text
    assert (out / "zero_shot/confusion_drop1.png").is_file() and (out / "zero_shot/zero_shot.png").is_file()
    students = json.loads((out / "zero_shot/results.json").read_text())["students"]
    acc = {(r["kind"], key): r[key] for r in students for key in ("acc_dropped", "acc_kept", "acc")}
    assert acc[("mll", "acc_dropped")] is not None
    paired = next(ln for ln in text.splitlines() if ln.startswith("| kd | MCMI - MLL, paired |"))
    gain = lambda key: f"{acc[('mcmi', key)] - acc[('mll', key)]:+.2f}"  # noqa: E731  (one seed: no std)
    assert paired == f"| kd | MCMI - MLL, paired | {gain('acc_dropped')} / {gain('acc_kept')} |"
    assert f"| kd | MCMI - MLL, paired | {gain('acc')} |" in text
    # the few-shot grid on the same out reuses both teachers; its students run as 2 parallel jobs
    f = build(FewShotConfig, grid(tmp_path, tiny_npz, fractions=[0.5], fraction_mode="stratified", mcmi_lambda=0.2))
    runs, outcomes, report = run_experiment(few_shot.EXPERIMENT, f, spec=workers_spec(2))
    assert [(o.key.split("/")[0], o.result) for o in outcomes] == [("teachers", "skipped")] * 2 + [("few_shot", "done")] * 2
    text = report.read_text()
    assert "## Student top-1, best epoch" in text and "| kd | gain |" in text and "α = 50%" in text
    assert (out / "few_shot/few_shot.png").is_file() and "(few_shot.png)" in text
    best = {r["kind"]: r["best_acc"] for r in json.loads((out / "few_shot/results.json").read_text())["students"]}
    assert f"| kd | MCMI - MLL, paired | {best['mcmi'] - best['mll']:+.2f} |" in text  # one seed: no std
    # a rerun trains nothing
    _, outcomes, _ = run_experiment(zero_shot.EXPERIMENT, z)
    assert {o.result for o in outcomes} == {"skipped"}


@pytest.mark.parametrize("name,students", [
    ("zero_shot_cifar100", 6 * 2 * 5), ("zero_shot_cifar10", 6 * 2 * 5), ("few_shot_cifar100", 7 * 2 * 2 * 5),
    ("zero_shot_cifar10_cpu", 3 * 2 * 3), ("zero_shot_tinyimagenet_cpu", 3 * 2 * 3), ("few_shot_tinyimagenet_cpu", 3 * 2 * 2 * 3)])
def test_shipped_grid_configs_expand(name, students, capsys):
    command = "zero-shot" if name.startswith("zero") else "few-shot"
    assert main([command, "--config", name, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("/students/" in ln for ln in lines) == students
    assert sum(" teachers/" in ln for ln in lines) == 2  # one MLL teacher and its MCMI fine-tune


# ------------------------------------------------------------------------------ binary tasks
def test_binary_tasks_end_to_end(tmp_path, tiny_npz):
    from mcmi.experiments.binary import BinaryConfig

    one = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    cfg = build(BinaryConfig, {
        "tasks": [{"name": "halves", "data": "npz", "root": str(tiny_npz), "class_groups": [[0, 1], [2, 3]]},
                  {"name": "pair-0-3", "data": "npz", "root": str(tiny_npz), "class_groups": [[0], [3]]}],
        "teacher": "resnet8", "student": "mobilenetv2_x0_1", "methods": ["kd", "at"], "seeds": [0],
        "data": {"batch_size": 16, "eval_batch_size": 64}, "teacher_recipe": one, "student_recipe": one,
        "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
        "mcmi_lambda": 0.2, "device": "cpu", "out": str(tmp_path / "b")})
    runs, outcomes, report = run_experiment(binary.EXPERIMENT, cfg, only="task=pair-0-3",
                                            command="mcmi binary --config b.yaml")
    assert len(outcomes) == 7 and {o.result for o in outcomes} == {"done"}  # 2 teachers, baseline, 2 x 2 students
    task = tmp_path / "b/binary/pair-0-3"
    ev = json.loads((task / "teachers/resnet8/mcmi/teacher_eval.json").read_text())
    # the teacher is measured on its own task (a 2-class head): the 16 + 16 training images of classes 0 and 3
    assert ev["train"]["n"] == 32 and ev["last_acc"] is not None
    assert not (tmp_path / "b/binary/halves").exists()
    text = report.read_text()
    assert "| method | halves MLL | halves MCMI | pair-0-3 MLL | pair-0-3 MCMI |" in text
    assert "`pair-0-3`: `npz`, class 0 = original classes [0], class 1 = [3]" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("| kd |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["–", "–"] and cells[3] != "–" and "(" in cells[4]  # halves not trained; gain shown
    data = json.loads((tmp_path / "b/binary/results.json").read_text())
    best = {(r["method"], r["kind"]): r["best_acc"] for r in data["tasks"]["pair-0-3"]["students"]}
    diffs = [best[(m, "mcmi")] - best[(m, "mll")] for m in ("kd", "at")]
    lines = text.splitlines()
    start = lines.index("## MCMI - MLL, paired by seed (best epoch)")
    paired = {ln.split("|")[1].strip(): ln.split("|")[3].strip() for ln in lines[start:start + 10] if ln.startswith("| ")}
    assert paired["kd"] == f"{diffs[0]:+.2f} ({int(diffs[0] > 0)} of 1 > 0)"
    pooled_std = np.std(diffs, ddof=1)
    assert paired["all methods, pooled"] == f"{np.mean(diffs):+.2f} ± {pooled_std:.2f} ({sum(d > 0 for d in diffs)} of 2 > 0)"
    assert data["tasks"]["pair-0-3"]["teachers"]["resnet8"]["mcmi"]["train_cmi"] == pytest.approx(ev["train"]["cmi"])
    with pytest.raises(ConfigError, match="task=nope matches nothing"):
        run_experiment(binary.EXPERIMENT, cfg, only="task=nope")


@pytest.mark.parametrize("name,tasks,students", [("binary_cifar", 3, 4 * 2 * 5 + 5), ("binary_cpu", 2, 4 * 2 * 3 + 3),
                                                 ("binary_cifar10_partial_cpu", 1, 2 * 2 * 2 + 2)])
def test_shipped_binary_configs_expand(name, tasks, students, capsys):
    assert main(["binary", "--config", name, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("/students/" in ln for ln in lines) == tasks * students  # with the students alone
    assert sum("/teachers/" in ln for ln in lines) == tasks * 2  # each task: its own teacher + MCMI fine-tune


# ------------------------------------------------------------------------------ semi-supervised
def test_semi_supervised_grid_end_to_end(tmp_path, tiny_npz):
    from mcmi.experiments.semi_supervised import SemiSupervisedConfig

    one = {"_base_": "_base_/cifar_teacher.yaml", "train": {"epochs": 1, "milestones": [1], "progress": False}}
    cfg = build(SemiSupervisedConfig, {
        "teacher": "resnet8", "student": "resnet8", "labeled_fractions": [0.25, 0.5], "seeds": [0],
        "data": {"name": "npz", "root": str(tiny_npz), "batch_size": 16, "eval_batch_size": 64},
        "teacher_recipe": one, "student_recipe": one,
        "mcmi_recipe": {"_base_": "_base_/cifar_mcmi.yaml", "train": {"epochs": 1, "progress": False}},
        "mcmi_lambda": 0.2, "device": "cpu", "out": str(tmp_path / "s")})
    cell = "semi_supervised/labeled0.25"
    runs = {r.key.removeprefix(cell + "/"): r for r in semi_supervised.plan(cfg) if r.label("cell") == "labeled0.25"}
    for key in ("teachers/resnet8/mll", "teachers/resnet8/mcmi", "students/resnet8/baseline/seed0"):
        d = runs[key].config.data
        assert (d.train_fraction, d.fraction_mode, d.epoch_length) == (0.25, "stratified", "full")
    student = runs["students/resnet8-resnet8/kd/mcmi/seed0"].config
    assert student.data.train_fraction is None  # the student distils on every image
    assert student.method_args == {"ce_weight": 0.0, "kd_weight": 1.0, "temperature": 1.0}
    _, outcomes, report = run_experiment(semi_supervised.EXPERIMENT, cfg, only="cell=labeled0.25")
    assert len(outcomes) == 5 and {o.result for o in outcomes} == {"done"}
    cell = tmp_path / "s/semi_supervised/labeled0.25"
    log = [json.loads(ln) for ln in (cell / "students/resnet8-resnet8/kd/mll/seed0/metrics.jsonl").read_text().splitlines()]
    assert "train_loss_ce" not in log[-1] and "train_loss_kd" in log[-1]  # no label in the student's loss
    text = report.read_text()
    assert "25% (16)" in text and "50% (32)" in text  # labeled images of the 64
    assert "| KD, MCMI teacher |" in text and "| labeled images alone |" in text
    res = json.loads((tmp_path / "s/semi_supervised/results.json").read_text())["cells"]["labeled0.25"]["students"]
    best = {r["kind"]: r["best_acc"] for r in res}
    assert f"| KD, MCMI - MLL paired by seed | {best['mcmi'] - best['mll']:+.2f} | – |" in text
    assert (tmp_path / "s/semi_supervised/accuracy_vs_labeled.png").is_file()
    with pytest.raises(ValueError, match="labeled_fractions"):
        build(SemiSupervisedConfig, {"labeled_fractions": [1.0]})
