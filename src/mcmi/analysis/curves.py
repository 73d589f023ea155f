"""CMI and LL of a model during training (paper Fig. 2, Sec. 5 remark), from runs' ``metrics.jsonl``.

The trainer writes one row per epoch; evaluated epochs carry ``val_acc``, ``val_ll`` (eq. 5) and
``val_cmi`` (eq. 12), measured on the run's evaluation loader (the test set, unaugmented). Several
runs (e.g. an MLL teacher and MCMI fine-tunes with different lambda) share the axes; a fine-tune
can be drawn as the continuation of the run it started from (``continues``: its epochs are
shifted past that run's last epoch and its line starts from that run's last point).
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["read_curves", "continue_curve", "plot_curves", "curves_figure", "main"]

METRICS = {"val_cmi": ("CMI (nats)", 1.0), "val_ll": ("log-likelihood (nats)", 1.0), "val_acc": ("top-1 accuracy (%)", 100.0)}


def read_curves(run_dir: str | Path, keys: Sequence[str] = tuple(METRICS)) -> dict[str, list[float]]:
    """``{"epoch": [...], key: [...]}`` over the evaluated epochs of ``run_dir/metrics.jsonl``
    (rows lacking any of ``keys`` are skipped; None stands for a non-finite value)."""
    from mcmi.engine.logs import read_jsonl

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}")
    out: dict[str, list] = {"epoch": [], **{k: [] for k in keys}}
    for row in read_jsonl(path):
        if all(k in row for k in keys):
            out["epoch"].append(row["epoch"])
            for k in keys:
                out[k].append(row[k])
    return out


def plot_curves(runs: Mapping[str, Mapping[str, Sequence[float]]], out_stem: str | Path, title: str = "",
                keys: Sequence[str] = tuple(METRICS)) -> list[Path]:
    """One panel per metric vs epoch, one line per run (``runs``: label -> :func:`read_curves`)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from mcmi.reports.plots import save_figure

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        label, scale = METRICS.get(key, (key, 1.0))
        for name, curve in runs.items():
            ys = [None if v is None else scale * v for v in curve[key]]
            ax.plot(curve["epoch"], [float("nan") if v is None else v for v in ys],
                    marker="o" if len(ys) <= 30 else None, ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(f"{label.split(' (')[0]} on the evaluation set", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_stem)


def continue_curve(curve: Mapping[str, Sequence], base: Mapping[str, Sequence]) -> dict[str, list]:
    """``curve`` drawn after ``base``: epochs shifted by base's last epoch, base's last point first."""
    if not base["epoch"]:
        return {k: list(v) for k, v in curve.items()}
    last = base["epoch"][-1]
    return {k: [base[k][-1], *(e + last for e in v)] if k == "epoch" else [base[k][-1], *v]
            for k, v in curve.items()}


def curves_figure(runs: Mapping[str, str | Path], out: str | Path, title: str = "",
                  keys: Sequence[str] = tuple(METRICS), continues: Mapping[str, str] | None = None) -> list[Path]:
    """Read each run (label -> folder) and write ``out/curves.{png,pdf}``; ``continues`` maps a
    label to the label of the run it was fine-tuned from (see :func:`continue_curve`)."""
    curves = {name: read_curves(d, keys) for name, d in runs.items()}
    for name, base in (continues or {}).items():
        if name not in curves or base not in curves:
            raise ValueError(f"--after {name}={base}: both labels must name runs ({sorted(curves)})")
        curves[name] = continue_curve(curves[name], curves[base])
    return plot_curves(curves, Path(out) / "curves", title or "CMI and LL during training", keys)


def main(argv: list[str] | None = None) -> int:
    from mcmi.analysis.common import parse_named

    p = argparse.ArgumentParser(prog="mcmi analyze curves", description="CMI / LL / accuracy vs epoch from metrics.jsonl (paper Fig. 2)")
    p.add_argument("runs", nargs="+", help="LABEL=RUN_DIR or RUN_DIR (labelled by its folder name), e.g. MLL=runs/t/mll MCMI=runs/t/mcmi")
    p.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated keys (default: {','.join(METRICS)})")
    p.add_argument("--after", action="append", default=[],
                   help="LABEL=BASE: draw run LABEL as the continuation of run BASE (a fine-tune; repeat)")
    p.add_argument("--title", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    runs = parse_named(args.runs, [Path(r).name for r in args.runs])
    after = {}
    for item in args.after:
        label, sep, base = item.partition("=")
        if not sep:
            raise SystemExit(f"--after {item!r} must look like LABEL=BASE")
        after[label] = base
    paths = curves_figure(runs, args.out, args.title,
                          [k.strip() for k in args.metrics.split(",") if k.strip()], after)
    print("figures: " + ", ".join(str(p) for p in paths))
    return 0
