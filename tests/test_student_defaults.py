"""Student defaults (lr by student, DKD/ReviewKD weights per pair) wherever a student is trained:
the pinned per-pair table with its sources, explicit settings winning, the CLI and sweep paths,
the grids, and the Table 1 report's fallback marks."""
import json
import logging

import pytest
import yaml
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import load_config
from mcmi.experiments.student_defaults import load_run_config, recipe_explicit_keys
from mcmi.experiments.sweep import expand_recipe_grid, parse_grid
from mcmi.experiments.table1 import PairSpec, Table1Config
from mcmi.experiments.table1 import plan as expand_grid
from mcmi.methods import method_class
from mcmi.methods.pair_defaults import has_pair_defaults, pair_default_status
from mcmi.recipes import RECIPES
from mcmi.reports.table1 import PAPER_REPRODUCED, write_table1_report

MD, RK = "mdistiller configs/cifar100/dkd/", "ReviewKD CIFAR-100/script/reviewKD.sh"

#: (value, official, source file, the authors' pair the value is taken from) for every pair of
#: the paper's Table 1; read from mdistiller's configs/cifar100/dkd/*.yaml (no DKD section: its
#: cfg.py default 8.0) and the ReviewKD authors' CIFAR-100/script/reviewKD.sh.
PINNED_DKD = {
    ("resnet56", "resnet20"): (2.0, True, MD + "res56_res20.yaml", None),
    ("resnet110", "resnet20"): (2.0, False, MD + "res110_res32.yaml", ("resnet110", "resnet32")),
    ("resnet110", "resnet32"): (2.0, True, MD + "res110_res32.yaml", None),
    ("wrn_40_2", "wrn_16_2"): (6.0, True, MD + "wrn40_2_wrn_16_2.yaml", None),
    ("wrn_40_2", "wrn_40_1"): (6.0, True, MD + "wrn40_2_wrn_40_1.yaml", None),
    ("vgg13", "vgg8"): (6.0, True, MD + "vgg13_vgg8.yaml", None),
    ("resnet50", "mobilenetv2"): (8.0, True, MD + "res50_mv2.yaml", None),
    ("resnet50", "vgg8"): (8.0, False, MD + "res50_mv2.yaml", ("resnet50", "mobilenetv2")),
    ("resnet32x4", "shufflenetv1"): (8.0, True, MD + "res32x4_shuv1.yaml", None),
    ("resnet32x4", "shufflenetv2"): (8.0, True, MD + "res32x4_shuv2.yaml", None),
    ("wrn_40_2", "shufflenetv1"): (8.0, True, MD + "wrn40_2_shuv1.yaml", None),
    ("vgg13", "mobilenetv2"): (6.0, True, MD + "vgg13_mv2.yaml", None),
}
PINNED_REVIEWKD = {
    ("resnet56", "resnet20"): (0.6, True, "resnet20 <- resnet56: --kd-loss-weight 0.6", None),
    ("resnet110", "resnet20"): (1.0, False, "resnet32 <- resnet110: --kd-loss-weight 1.0", ("resnet110", "resnet32")),
    ("resnet110", "resnet32"): (1.0, True, "resnet32 <- resnet110: --kd-loss-weight 1.0", None),
    ("wrn_40_2", "wrn_16_2"): (5.0, True, "wrn-16-2 <- wrn-40-2: --kd-loss-weight 5.0", None),
    ("wrn_40_2", "wrn_40_1"): (5.0, True, "wrn-40-1 <- wrn-40-2: --kd-loss-weight 5.0", None),
    ("vgg13", "vgg8"): (5.0, False, "resnet8x4 <- resnet32x4: --kd-loss-weight 5.0", ("resnet32x4", "resnet8x4")),
    ("resnet50", "mobilenetv2"): (5.0, False, "shufflev1 <- resnet32x4: --kd-loss-weight 5.0",
                                  ("resnet32x4", "shufflenetv1")),
    ("resnet50", "vgg8"): (5.0, False, "shufflev1 <- resnet32x4: --kd-loss-weight 5.0", ("resnet32x4", "shufflenetv1")),
    ("resnet32x4", "shufflenetv1"): (5.0, True, "shufflev1 <- resnet32x4: --kd-loss-weight 5.0", None),
    ("resnet32x4", "shufflenetv2"): (8.0, True, "shufflev2 <- resnet32x4: --kd-loss-weight 8.0", None),
    ("wrn_40_2", "shufflenetv1"): (5.0, True, "shufflev1 <- wrn-40-2: --kd-loss-weight 5.0", None),
    ("vgg13", "mobilenetv2"): (5.0, False, "shufflev1 <- resnet32x4: --kd-loss-weight 5.0",
                               ("resnet32x4", "shufflenetv1")),
}


