"""The examples run as a user runs them (a fresh interpreter, the repository root as working
directory) and print sane numbers."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mcmi.data import DataError, find_bundled

ROOT = Path(__file__).resolve().parents[1]

try:
    find_bundled("cifar10-partial")
    HAVE_DATA = True
except DataError:
    HAVE_DATA = False


@pytest.mark.skipif(not HAVE_DATA, reason="needs ../shared/data/cifar10-partial.npz")
def test_own_models_example_runs_and_prints_sane_numbers():
    # one thread, like the rest of the suite: tiny tensors, and a shared CPU may be busy
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "own_models.py")], cwd=ROOT,
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "batch-norm statistics unchanged: True" in out
    rows = {}
    for line in out.splitlines():
        m = re.fullmatch(r"\| ([^|]+) \| ([-\d.naif]+) \| ([-\d.naif]+) \| ([-\d.naif]+) \|", line)
        if m:
            rows[m.group(1)] = tuple(float(v) for v in m.groups()[1:])
    assert list(rows) == ["teacher, cross-entropy", "teacher, MCMI fine-tuned", "student, KD",
                          "student, AT", "student, CRD"], out
    for name, (acc, ll, cmi) in rows.items():
        assert all(math.isfinite(v) for v in (acc, ll, cmi)), (name, out)
        assert 0.0 <= acc <= 1.0 and ll <= 0.0 and 0.0 <= cmi <= math.log(10), (name, out)
        assert ll > -10.0, (name, out)  # no collapsed model
    assert rows["teacher, cross-entropy"][0] > 0.15, out  # trained: above chance (0.1)
    assert rows["teacher, MCMI fine-tuned"][0] > 0.15, out
