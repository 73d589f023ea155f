"""One trainer per run folder: ``<out>/run.lock``.

Two processes training into the same folder would overwrite each other's checkpoints and
metrics (a sweep restarted while its jobs still run on a cluster, the same command started
twice). :class:`RunLock` marks the folder as taken while a run trains: the file is created
atomically (``O_CREAT | O_EXCL``) and records host, pid, SLURM job and start time; a daemon
thread refreshes its modification time every ``heartbeat_s`` seconds.

A lock counts as held while its holder is alive: on this host, while its pid exists and the
heartbeat is fresh; from another host (a shared file system), while the heartbeat is younger
than ``stale_after_s``. A process killed with SIGKILL leaves its file behind; the next run takes
it over at once on the same host, after ``stale_after_s`` from another host.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

LOCK_NAME = "run.lock"


class RunLockedError(RuntimeError):
    """The run folder is being trained by another live process."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path, self.holder = path, holder
        super().__init__(f"{path.parent} is being trained by another process ({describe(holder)}); "
                         f"wait for it, or stop it. A stale lock is taken over by itself; {path} "
                         "can also be deleted once that process is gone")


def describe(holder: dict[str, Any]) -> str:
    job = f", SLURM job {holder['job']}" if holder.get("job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')}{job}, since {holder.get('started')}"


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(out_dir: str | os.PathLike, stale_after_s: float = 600.0) -> dict[str, Any] | None:
    """The live holder of ``out_dir``'s lock (its recorded fields), or None when the folder is free
    (no lock, an unreadable one, or a stale one: see the module notes)."""
    path = Path(out_dir) / LOCK_NAME
    try:
        age = time.time() - path.stat().st_mtime
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or age > stale_after_s:
        return None
    if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
        return None
    return holder


def check_not_locked(out_dir: str | os.PathLike, stale_after_s: float = 600.0) -> None:
    """Raise :class:`RunLockedError` when another live process holds ``out_dir``'s lock; reads
    only (a run checks this before loading its data, and takes the lock itself afterwards)."""
    holder = lock_holder(out_dir, stale_after_s)
    if holder is not None and not (holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()):
        raise RunLockedError(Path(out_dir) / LOCK_NAME, holder)


class RunLock:
    """Context manager holding ``<out_dir>/run.lock`` while a run trains (module notes).

    Raises :class:`RunLockedError` on entry when another live process holds it; re-entry by the
    same process (a resumed run in the same interpreter) is allowed."""

    def __init__(self, out_dir: str | os.PathLike, heartbeat_s: float = 60.0, stale_after_s: float = 600.0) -> None:
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"need 0 < heartbeat_s < stale_after_s, got {heartbeat_s}, {stale_after_s}")
        self.path = Path(out_dir) / LOCK_NAME
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _mine(self, holder: dict[str, Any] | None) -> bool:
        return bool(holder) and holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "job": os.environ.get("SLURM_JOB_ID"),
              "started": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = lock_holder(self.path.parent, self.stale_after_s)
                if holder is not None and not self._mine(holder):
                    raise RunLockedError(self.path, holder) from None
                self.path.unlink(missing_ok=True)  # stale, unreadable or our own: take it over
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except BaseException:  # a full disk: leave no empty lock file behind
                self.path.unlink(missing_ok=True)
                raise
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat, name="mcmi-run-lock", daemon=True)
            self._thread.start()
            return
        raise RunLockedError(self.path, lock_holder(self.path.parent, self.stale_after_s) or {})

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:  # removed under us: nothing to refresh
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if self._mine(holder):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "check_not_locked", "lock_holder"]
