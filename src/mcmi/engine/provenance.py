"""What produced a run: mcmi and torch versions, the git commit of the source tree, the device.

Recorded in ``summary.json`` and at the top of ``train.log``. The commit is that of the checkout
mcmi is imported from (``src/mcmi`` of a git work tree whose ``pyproject.toml`` is mcmi's), with
`` (with uncommitted changes)`` appended when tracked files differ; None for an installed
wheel, without git, or on any failure: never an error.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import torch

import mcmi


def source_root() -> Path | None:
    """The checkout holding the imported ``mcmi`` package (None: an installed copy)."""
    package = Path(mcmi.__file__).resolve().parent
    root = package.parent.parent  # <root>/src/mcmi
    if package.parent.name != "src" or not (root / "pyproject.toml").is_file():
        return None
    try:
        if 'name = "mcmi"' not in (root / "pyproject.toml").read_text(errors="replace"):
            return None
    except OSError:
        return None
    return root


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of :func:`source_root` (marked when it has uncommitted changes)."""
    root = source_root()
    if root is None:
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    if not commit:
        return None
    changed = dirty.returncode == 0 and dirty.stdout.strip()
    return commit + (" (with uncommitted changes)" if changed else "")


def device_name(device: torch.device | str) -> str:
    """``cpu``, or e.g. ``cuda:0 (NVIDIA H200)``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        try:
            return f"{device} ({torch.cuda.get_device_name(device)})"
        except Exception:  # noqa: BLE001 - a device string that names no visible GPU
            return str(device)
    return str(device)


def provenance(device: torch.device | str) -> dict[str, Any]:
    """``{"mcmi_version", "torch_version", "git_commit", "device"}``."""
    return {
        "mcmi_version": mcmi.__version__,
        "torch_version": str(torch.__version__),
        "git_commit": git_commit(),
        "device": device_name(device),
    }