def paper_pairs():
    cfg = yaml.safe_load((RECIPES / "experiments/table1_cifar100.yaml").read_text())
    return [(p["teacher"], p["student"]) for p in cfg["pairs"]]


@pytest.mark.parametrize("method,key,pinned", [("dkd", "beta", PINNED_DKD), ("reviewkd", "reviewkd_weight", PINNED_REVIEWKD)])
def test_pair_weights_of_the_twelve_table1_pairs_are_pinned_with_sources(method, key, pinned):
    assert sorted(pinned) == sorted(paper_pairs()) and len(pinned) == 12
    table = method_class(method).pair_defaults
    assert table.weight_keys == (key,)
    for pair, (value, official, source, source_pair) in pinned.items():
        entry = table[pair]
        assert dict(entry.values) == {key: value}, pair
        assert entry.official is official and entry.source_pair == source_pair, pair
        assert source in entry.source, (pair, entry.source)
        assert table.values_for(*pair) == {key: value}
        if not official:
            # a fallback takes the value the authors give for its source pair, which they do give
            src = table[source_pair]
            assert src.official and dict(src.values) == dict(entry.values), pair
            assert entry.reason and f"{source_pair[0]}→{source_pair[1]}" in entry.describe()
        else:
            assert "official" in entry.describe()
    # where the paper ran the method itself (Table 1's *: no published number), its authors give no config
    ran = {tuple(p.split("-")) for p, m in PAPER_REPRODUCED if m == method}
    assert ran and all(not table[p].official for p in ran)


def test_only_dkd_and_reviewkd_set_weights_per_pair():
    from mcmi.methods import list_methods

    assert [m for m in list_methods() if has_pair_defaults(m)] == ["dkd", "reviewkd"]
    assert method_class("kd").pair_defaults == {} and method_class("dkd").pair_defaults.values_for("a", "b") == {}


def test_status_of_unlisted_pairs_and_explicit_arguments():
    st = pair_default_status("dkd", "resnet20", "resnet8")
    assert st.status == "class-default" and st.values == {"beta": 8.0} and st.fallback
    assert pair_default_status("dkd", "resnet110", "resnet20").status == "nearest-pair"
    assert pair_default_status("dkd", "resnet56", "resnet20").fallback is False
    assert pair_default_status("dkd", "resnet110", "resnet20", explicit={"beta": 3}) is None
    assert pair_default_status("kd", "resnet110", "resnet20") is None  # no per-pair weights
    assert pair_default_status("reviewkd", "resnet56", "resnet20", use_table=False).status == "class-default"


def student_recipe_overrides(student, teacher, method, *extra):
    return [f"model.name={student}", f"teacher.name={teacher}", "teacher.weights=t.pt", f"method={method}", *extra]


