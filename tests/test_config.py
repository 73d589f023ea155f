"""Strict YAML recipes: inheritance, overrides, and errors that name the file and key."""
from dataclasses import dataclass, field

import pytest

from mcmi.config import ConfigError, load_config
from mcmi.experiments.gaussian import GaussianStudyConfig


@dataclass
class Inner:
    lr: float = 0.1
    milestones: list[int] = field(default_factory=lambda: [1, 2])


@dataclass
class Outer:
    name: str = "x"
    epochs: int = 3
    amp: bool = False
    opt: Inner = field(default_factory=Inner)
    note: str | None = None


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 10\nopt:\n  lr: 0.5\n  milestones: [5]\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nname: child\nopt:\n  lr: 0.05\n")
    cfg = load_config(Outer, tmp_path / "child.yaml", ["epochs=12", "opt.milestones=[3,4]"])
    assert (cfg.name, cfg.epochs, cfg.opt.lr, cfg.opt.milestones) == ("child", 12, 0.05, [3, 4])
    assert isinstance(cfg.opt.lr, float)


def test_unknown_key_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("opt:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*opt\.lrr"):
        load_config(Outer, f)
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_config(Outer, None, ["epoch=3"])


def test_wrong_types_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="epochs must be int"):
        load_config(Outer, None, ["epochs=ten"])
    with pytest.raises(ConfigError, match="amp must be true or false"):
        load_config(Outer, None, ["amp=1"])
    with pytest.raises(ConfigError, match="milestones must be a list"):
        load_config(Outer, None, ["opt.milestones=5"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_shipped_gaussian_recipes_load():
    from mcmi.recipes import RECIPES as CONFIGS

    for name in ("gaussian_table5", "gaussian_table5_ren", "demo"):
        cfg = load_config(GaussianStudyConfig, CONFIGS / "experiments" / f"{name}.yaml")
        assert cfg.epochs == 100 and cfg.batch_size == 32 and cfg.lr == 5e-4
    ren = load_config(GaussianStudyConfig, CONFIGS / "experiments" / "gaussian_table5_ren.yaml")
    assert (ren.noise, ren.noise_is, ren.split) == (6.0, "variance", [0.05, 0.05, 0.9])


@dataclass
class Floats:
    lr: float = 0.1
    wd: float | None = None
    decay: dict[str, float] = field(default_factory=dict)


def test_floats_yaml_reads_as_strings_are_floats(tmp_path):
    # YAML 1.1 (PyYAML) reads 1e6 and 5e-4 (no decimal point) as strings
    f = tmp_path / "r.yaml"
    f.write_text("lr: 1e6\nwd: 5e-4\ndecay: {a: 1e-1}\n")
    cfg = load_config(Floats, f)
    assert (cfg.lr, cfg.wd, cfg.decay) == (1e6, 5e-4, {"a": 0.1})
    assert all(isinstance(v, float) for v in (cfg.lr, cfg.wd, cfg.decay["a"]))
    assert load_config(Floats, None, ["lr=-1E+3"]).lr == -1000.0


@pytest.mark.parametrize("value", ["fast", "true", "[1]", "1e", "nan"])
def test_a_non_number_for_a_float_key_names_file_key_and_value(tmp_path, value):
    f = tmp_path / "r.yaml"
    f.write_text(f"lr: {value}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: lr must be a number, got") as e:
        load_config(Floats, f)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"decay\.a must be a number"):
        load_config(Floats, None, [f"decay.a={value}"])


def test_base_cycle_is_an_error_naming_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: [c.yaml]\n")
    (tmp_path / "c.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle") as e:
        load_config(Outer, tmp_path / "a.yaml")
    assert all(f"{n}.yaml" in str(e.value) for n in "abc")
    (tmp_path / "self.yaml").write_text("_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        load_config(Outer, tmp_path / "self.yaml")
    # a diamond is not a cycle
    (tmp_path / "top.yaml").write_text("_base_: [l.yaml, r.yaml]\nname: top\n")
    (tmp_path / "l.yaml").write_text("_base_: root.yaml\n")
    (tmp_path / "r.yaml").write_text("_base_: root.yaml\n")
    (tmp_path / "root.yaml").write_text("epochs: 7\n")
    assert load_config(Outer, tmp_path / "top.yaml").epochs == 7


def test_yaml_syntax_error_is_one_line_with_the_line_number(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("opt:\n  lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML: line \d+, column \d+") as e:
        load_config(Outer, f)
    assert "\n" not in str(e.value)


def test_unknown_key_suggests_the_nearest_with_its_section():
    with pytest.raises(ConfigError, match=r"unknown key 'opt\.lrr' for Inner; did you mean 'opt\.lr'\?"):
        load_config(Outer, None, ["opt.lrr=1"])


def test_run_config_range_checks_name_the_full_key():
    from mcmi.experiments.train import RunConfig

    for override, message in [("train.lr=-1", "train.lr must be a number >= 0, got -1.0"),
                              ("train.lr=-1e-3", "train.lr must be a number >= 0, got -0.001"),
                              ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
                              ("data.eval_batch_size=-2", "data.eval_batch_size must be >= 1, got -2"),
                              ("data.train_subset=0", "data.train_subset must be >= 1"),
                              ("train.epochs=0", "train.epochs must be >= 1, got 0"),
                              ("train.weight_decay=-5e-4", "train.weight_decay must be >= 0, got -0.0005"),
                              ("train.gamma=0", "train.gamma must be a positive number")]:
        with pytest.raises(ConfigError, match="<defaults> \\+ overrides: " + message.replace(".", r"\.").replace("+", r"\+")):
            load_config(RunConfig, None, [override])


def test_method_args_are_typed_by_the_methods_options():
    from mcmi.experiments.train import RunConfig

    cfg = load_config(RunConfig, None, ["method=mcmi", "method_args.lam=1e-1", "method_args.centroids=ema"])
    assert cfg.method_args == {"lam": 0.1, "centroids": "ema"} and isinstance(cfg.method_args["lam"], float)
    cfg = load_config(RunConfig, None, ["method=dkd", "method_args.beta=2", "method_args.warmup=5e0"])
    assert cfg.method_args == {"beta": 2.0, "warmup": 5.0}
    with pytest.raises(ConfigError, match="method_args.centroids must be str, got 3"):
        load_config(RunConfig, None, ["method=mcmi", "method_args.centroids=3"])
    with pytest.raises(ConfigError, match="method 'mll' has no option 'lam'"):
        load_config(RunConfig, None, ["method_args.lam=0.1"])  # the method is mll by default


def test_every_registered_method_has_checkable_options():
    """Both constructor styles resolve: keyword arguments (KD, MCMI, MLL) and **weights with the
    options dataclass of the method's file (DKD, CRD, ...)."""
    import dataclasses
    import inspect

    from mcmi.methods import METHODS
    from mcmi.methods.options import method_options, options_dataclass

    for name in METHODS.names():
        cls = METHODS.get(name)
        opts = method_options(name)  # raises for a **kwargs method without an options dataclass
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values()):
            dc = options_dataclass(cls)
            assert dc is not None and {f.name for f in dataclasses.fields(dc)} <= set(opts)
        assert not {"self", "model", "student", "teacher"} & set(opts)
