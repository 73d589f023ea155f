"""How reports turn run numbers into cells: percentages, mean ± std over seeds, paired differences.

Rows are plain dicts, one per finished run (``seed``, ``kind`` and whatever the report matches
on: ``method``, ``cell``, ...). A value a run does not have is None and is left out; a cell with
no value at all prints ``–``. The paper's comparison is MCMI - MLL *paired by seed*: the seed fixes
the student's initialization and data order for both teacher kinds, so the difference of one seed
is free of that spread; pairs where either side has not finished are left out.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mcmi.reports.tables import fmt_mean_std, mean_std

MISSING = "–"


def pct(x: Any) -> float | None:
    """A fraction in [0, 1] as a percentage; None for a missing value (None or NaN)."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def fmt_num(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; ``–`` when missing."""
    return MISSING if x is None else f"{x:.{digits}f}"


def format_cell(values: Sequence[float], n_full: int, digits: int = 2) -> str:
    """``mean ± std`` over seeds (just the value for one seed), ``(n=k)`` when fewer than the
    ``n_full`` seeds the grid plans have it; ``–`` when none has."""
    if not values:
        return MISSING
    return fmt_mean_std(values, digits) + (f" (n={len(values)})" if len(values) < n_full else "")


def format_stats(st: Mapping[str, Any] | None, n_full: int) -> str:
    """:func:`format_cell` of a :func:`stats` dict (None: ``–``)."""
    return format_cell(list(st["values"]), n_full) if st else MISSING


def signed_cell(diffs: Sequence[float]) -> str:
    """Differences as ``+mean ± std`` (the mean's sign written); ``–`` when there are none."""
    return fmt_mean_std(diffs, signed=True) if diffs else MISSING


def stats(values: Sequence[float]) -> dict[str, Any] | None:
    """``{"mean", "std", "n", "values"}`` (sample std; 0 for one value); None for no values."""
    if not values:
        return None
    m, s = mean_std(values)
    return {"mean": m, "std": s, "n": len(values), "values": list(values)}


def _matches(row: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    return all(row.get(k) == v for k, v in match.items())


def cell_stats(rows: Sequence[Mapping[str, Any]], value: str, **match: Any) -> list[float]:
    """The ``value`` of the rows matching every ``match`` item, in seed order (None left out)."""
    picked = [r for r in rows if _matches(r, match)]
    return [float(r[value]) for r in sorted(picked, key=lambda r: r["seed"]) if r.get(value) is not None]


def seed_values(rows: Sequence[Mapping[str, Any]], which: str) -> list[float]:
    """``<which>_acc`` (``best`` / ``last``) of the rows in seed order, None left out, as stored."""
    return [r[f"{which}_acc"] for r in sorted(rows, key=lambda r: r["seed"]) if r.get(f"{which}_acc") is not None]


def paired_by_seed(rows: Sequence[Mapping[str, Any]], value: str, first: str = "mll", second: str = "mcmi",
                   **match: Any) -> tuple[list[int], list[float]]:
    """(seeds, differences): ``value`` of teacher kind ``second`` minus that of ``first``, seed by
    seed, over the seeds where both rows matching ``match`` have it (in seed order)."""
    def by_seed(kind: str) -> dict[int, float]:
        return {r["seed"]: float(r[value]) for r in rows
                if r.get("kind") == kind and r.get(value) is not None and _matches(r, match)}

    a, b = by_seed(first), by_seed(second)
    seeds = sorted(set(a) & set(b))
    return seeds, [b[s] - a[s] for s in seeds]


def paired_differences(rows: Sequence[Mapping[str, Any]], value: str, first: str = "mll", second: str = "mcmi",
                       **match: Any) -> list[float]:
    """The differences of :func:`paired_by_seed` (MCMI - MLL by default), in seed order."""
    return paired_by_seed(rows, value, first, second, **match)[1]


def gained_text(diffs: Sequence[float]) -> str:
    """``+mean ± std (k of n > 0)``: the paired differences and how many are positive."""
    return f"{fmt_mean_std(diffs, signed=True)} ({sum(d > 0 for d in diffs)} of {len(diffs)} > 0)" if diffs \
        else MISSING


__all__ = ["MISSING", "cell_stats", "fmt_mean_std", "fmt_num", "format_cell", "format_stats", "gained_text",
           "mean_std", "paired_by_seed", "paired_differences", "pct", "seed_values", "signed_cell", "stats"]