def test_load_config_path_applies_student_defaults_and_explicit_settings_win(tmp_path, caplog):
    base = RECIPES / "_base_/cifar_student.yaml"
    with caplog.at_level(logging.INFO, logger="mcmi.experiments.student_defaults"):
        cfg = load_run_config(base, student_recipe_overrides("mobilenetv2", "resnet50", "dkd", "out=a"))
    assert cfg.train.lr == 0.01 and cfg.method_args == {"beta": 8.0}
    line = [r.getMessage() for r in caplog.records if "mobilenetv2 <- resnet50" in r.getMessage()]
    assert len(line) == 1 and "train.lr=0.01" in line[0] and "res50_mv2.yaml" in line[0]
    # the plain loader keeps the shared schedule's lr: that is what the defaults refine
    assert load_config(type(cfg), base, student_recipe_overrides("mobilenetv2", "resnet50", "dkd")).train.lr == 0.05
    # a fallback pair gets the nearest pair's weight, not the class default
    cfg = load_run_config(base, student_recipe_overrides("resnet20", "resnet110", "dkd"))
    assert cfg.method_args == {"beta": 2.0} and cfg.train.lr == 0.05
    cfg = load_run_config(base, student_recipe_overrides("resnet20", "resnet110", "reviewkd"))
    assert cfg.method_args == {"reviewkd_weight": 1.0}
    # overrides win
    cfg = load_run_config(base, student_recipe_overrides("mobilenetv2", "resnet50", "dkd", "train.lr=0.05",
                                                         "method_args.beta=3"))
    assert cfg.train.lr == 0.05 and cfg.method_args == {"beta": 3.0}
    # a user recipe's own settings win, also through a base of the user's
    user_base = tmp_path / "my_base.yaml"
    user_base.write_text(yaml.safe_dump({"_base_": str(base), "train": {"lr": 0.02}}))
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(yaml.safe_dump({"_base_": "my_base.yaml", "method": "dkd", "method_args": {"beta": 1.0},
                                      "model": {"name": "shufflenetv2"},
                                      "teacher": {"name": "resnet32x4", "weights": "t.pt"}}))
    assert recipe_explicit_keys(recipe) >= {"train.lr", "method_args.beta", "model.name"}
    assert "train.lr" not in recipe_explicit_keys(base)  # shipped _base_ schedules are defaults
    cfg = load_run_config(recipe)
    assert cfg.train.lr == 0.02 and cfg.method_args == {"beta": 1.0}
    # a run without a teacher (train-teacher) is no student: nothing applied
    assert load_run_config(base, ["model.name=mobilenetv2"]).train.lr == 0.05
    assert load_run_config(base, ["model.name=mobilenetv2"], student_run=True).train.lr == 0.01


def test_sweep_recipe_applies_the_defaults_and_the_grid_wins(tmp_path):
    recipe = tmp_path / "student.yaml"
    recipe.write_text(yaml.safe_dump({"_base_": str(RECIPES / "_base_/cifar_student.yaml"), "method": "reviewkd",
                                      "model": {"name": "shufflenetv2"},
                                      "teacher": {"name": "resnet32x4", "weights": "t.pt"}}))
    runs = expand_recipe_grid(recipe, parse_grid(["train.seed=0,1"]), out=tmp_path / "sw")
    assert [(r.config.train.lr, r.config.method_args) for r in runs] == [(0.01, {"reviewkd_weight": 8.0})] * 2
    runs = expand_recipe_grid(recipe, parse_grid(["train.lr=0.05,0.1"]), ["method_args.reviewkd_weight=2"],
                              out=tmp_path / "sw2")
    assert [(r.config.train.lr, r.config.method_args) for r in runs] == [(0.05, {"reviewkd_weight": 2.0}),
                                                                          (0.1, {"reviewkd_weight": 2.0})]


def test_grids_use_the_same_defaults_and_their_explicit_settings_win():
    def grid(**kw):
        return Table1Config(pairs=[PairSpec("resnet110", "resnet20"), PairSpec("resnet50", "mobilenetv2")],
                            methods=["kd", "dkd"], teacher_kinds=["mll"], student_baseline=True, out="/nonexistent/g",
                            **kw)

    def settings(cfg):
        return {(r.label("pair"), r.label("method")): (r.config.train.lr, r.config.method_args)
                for r in expand_grid(cfg) if r.stage in ("student", "baseline")}

    got = settings(grid())
    assert got[("resnet110-resnet20", "dkd")] == (0.05, {"beta": 2.0})
    assert got[("resnet50-mobilenetv2", "dkd")] == (0.01, {"beta": 8.0})
    assert got[("resnet50-mobilenetv2", "kd")] == (0.01, {}) and got[("resnet50-mobilenetv2", "baseline")][0] == 0.01
    # the student recipe's lr, then student_lr, then method_args win over the defaults
    recipe = {"_base_": "_base_/cifar_student.yaml", "train": {"lr": 0.03}}
    got = settings(grid(student_recipe=recipe))
    assert got[("resnet50-mobilenetv2", "kd")][0] == got[("resnet110-resnet20", "kd")][0] == 0.03
    got = settings(grid(student_recipe=recipe, student_lr={"mobilenetv2": 0.02}, method_args={"dkd": {"beta": 4.0}}))
    assert got[("resnet50-mobilenetv2", "dkd")] == (0.02, {"beta": 4.0}) and got[("resnet110-resnet20", "kd")][0] == 0.03
    got = settings(grid(use_pair_defaults=False))
    assert got[("resnet110-resnet20", "dkd")] == (0.05, {})


