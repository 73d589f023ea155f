"""A run's files of record: per-epoch ``metrics.csv``/``metrics.jsonl`` (:class:`MetricsLog`) and
the log file ``train.log`` (:class:`RunLog`). Experiment trackers (TensorBoard, W&B, MLflow) are
in :mod:`mcmi.engine.trackers`.

Both metric files are rewritten atomically from the full history after every epoch (the history is one
small row per epoch), so after a crash and resume they hold exactly the rows of the checkpoint
the run continued from, never a duplicated or half-written row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mcmi.checkpoint import atomic_write_text

logger = logging.getLogger(__name__)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text with the union of the rows' keys as columns (in order of first appearance)."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if _plain(v) is None else v) for k, v in r.items()})
    return buf.getvalue()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """Writes the metric history of a run to ``out_dir`` (no-op when ``enabled`` is False, e.g.
    on ranks other than 0). Its flat TensorBoard scalars (``tensorboard=True``) remain for direct
    callers; the trainer logs TensorBoard through :mod:`mcmi.engine.trackers`."""

    def __init__(
        self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = False
    ) -> None:
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.tensorboard = tensorboard and enabled
        self._writer: Any = None
        self._tb_failed = False

    def write_rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not self.enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not rows:
            # No epoch has finished: no metrics files (a header-less "\n" CSV, as a run killed in
            # its first epoch used to leave, is unreadable); a fresh start drops the old ones.
            for name in ("metrics.jsonl", "metrics.csv"):
                (self.out_dir / name).unlink(missing_ok=True)
            return
        jsonl = "".join(json.dumps({k: _plain(v) for k, v in r.items()}) + "\n" for r in rows)
        atomic_write_text(self.out_dir / "metrics.jsonl", jsonl)
        atomic_write_text(self.out_dir / "metrics.csv", rows_to_csv(rows))

    def _tb(self) -> Any:
        if self._writer is None and not self._tb_failed:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except Exception as e:  # noqa: BLE001 - ImportError, or a broken tensorboard install
                self._tb_failed = True
                logger.warning(
                    "log_tensorboard is on but TensorBoard is unavailable (%s); "
                    "metrics go to metrics.csv/jsonl only",
                    e,
                )
                return None
            self._writer = SummaryWriter(log_dir=str(self.out_dir / "tb"))
        return self._writer

    def scalars(self, row: Mapping[str, Any], step: int) -> None:
        if not self.tensorboard:
            return
        writer = self._tb()
        if writer is None:
            return
        for k, v in row.items():
            if k != "epoch" and isinstance(v, numbers.Real) and not isinstance(v, bool):
                writer.add_scalar(k, float(v), step)
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


DEFAULT_FORMAT = "%(levelname)s %(name)s: %(message)s"


def console_format() -> str:
    """The format of the console's log handler (the root logger's first stream handler that is
    not a file), or the ``mcmi`` command's."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            fmt = getattr(h.formatter, "_fmt", None)
            if fmt:
                return fmt
    return DEFAULT_FORMAT


class RunLog:
    """``train.log`` of a run folder: while attached, the records of the ``mcmi`` loggers are
    appended to it (across resumes), in the console's format with a timestamp in front.

    It gets what the console gets: the levels are those of the logging configuration (INFO under
    the ``mcmi`` command). When logging is not configured at all (a library call, where only
    warnings reach the console) the ``mcmi`` logger is lowered to INFO while attached, so the
    file still records the run; the console is unchanged. Disabled (``enabled=False``, ranks
    other than 0): no file, every method a no-op.
    """

    def __init__(self, path: str | Path, enabled: bool = True, logger_name: str = "mcmi") -> None:
        self.path = Path(path)
        self.handler: logging.Handler | None = None
        self._logger = logging.getLogger(logger_name)
        self._old_level: int | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s " + console_format()))
        if not logging.getLogger().handlers and self._logger.getEffectiveLevel() > logging.INFO:
            self._old_level = self._logger.level
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(handler)
        self.handler = handler

    def file_only(self, message: str, level: int = logging.INFO,
                  name: str = "mcmi.engine.loop") -> None:
        """Write one line to the file only (progress lines while the console shows a bar)."""
        if self.handler is None:
            return
        self.handler.handle(logging.LogRecord(name, level, __file__, 0, message, None, None))

    def exception(self, exc: BaseException) -> None:
        """The error that ends the run, with its traceback, to the file only (the console gets
        the ``mcmi`` command's one line)."""
        if self.handler is None:
            return
        record = logging.LogRecord("mcmi.engine.trainer", logging.ERROR, __file__, 0,
                                   "run stopped by %s: %s", (type(exc).__name__, exc),
                                   (type(exc), exc, exc.__traceback__))
        self.handler.handle(record)

    def close(self) -> None:
        if self.handler is None:
            return
        self._logger.removeHandler(self.handler)
        self.handler.close()
        self.handler = None
        if self._old_level is not None:
            self._logger.setLevel(self._old_level)
            self._old_level = None
