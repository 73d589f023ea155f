"""Seeding, deterministic mode, and the capture/restore of every random number generator.

A resumed run is exact only if it continues each RNG from where the interrupted run left it:
Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA generator.
:func:`get_rng_state` returns them in a form that ``torch.load(weights_only=True)`` accepts
(tensors, ints, floats, tuples), so checkpoints never need unrestricted unpickling.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

_CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy, torch (CPU and all CUDA devices); optionally force deterministic kernels.

    With ``deterministic=True``: ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (ops without a deterministic kernel, e.g. ``bincount`` on CUDA in the metrics, warn instead of
    failing), cuDNN deterministic with benchmarking off, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
    if unset (it only takes effect if CUDA has not initialized cuBLAS yet). With ``False``: cuDNN
    benchmarking on, which is faster and not reproducible. These switches are process-wide; see
    :func:`determinism_flags` to save and restore them.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault(_CUBLAS_ENV, ":4096:8")
    set_determinism_flags(
        {
            "algorithms": deterministic,
            "warn_only": True,
            "cudnn_deterministic": deterministic,
            "cudnn_benchmark": not deterministic,
        }
    )


def determinism_flags() -> dict[str, bool]:
    """The process-wide determinism switches, for :func:`set_determinism_flags` to restore."""
    return {
        "algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


def set_determinism_flags(flags: dict[str, bool]) -> None:
    """Set the switches returned by :func:`determinism_flags`."""
    torch.use_deterministic_algorithms(
        bool(flags["algorithms"]), warn_only=bool(flags.get("warn_only", False))
    )
    torch.backends.cudnn.deterministic = bool(flags["cudnn_deterministic"])
    torch.backends.cudnn.benchmark = bool(flags["cudnn_benchmark"])


def get_rng_state() -> dict[str, Any]:
    """Snapshot of all global RNGs (Python, NumPy, torch CPU, CUDA if initialized)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken by :func:`get_rng_state`.

    CUDA states are restored for as many devices as both the snapshot and this machine have;
    a snapshot without CUDA states leaves the CUDA generators as they are.
    """
    py = state["python"]
    # weights_only unpickling may hand back lists where tuples were saved
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        if n < len(cuda):
            logger.warning("RNG snapshot has %d CUDA states, this machine %d devices", len(cuda), n)
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i].cpu(), device=i)
