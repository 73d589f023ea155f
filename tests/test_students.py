"""The shipped student recipes (``configs/students/<method>.yaml``): one per distiller of the paper,
each loading as a RunConfig with the method's default weights written out, and one trained end to
end as the README shows (``mcmi distill --config students/dkd teacher.name=... teacher.weights=...
model.name=...``)."""
from __future__ import annotations

import inspect
import json

import pytest
from helpers import write_npz

from mcmi.cli import main
from mcmi.config import load_config
from mcmi.experiments.train import RunConfig
from mcmi.methods import METHODS, Distiller
from mcmi.methods.options import method_defaults
from mcmi.recipes import RECIPES, find_recipe

#: The paper's distillers (Table 1 and A.8.2); ``soft_target`` (eq. 20, targets given per sample)
#: and the teacher objectives have no student recipe.
STUDENT_METHODS = ("kd", "fitnet", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "dkd", "reviewkd", "hsakd")
CONTEXT = {"num_data", "image_shape", "teacher_heads"}  # filled in by training / given per run


def expected_args(method: str) -> dict:
    """What a student recipe writes out: the method's numeric defaults, without the keys that are
    set per teacher/student pair (its ``pair_defaults``' weight keys) and the context arguments."""
    pair_keys = set(getattr(METHODS.get(method).pair_defaults, "weight_keys", ()))
    return {k: v for k, v in method_defaults(method).items()
            if k not in CONTEXT | pair_keys and isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_every_distiller_of_the_paper_has_a_student_recipe():
    shipped = {p.stem for p in (RECIPES / "students").glob("*.yaml")}
    assert shipped == set(STUDENT_METHODS)
    for m in STUDENT_METHODS:
        assert issubclass(METHODS.get(m), Distiller)


@pytest.mark.parametrize("method", STUDENT_METHODS)
def test_student_recipe_loads_with_the_methods_defaults(method):
    path = find_recipe(f"students/{method}")
    cfg = load_config(RunConfig, path, ["teacher.name=resnet56", "teacher.weights=t.pt"])
    assert cfg.method == method
    assert cfg.method_args == expected_args(method)
    assert cfg.data.name == "cifar100" and cfg.train.epochs == 240 and cfg.train.milestones == (150, 180, 210)
    assert cfg.out == f"runs/students/{method}"
    # each value is the method's own default (its options dataclass)
    defaults = method_defaults(method)
    assert all(defaults[k] == v for k, v in cfg.method_args.items())
    assert "teacher" not in path.read_text().split("method:")[1]  # the teacher comes per run


def test_student_recipes_say_how_they_are_used():
    for m in STUDENT_METHODS:
        text = (RECIPES / "students" / f"{m}.yaml").read_text()
        assert f"mcmi distill --config students/{m}" in text
        assert text.startswith(f"# {m}:")


def test_distill_with_a_student_recipe_end_to_end(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz", n_train=32, n_test=16, size=8)
    common = ["data.name=npz", f"data.root={data}", "data.batch_size=16", "train.epochs=1",
              "train.milestones=[1]", "train.progress=false", "device=cpu"]
    teacher = tmp_path / "teacher"
    assert main(["train-teacher", "--config", "teachers/resnet56_cifar100", "--out", str(teacher),
                 "model.name=resnet8", *common]) == 0
    student = tmp_path / "student"
    # overrides before and after the options, as a user may type them
    assert main(["distill", "--config", "students/dkd", "teacher.name=resnet8", "--out", str(student),
                 f"teacher.weights={teacher / 'last.pt'}", "model.name=resnet8", *common]) == 0
    saved = json.loads((student / "config.json").read_text())["run"]
    assert saved["method"] == "dkd" and saved["teacher"]["name"] == "resnet8"
    assert saved["method_args"]["alpha"] == 1.0 and saved["method_args"]["warmup"] == 20.0
    assert (student / "summary.json").is_file()
    sig = inspect.signature(METHODS.get("dkd").__init__)
    assert {"alpha", "beta", "warmup"} <= set(sig.parameters)  # the options of DKD.options, by name
