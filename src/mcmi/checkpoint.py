"""Crash-safe checkpoint files: atomic writes, a kept previous version, and validated loading.

The file format sits below the models and the engine: the trainer writes and resumes from these
files, and :mod:`mcmi.models.io` reads the trained model out of them.

Writing (:func:`save_checkpoint`): the state goes to a temporary file in the target's folder,
is fsync'ed, the current file (if any) is kept as ``<stem>.prev<suffix>`` (``last.pt`` ->
``last.prev.pt``), and the temporary file is renamed over the target with ``os.replace``. At
every instant the target is either the old complete file or the new complete file, and the
previous good version survives a crash at any point.

Reading (:func:`load_checkpoint`): ``torch.load(weights_only=True)`` (no arbitrary unpickling),
then checks that the file is an mcmi checkpoint of a supported format version and, if asked,
that it belongs to the expected model/method/number of classes. Every failure is a
:class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mcmi.io import atomic_write, write_text

logger = logging.getLogger(__name__)

FORMAT = "mcmi-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, unreadable, foreign or of another model/run."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def previous_path(path: str | os.PathLike) -> Path:
    """Where the previous version of a checkpoint is kept: ``last.pt`` -> ``last.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace a text file atomically (see :func:`mcmi.io.atomic_write`)."""
    write_text(path, text)


def _keep_previous(path: Path) -> None:
    """Make ``previous_path(path)`` a complete copy of ``path`` without ever removing ``path``."""
    prev = previous_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{prev.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(path, tmp)  # same inode: instant, and path stays in place
        except OSError:
            shutil.copyfile(path, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, prev)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_checkpoint(
    path: str | os.PathLike, state: Mapping[str, Any], keep_previous: bool = True
) -> Path:
    """Write ``state`` (plus format marker and version) to ``path`` atomically; return the path.

    With ``keep_previous`` an existing ``path`` is first kept as :func:`previous_path`.
    ``state`` should hold only tensors, numbers, strings, ``None`` and lists/tuples/dicts of
    those, so that it loads with ``weights_only=True``.
    """
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    if keep_previous and path.exists():
        _keep_previous(path)
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


#: Identity keys that checkpoints of older mcmi versions do not record: such a checkpoint still
#: resumes (the key is checked only where it was written).
LATER_META_KEYS = frozenset({"normalization"})


def read_torch_file(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    weights_only: bool = True,
    safe_globals: tuple[Any, ...] = (),
) -> Any:
    """``torch.load`` of any torch file, every failure a :class:`CheckpointError` naming the file.

    ``safe_globals``: classes that ``weights_only`` loading may rebuild besides tensors and
    containers (e.g. the ``argparse.Namespace`` other toolkits store beside their weights).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "empty file (a write was interrupted?)")
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        unsafe = [ln for ln in lines if "Unsupported global" in ln or "WeightsUnpickler" in ln]
        msg = (unsafe or lines or [""])[0]
        if unsafe:
            reason = (
                "holds objects that weights_only loading refuses (not written by mcmi, or a loader "
                f"state with objects other than tensors/numbers/strings/containers): {msg}"
            )
        else:
            reason = f"truncated, corrupt or not a torch file ({type(e).__name__}: {msg})"
        raise CheckpointError(path, reason) from e


def is_mcmi_checkpoint(state: Any) -> bool:
    """Whether a loaded object carries the mark of :func:`save_checkpoint`."""
    return isinstance(state, dict) and state.get("format") == FORMAT


def check_checkpoint(
    path: str | os.PathLike, state: Any, expected: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Validate a loaded object as an mcmi checkpoint (see :func:`load_checkpoint`); return it."""
    if not is_mcmi_checkpoint(state):
        what = (
            f"a {type(state).__name__}"
            if not isinstance(state, dict)
            else f"a dict with keys {sorted(map(str, state))[:8]}"
        )
        raise CheckpointError(path, f"not an mcmi checkpoint (no {FORMAT!r} marker; found {what})")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            path,
            f"unsupported checkpoint format version {version!r} "
            f"(this mcmi reads 1..{FORMAT_VERSION})",
        )
    if expected:
        meta = state.get("meta", {})
        wrong = [
            f"{k}={meta.get(k, '<missing>')!r} (expected {v!r})"
            for k, v in expected.items()
            if meta.get(k) != v and not (k in LATER_META_KEYS and k not in meta)
        ]
        if wrong:
            raise CheckpointError(path, "checkpoint of another run: " + ", ".join(wrong))
    return state


def load_checkpoint(
    path: str | os.PathLike,
    expected: Mapping[str, Any] | None = None,
    map_location: Any = "cpu",
    weights_only: bool = True,
) -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`.

    ``expected`` maps keys of the checkpoint's ``meta`` dict (e.g. ``model``, ``num_classes``,
    ``method``) to required values; any difference raises :class:`CheckpointError` (a key of
    :data:`LATER_META_KEYS` that the checkpoint does not record is not compared).
    """
    state = read_torch_file(path, map_location, weights_only)
    return check_checkpoint(path, state, expected)


def load_latest_checkpoint(
    path: str | os.PathLike, expected: Mapping[str, Any] | None = None, map_location: Any = "cpu"
) -> tuple[dict[str, Any], Path]:
    """Load ``path``, or its kept previous version if ``path`` is missing or damaged.

    Returns the state and the file it came from; raises :class:`CheckpointError` listing both
    files' problems if neither loads.
    """
    try:
        return load_checkpoint(path, expected, map_location), Path(path)
    except CheckpointError as first:
        prev = previous_path(path)
        try:
            state = load_checkpoint(prev, expected, map_location)
        except CheckpointError as second:
            raise CheckpointError(
                path, f"{first.reason}; previous version {prev}: {second.reason}"
            ) from first
        logger.warning("%s; falling back to the previous checkpoint %s", first, prev)
        return state, prev


def model_state_from_checkpoint(state: Mapping[str, Any], prefix: str = "model.") -> dict[str, Any]:
    """The trained model's ``state_dict`` from a checkpoint's method state (``method.model``)."""
    method_state = state["method"]
    return {k[len(prefix) :]: v for k, v in method_state.items() if k.startswith(prefix)}
