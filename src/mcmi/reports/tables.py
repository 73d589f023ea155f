"""Result tables: mean +- std over seeds, Markdown output."""
from __future__ import annotations

import math
from typing import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))


def fmt_mean_std(values: Sequence[float], digits: int = 2, scale: float = 1.0, signed: bool = False) -> str:
    """``mean ± std`` (just the mean for one value); ``signed`` writes the mean's sign (gains)."""
    m, s = mean_std([v * scale for v in values])
    if math.isnan(m):
        return "-"
    mean = f"{m:+.{digits}f}" if signed else f"{m:.{digits}f}"
    return f"{mean} ± {s:.{digits}f}" if len(values) > 1 else mean


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