def test_distill_command_trains_a_small_lr_student(tmp_path, caplog):
    data = write_npz(tmp_path / "tiny.npz", n_train=32, n_test=16, size=32)
    common = ["data.name=npz", f"data.root={data}", "data.batch_size=32", "train.progress=false", "train.epochs=1",
              "train.milestones=[1]", "device=cpu"]
    t = tmp_path / "teacher"
    assert main(["train-teacher", "--config", "_base_/cifar_teacher.yaml", "--out", str(t), "model.name=resnet8",
                 *common]) == 0
    s = tmp_path / "student"
    with caplog.at_level(logging.INFO, logger="mcmi.experiments.student_defaults"):
        assert main(["distill", "--config", "_base_/cifar_student.yaml", "--out", str(s), "model.name=mobilenetv2",
                     "method=kd", "teacher.name=resnet8", f"teacher.weights={t / 'last.pt'}", *common]) == 0
    run = json.loads((s / "summary.json").read_text())["config"]["run"]
    assert run["train"]["lr"] == 0.01
    assert any("mobilenetv2 <- resnet8 (kd)" in r.getMessage() and "train.lr=0.01" in r.getMessage()
               for r in caplog.records)


def test_table1_report_marks_fallback_cells(tmp_path):
    cfg = Table1Config(pairs=[PairSpec("resnet56", "resnet20"), PairSpec("resnet110", "resnet20"),
                              PairSpec("resnet8", "resnet8")],
                       methods=["kd", "dkd", "reviewkd"], teacher_kinds=["mll", "mcmi"], out=str(tmp_path / "t1"))
    text = write_table1_report(cfg, expand_grid(cfg)).read_text()
    res = json.loads((tmp_path / "t1/results.json").read_text())
    rows = {line.split("|")[1].strip(): line for line in text.split("## Top-1 at the best epoch")[1]
            .split("## Top-1 at the last epoch")[0].splitlines() if line.startswith("| ")}
    # the same-family table: resnet56→resnet20 (official), resnet110→resnet20 (nearest pair), resnet8→resnet8 (none)
    dkd_cells = [c.strip() for c in rows["DKD"].split("|")[2:-1]]
    assert [("†" in c, "‡" in c) for c in dkd_cells] == [(False, False)] * 2 + [(True, False)] * 2 + [(False, True)] * 2
    assert "†" not in rows["KD"] and "‡" not in rows["KD"]
    assert "† DKD, resnet110→resnet20: beta 2. The authors give no config for this pair; the value of the nearest " \
           "pair resnet110→resnet32, mdistiller configs/cifar100/dkd/res110_res32.yaml (DKD.BETA: 2.0)." in text
    assert "† ReviewKD, resnet110→resnet20: reviewkd_weight 1." in text and "‡ DKD, resnet8→resnet8: beta 8." in text
    w = res["cells"]["resnet110-resnet20"]["dkd"]["weights"]
    assert w["status"] == "nearest-pair" and w["source_pair"] == ["resnet110", "resnet32"]
    assert res["cells"]["resnet56-resnet20"]["dkd"]["weights"]["status"] == "official"
    assert res["cells"]["resnet56-resnet20"]["kd"]["weights"] is None
    # a weight the grid sets itself is no fallback
    cfg.pair_method_args = {"resnet110-resnet20": {"dkd": {"beta": 2.0}}}
    text = write_table1_report(cfg, expand_grid(cfg)).read_text()
    assert "† DKD, resnet110→resnet20" not in text and "† ReviewKD, resnet110→resnet20" in text
