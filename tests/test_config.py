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
