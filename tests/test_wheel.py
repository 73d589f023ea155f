"""mcmi as a user installs it: a wheel built from this tree, installed into a fresh virtual
environment, run from a folder that has nothing of the checkout.

How the check stays honest (the wheel alone must carry mcmi, its recipes included):

- the wheel is built from a copy of the sources (``pyproject.toml``, ``README.md``, ``src/``) with
  ``pip wheel --no-deps --no-build-isolation`` (no network; setuptools from this environment);
- the fresh venv is made without ``--system-site-packages`` and gets the wheel with
  ``pip --python <venv> install --no-deps --no-index``;
- the dependencies (torch, numpy, ...) come from this test environment's site-packages through a
  ``.pth`` file in the fresh venv holding that folder's path. A path line in a ``.pth`` file only
  appends the folder to ``sys.path`` after the venv's own site-packages; the ``.pth`` files *inside*
  it are not processed, so the editable install of the checkout (``__editable__.mcmi-*.pth``, a
  path to ``src/``) stays out. The test asserts that ``mcmi`` is imported from the fresh venv and
  that no checkout folder is on ``sys.path``;
- the commands run with the working folder elsewhere and without ``PYTHONPATH``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                       check=False)
    assert r.returncode == 0, f"{args}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, a working folder outside the checkout, the environment to run in)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1")
    wheels = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(src),
          "-w", str(wheels)], cwd=base, env=env)
    (wheel,) = wheels.glob("mcmi-*.whl")

    target = base / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(target)
    py = target / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=base, env=env)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base, env).stdout.strip())
    (site / "_mcmi_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch & co.
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return target / "bin", elsewhere, env


def test_the_wheel_holds_mcmi_and_its_recipes(installed):
    bin_dir, cwd, env = installed
    code = ("import sys, mcmi, mcmi.recipes as r; print(mcmi.__file__); print(r.RECIPES); "
            "print(len(r.list_recipes())); print('\\n'.join(sys.path))")
    out = _run([bin_dir / "python", "-c", code], cwd, env).stdout.splitlines()
    venv_root = bin_dir.parent.resolve()
    assert Path(out[0]).resolve().is_relative_to(venv_root), out[0]  # the wheel's mcmi, not the checkout's
    assert Path(out[1]).resolve().is_relative_to(venv_root), out[1]
    from mcmi.recipes import list_recipes

    assert int(out[2]) == len(list_recipes())  # every recipe of the tree is in the wheel
    assert not any(Path(p).resolve() == (ROOT / "src").resolve() for p in out[3:] if p), out[3:]


def test_version_recipes_and_a_named_recipe_from_another_folder(installed):
    bin_dir, cwd, env = installed
    mcmi = bin_dir / "mcmi"
    from mcmi.cli import version

    assert _run([mcmi, "--version"], cwd, env).stdout.strip() == f"mcmi {version()}"
    listed = _run([mcmi, "recipes"], cwd, env).stdout
    assert "experiments/table1_tinyimagenet_cpu" in listed and "students/dkd" in listed
    plan = _run([mcmi, "table1", "--config", "table1_tinyimagenet_cpu", "--dry-run"], cwd, env).stdout
    assert "teachers/resnet20/mll" in plan and "todo" in plan
    printed = _run([mcmi, "distill", "--config", "students/dkd", "teacher.name=resnet56", "teacher.weights=t.pt",
                    "model.name=resnet20", "--print-config"], cwd, env).stdout
    assert "method: dkd" in printed and "name: resnet56" in printed and "weights: t.pt" in printed
    plan = _run([mcmi, "binary", "--config", "binary_cpu", "--dry-run", "--only", "task=tin-18-19"], cwd, env).stdout
    assert "tin-18-19/students/" in plan and "tin-26-27" not in plan
    assert list(cwd.iterdir()) == []  # --dry-run and --print-config create nothing


def test_a_plugin_method_with_the_wheel(installed, tmp_path):
    """A method in a file of the user's, named by MCMI_PLUGINS, is registered in the wheel's mcmi."""
    bin_dir, cwd, env = installed
    plugin = tmp_path / "wheel_plugin_kd.py"
    plugin.write_text("from mcmi.methods import KD, register_method\n\n"
                      "@register_method('wheel_kd')\nclass WheelKD(KD):\n    display_name = 'WheelKD'\n")
    code = "import mcmi; from mcmi.methods import display_name; print(mcmi.list_methods(), display_name('wheel_kd'))"
    out = _run([bin_dir / "python", "-c", code], cwd, {**env, "MCMI_PLUGINS": str(plugin)}).stdout
    assert "'wheel_kd'" in out and out.strip().endswith("WheelKD")
