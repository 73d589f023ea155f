"""Methods that describe themselves: every registered method declares its options dataclass, its
display name and a fast test instance, read from the class (no name lists); methods from outside
the package load through ``MCMI_PLUGINS`` and entry points, in a fresh process as a sweep's
workers would."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ConvNet

import mcmi.methods as methods_pkg
from mcmi.config import ConfigError
from mcmi.methods import (
    METHODS,
    Distiller,
    Method,
    PairTable,
    TeacherPrep,
    display_name,
    list_methods,
    method_class,
    method_options,
    resolve_test_options,
    teacher_preps,
)
from mcmi.methods.options import check_method_args, options_dataclass

SRC = Path(methods_pkg.__file__).resolve().parents[1]


def models_for(cls: type[Method]) -> tuple[torch.nn.Module, ...]:
    student, teacher = ConvNet((4, 4, 8, 8), 5), ConvNet((6, 6, 12, 16), 5)
    return (student, teacher) if issubclass(cls, Distiller) else (teacher,)


# ----------------------------------------------------------------------- (a) over the registry
@pytest.mark.parametrize("name", list_methods())
def test_every_method_describes_itself_and_builds_from_its_test_options(name):
    cls = method_class(name)
    assert cls.method_name == name
    dc = options_dataclass(name)  # a registered method without `options` fails here
    assert dataclasses.is_dataclass(dc) and cls.options is dc
    assert isinstance(cls.display_name, str) and cls.display_name
    if cls.__module__.startswith("mcmi."):
        # the package's own methods say it themselves, not through the class-name default
        assert "display_name" in vars(cls) and "options" in vars(cls), name
    assert isinstance(cls.pair_defaults, PairTable)
    assert cls.teacher_prep is None or cls.teacher_prep.method in METHODS
    assert set(cls.test_options) <= set(method_options(name))
    # every option has a default, so a recipe's values are checked in full when it is loaded
    assert check_method_args(name, {}) == {}
    models = models_for(cls)
    method = cls(*models, **resolve_test_options(cls, *models))
    assert isinstance(method.cfg, dc)
    for key, value in cls.test_options.items():
        if not callable(getattr(value, "make", None)):
            assert getattr(method.cfg, key) == value, key


@pytest.mark.parametrize("name", list_methods())
def test_an_unknown_option_is_refused_by_constructor_and_recipe_check(name):
    cls = method_class(name)
    models = models_for(cls)
    with pytest.raises(TypeError, match="no_such_option"):
        cls(*models, **resolve_test_options(cls, *models), no_such_option=1)
    with pytest.raises(ConfigError, match="method_args.no_such_option"):
        check_method_args(name, {"no_such_option": 1})


def test_public_calls_keep_their_keywords():
    s, t = ConvNet((4, 4, 8, 8), 5), ConvNet((6, 6, 12, 16), 5)
    assert method_class("kd")(s, t, temperature=2.0).cfg.temperature == 2.0
    assert method_class("mcmi")(t, lam=0.1).cfg.lam == 0.1
    assert method_class("crd")(s, t, num_data=16, num_negatives=4).memory.num_data == 16
    with pytest.raises(TypeError, match="num_data"):
        method_class("crd")(s, t)


def test_option_values_are_checked_when_a_recipe_is_loaded():
    with pytest.raises(ConfigError, match=r"method_args\.lam must be >= 0"):
        check_method_args("mcmi", {"lam": -1})
    with pytest.raises(ConfigError, match=r"method_args\.negatives must be"):
        check_method_args("crd", {"negatives": "some"})
    with pytest.raises(ConfigError, match=r"method_args\.heads must be one of"):
        check_method_args("hsakd", {"heads": "stage"})
    assert check_method_args("mll", {"label_smoothing": "1e-1"}) == {"label_smoothing": 0.1}


def test_self_description_replaces_the_name_lists():
    assert teacher_preps() == {"hsakd": TeacherPrep("hsakd_teacher", "teacher_heads", "heads_recipe")}
    names = {m: display_name(m) for m in ("kd", "dkd", "reviewkd", "hsakd", "fitnet", "crd")}
    assert names == {"kd": "KD", "dkd": "DKD", "reviewkd": "ReviewKD", "hsakd": "HSAKD", "fitnet": "FitNet",
                     "crd": "CRD"}
    assert display_name("baseline") == "baseline"  # not a method: shown as given


def test_a_class_without_options_takes_none_and_cannot_be_checked():
    class Bare(Method):  # not registered: allowed, but it takes no options
        def forward(self, batch, epoch=0):
            raise NotImplementedError

    assert Bare(torch.nn.Linear(2, 2)).cfg is None
    with pytest.raises(TypeError, match="takes no options"):
        Bare(torch.nn.Linear(2, 2), weight=1.0)
    with pytest.raises(TypeError, match="declares no options dataclass"):
        options_dataclass(Bare)


def test_every_module_of_the_package_is_imported():
    folder = Path(methods_pkg.__file__).parent
    for path in folder.glob("*.py"):
        if path.stem != "__init__":
            assert f"mcmi.methods.{path.stem}" in sys.modules, path.name


# ------------------------------------------------------------------------- (b, c) plugins
PLUGIN = """
from dataclasses import dataclass

