"""Atomic file writes: a finished result is replaced whole or not at all (temp file, fsync, rename)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

#: Below this many free bytes a failed write counts as a full disk.
LOW_SPACE_BYTES = 16 * 2**20


class NoSpaceError(OSError):
    """A write failed because the file system is full (``ENOSPC``), also when torch reports it
    as a short write (``unexpected pos ...``). Nothing was replaced: the previous file, if any,
    is intact."""

    def __init__(self, path: str | os.PathLike, free: int | None = None) -> None:
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.path, self.free = Path(path), free

    def __str__(self) -> str:
        left = f", {self.free} bytes free" if self.free is not None else ""
        return f"no space left on the device of {self.path.parent} (writing {self.path.name}{left})"


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _disk_full(e: BaseException, folder: Path) -> tuple[bool, int | None]:
    """Whether the failed write ``e`` means a full disk, and the free bytes measured now."""
    free = _free_bytes(folder)
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True, free
    text = str(e)
    short_write = isinstance(e, RuntimeError) and any(
        s in text for s in ("unexpected pos", "file write failed", "failed writing file"))
    return short_write and free is not None and free < LOW_SPACE_BYTES, free


def check_output_dir(path: str | os.PathLike, key: str = "out") -> Path:
    """Check, without writing anything, that folder ``path`` exists or can be created and that
    files can be written in it. Raises :class:`~mcmi.config.ConfigError` naming ``key``, the
    path and the culprit (a file in the way, a read-only file system, no permission)."""
    from mcmi.config import ConfigError

    p = Path(path).expanduser()
    q = p
    while not q.exists() and q.parent != q:
        if q.is_symlink():  # a dangling link: mkdir would fail on it
            raise ConfigError(f"{key}={path}: {q} is a broken symbolic link")
        q = q.parent
    if not q.is_dir():
        raise ConfigError(f"{key}={path}: {q} is a file, not a folder")
    if not os.access(q, os.W_OK | os.X_OK):
        try:
            readonly = bool(os.statvfs(q).f_flag & os.ST_RDONLY)
        except OSError:
            readonly = False
        why = "read-only file system" if readonly else "no permission to write there"
        raise ConfigError(f"{key}={path}: cannot write in {q} ({why})")
    return p


@contextlib.contextmanager
def removing_new_dirs(path: str | os.PathLike) -> Iterator[None]:
    """On an exception, remove the folders of ``path`` that did not exist on entry and are empty
    by then (a run that failed before it wrote anything leaves no folder behind)."""
    p = Path(path).expanduser()
    new: list[Path] = []
    q = p
    while not q.exists() and q.parent != q:
        new.append(q)
        q = q.parent
    try:
        yield
    except BaseException:
        for d in new:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break  # not empty (or gone): keep it and its parents
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temp file beside ``path``, then rename it over ``path``.

    A crash at any point leaves either the old file or the new one, never a truncated mix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        full, free = _disk_full(e, path.parent) if isinstance(e, Exception) else (False, None)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if full:
            raise NoSpaceError(path, free) from e
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); silently skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
