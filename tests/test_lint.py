"""``ruff check`` with the project's settings (pyproject.toml) is clean: CI runs it through this test."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the '.[test]' extra)")
    folders = [str(ROOT / d) for d in ("src", "tests", "benchmarks", "examples") if (ROOT / d).is_dir()]
    proc = subprocess.run([ruff, "check", "--no-cache", *folders], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