import torch.nn.functional as F

from mcmi.methods import Distiller, StepOutput, register_method


@dataclass
class {cls}Config:
    weight: float = 1.0


@register_method("{name}")
class {cls}(Distiller):
    options = {cls}Config
    display_name = "{cls}"
    teacher_signal = "logits"

    def forward(self, batch, epoch=0):
        logits = self.student(batch["image"])
        return StepOutput(logits, {{"ce": self.cfg.weight * F.cross_entropy(logits, batch["label"])}})
"""

REPORT = """
import json
import mcmi
from mcmi.methods import method_class, method_options
names = [n for n in mcmi.list_methods() if n.startswith("toy_")]
print(json.dumps({n: [method_class(n).display_name, sorted(method_options(n))] for n in names}))
"""


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_plugins_from_mcmi_plugins_and_entry_points_in_a_fresh_process(tmp_path):
    # a .py file by path, a module by name (importable from PYTHONPATH), and an installed
    # distribution's entry point naming a class its module does not register
    (tmp_path / "file_plugin.py").write_text(PLUGIN.format(cls="ToyFile", name="toy_file"))
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_module.py").write_text(PLUGIN.format(cls="ToyModule", name="toy_module"))
    (site / "toy_dist.py").write_text(PLUGIN.format(cls="ToyDist", name="toy_dist_own")
                                      .replace('@register_method("toy_dist_own")\n', ""))
    info = site / "toy_dist-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-dist\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mcmi.methods]\ntoy_entry = toy_dist:ToyDist\n")
    env = {"MCMI_PLUGINS": f"{tmp_path / 'file_plugin.py'}, toy_module",
           "PYTHONPATH": os.pathsep.join([str(site), str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = run_python(REPORT, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"toy_file": ["ToyFile", ["weight"]], "toy_module": ["ToyModule", ["weight"]],
                   "toy_entry": ["ToyDist", ["weight"]]}


def test_a_broken_plugin_is_a_one_line_error_naming_it(tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import torch\nraise RuntimeError('the plugin is broken\\non two lines')\n")
    env = {"MCMI_PLUGINS": str(broken), "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = run_python("import mcmi; mcmi.list_methods()", env, tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mcmi.methods.plugins.PluginError: method plugin ")
    assert str(broken) in last and "MCMI_PLUGINS" in last
    assert "RuntimeError: the plugin is broken; on two lines" in last
    # a module that is not there: named the same way; a ConfigError, which commands report as one line
    code = ("import sys\ntry:\n    import mcmi.methods\nexcept Exception as e:\n"
            "    print(type(e).__mro__[1].__name__ + '|' + str(e))\n    sys.exit(3)\n")
    proc = run_python(code, {**env, "MCMI_PLUGINS": "no_such_plugin_module"}, tmp_path)
    assert proc.returncode == 3, proc.stderr
    kind, message = proc.stdout.strip().split("|", 1)
    assert kind == "ConfigError" and "\n" not in message
    assert message == ("method plugin 'no_such_plugin_module' (from MCMI_PLUGINS) failed to import: "
                       "ModuleNotFoundError: No module named 'no_such_plugin_module'")
