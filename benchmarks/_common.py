"""What the benchmark scripts share: the machine's CPU name and running a case in a fresh process.

The scripts put their own folder on ``sys.path`` before importing this module, so it is found both
when a script runs (``python benchmarks/bench_kd.py``) and when a test loads a script by its path.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_result_child(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run ``argv`` (a benchmark script in a child mode) in a fresh process with this checkout's
    ``src`` first on ``PYTHONPATH``: its last ``RESULT {json}`` line, or ``{"error": ...}`` with the
    last line of its stderr (peak memory is only meaningful per process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = [ln for ln in (p.stderr or "").strip().splitlines() if ln.strip()]
    return {"error": (tail[-1] if tail else f"exit status {p.returncode}")[:300]}
