"""Per-epoch metric files of a run: ``metrics.csv``, ``metrics.jsonl`` and TensorBoard scalars.

Both files are rewritten atomically from the full history after every epoch (the history is one
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

from mcmi.engine.checkpoint import atomic_write_text

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
    on ranks other than 0); TensorBoard only if asked and importable, otherwise one warning."""

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
