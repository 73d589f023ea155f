"""The experiment grids' run lists and reports equal their golden files (``tests/golden/``).

The golden files were captured from commit 77e9d09, the code before the experiment-layer
refactor (:mod:`golden_grids` says how, and when they may be regenerated). Each test runs the
code under test (the ``mcmi`` on ``sys.path``) through its command line in a temporary folder:

- ``test_dry_run``: ``mcmi <command> --config <grid> --dry-run`` lists the same runs, for every
  shipped grid config, paper-size ones included;
- ``test_report``: for the grids marked ``report`` (the CPU-scale ones and four paper-size
  ones), on run folders faked with deterministic numbers, the
  ``--dry-run`` statuses and the ``--report-only`` ``README.md`` and ``results.json`` are the same
  (normalized: output folder, commit and time neutralized; floats of ``results.json`` to 1e-9),
  and the report neither trains nor evaluates anything.

On a difference the assertion message holds a unified diff (golden vs now) per file.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import golden_grids as gg
import pytest

REPORT_FILES = ("dry_run_after_fake.txt", "README.md", "results.json")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("grids").resolve()


def _golden(grid: gg.Grid, names) -> dict[str, str]:
    files = gg.golden(grid)
    missing = [n for n in names if n not in files]
    assert not missing, f"{grid.name}: no golden {missing} in {gg.GOLDEN_DIR / grid.name}"
    return {n: files[n] for n in names}


@pytest.mark.parametrize("grid", gg.GRIDS, ids=lambda g: g.name)
def test_dry_run(grid: gg.Grid, workdir: Path):
    now = gg.capture(grid, workdir / "dry", report=False)
    diff = gg.differences(_golden(grid, ["dry_run.txt"]), now)
    assert not diff, f"mcmi {grid.command} --config {grid.name} --dry-run changed:\n{diff}"


@pytest.mark.parametrize("grid", [g for g in gg.GRIDS if g.report], ids=lambda g: g.name)
def test_report(grid: gg.Grid, workdir: Path):
    if grid.data and not gg.bundled_data_available(grid.data):
        pytest.skip(f"the report loads the bundled {grid.data}.npz, not found (set MCMI_SHARED_DATA)")
    now = gg.capture(grid, workdir / "report", report=True)
    del now["dry_run.txt"]  # test_dry_run's
    diff = gg.differences(_golden(grid, REPORT_FILES), now)
    assert not diff, f"mcmi {grid.command} --config {grid.name}: the report on faked runs changed:\n{diff}"


def test_golden_files_are_those_of_the_grids():
    """No golden folder without a grid, none missing, no stray file (a renamed grid or file)."""
    assert sorted(p.name for p in gg.GOLDEN_DIR.iterdir() if p.is_dir()) == sorted(gg.GRIDS_BY_NAME)
    for grid in gg.GRIDS:
        want = {"dry_run.txt", *(REPORT_FILES if grid.report else ())}
        assert set(gg.golden(grid)) == want, grid.name


def test_harness_sees_a_mixup_of_runs(workdir: Path):
    """The harness's own check: two students' finished runs swapped (same pair, method and seed,
    the MLL and the MCMI teacher's) change both report files, so the golden files would catch a
    report that reads the wrong folder."""
    grid = gg.GRIDS_BY_NAME["binary_cifar10_partial_cpu"]

    def swap(out: Path) -> None:
        runs = out / "binary" / "c10p-2x5" / "students" / "resnet20-mobilenetv2_x0_1" / "kd"
        a, b = runs / "mll" / "seed0" / "summary.json", runs / "mcmi" / "seed0" / "summary.json"
        tmp = a.with_suffix(".swap")
        shutil.move(a, tmp)
        shutil.move(b, a)
        shutil.move(tmp, b)

    now = gg.capture(grid, workdir / "mixup", report=True, tamper=swap)
    golden = gg.golden(grid)
    assert now["dry_run_after_fake.txt"] == golden["dry_run_after_fake.txt"]
    for name in ("README.md", "results.json"):
        assert gg.differences({name: golden[name]}, {name: now[name]}), f"{name} did not change"
