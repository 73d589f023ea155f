"""A teacher's CMI, LL and accuracy under a softmax temperature T (paper Sec. 4.3, Fig. 1; A.7).

Logits are collected once per teacher; for every T the outputs are P_x = softmax(z_x / T) and the
figures are exact (one streaming pass of :class:`~mcmi.metrics.CMIState` in float64). Accuracy does
not depend on T (the argmax is unchanged), LL falls as T grows beyond the fitted scale, and CMI
(eq. 12) goes to 0 as T -> infinity (every P_x tends to the uniform distribution).

- :func:`plot_temperature_sweep`: CMI, LL and accuracy vs T for each teacher (post-hoc smoothing:
  what temperature does to the teacher's outputs, the teacher side of A.7 / Fig. 8).
- :func:`plot_cmi_with_students`: the layout of Fig. 1 for one pair: the students' accuracy (bars,
  left axis) of KD runs at each T beside the teacher's CMI at that T (curve, right axis). The
  student runs come from elsewhere (one KD run per T); :func:`student_accuracy_from_runs` reads them.
- :func:`plot_student_temperature_grid`: the layout of Fig. 8 (A.7): student accuracy vs the
  teacher's temperature T_t, one line per student temperature T_s and teacher, from KD runs with
  ``method_args.student_temperature``.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["temperature_sweep", "plot_temperature_sweep", "plot_cmi_with_students", "plot_student_temperature_grid",
           "student_accuracy_from_runs", "temperature_figure", "main"]

PAPER_TEMPERATURES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # Fig. 1 and A.7: T in {1, ..., 8}


def temperature_sweep(logits: Tensor, labels: Tensor, temperatures: Sequence[float],
                      num_classes: int | None = None, chunk: int = 8192) -> list[dict[str, float]]:
    """``[{"temperature", "accuracy", "log_likelihood", "cmi"}]`` of softmax(logits / T) for each T."""
    from mcmi.metrics import CMIState

    logits = torch.as_tensor(logits)
    labels = torch.as_tensor(labels).long()
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, C) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    c = num_classes or logits.shape[1]
    rows = []
    for t in temperatures:
        if not t > 0:
            raise ValueError(f"temperatures must be positive, got {t}")
        state = CMIState.empty(c, logits.device)
        for i in range(0, len(logits), chunk):
            state.update_logits(logits[i:i + chunk], labels[i:i + chunk], float(t))
        rows.append({"temperature": float(t), "accuracy": state.accuracy(), "log_likelihood": state.log_likelihood(),
                     "cmi": state.cmi()})
    return rows


def plot_temperature_sweep(sweeps: Mapping[str, Sequence[Mapping[str, float]]], out_stem: str | Path,
                           title: str = "") -> list[Path]:
    """Three panels vs T: CMI (nats), LL (nats) and accuracy (%), one line per teacher."""
    import matplotlib.pyplot as plt

    from mcmi.reports.plots import save_figure

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("cmi", "CMI (nats)", 1.0), ("log_likelihood", "log-likelihood (nats)", 1.0), ("accuracy", "accuracy (%)", 100.0))
    for ax, (key, label, scale) in zip(axes, panels):
        for name, rows in sweeps.items():
            ax.plot([r["temperature"] for r in rows], [scale * r[key] for r in rows], marker="o", ms=3, label=name)
        ax.set_xlabel("temperature T")
        ax.set_ylabel(label)
        ax.set_title(f"teacher {label.split(' (')[0]} vs T", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_stem)


def plot_cmi_with_students(rows: Sequence[Mapping[str, float]], student_accuracy: Mapping[float, Sequence[float]],
                           out_stem: str | Path, title: str = "", teacher: str = "teacher") -> list[Path]:
    """Fig. 1 layout: student top-1 (%) per T as bars (mean, std over runs; left axis) and the
    teacher's CMI vs T as a curve (right axis). ``student_accuracy``: T -> accuracies (fractions)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from mcmi.reports.plots import save_figure
    from mcmi.reports.tables import mean_std

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ts = sorted(float(t) for t in student_accuracy)
    stats = [mean_std([100 * a for a in student_accuracy[t]]) for t in ts]
    means = np.array([m for m, _ in stats])
    ax.bar(ts, means, width=0.6, yerr=[s for _, s in stats], capsize=2, color="tab:blue", alpha=0.7,
           label="student accuracy")
    if len(means):
        lo, hi = float(np.nanmin(means)), float(np.nanmax(means))
        pad = max(0.5, 0.5 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("temperature T")
    ax.set_ylabel("student top-1 accuracy (%)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([r["temperature"] for r in rows], [r["cmi"] for r in rows], color="tab:red", marker="o", ms=3,
             label=f"{teacher} CMI")
    ax2.set_ylabel(f"{teacher} CMI (nats)", color="tab:red")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    # below the axes: inside, it would cover the CMI curve or a bar
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    ax.set_title(title or "student accuracy and teacher CMI vs temperature", fontsize=10)
    return save_figure(fig, out_stem)


def plot_student_temperature_grid(student_acc: Mapping[str, Mapping[tuple[float, float], Sequence[float]]],
                                  out_stem: str | Path, title: str = "") -> list[Path]:
    """Fig. 8 layout: student top-1 (%) vs the teacher's temperature T_t, one line per (teacher,
    student temperature T_s), plus a line for the runs with T_s = T_t (conventional KD) when there
    are two or more; mean over runs, std as error bars. ``student_acc``: teacher name ->
    (T_t, T_s) -> accuracies (fractions). Line style tells the teacher, colour the T_s."""
    import matplotlib.pyplot as plt

    from mcmi.reports.plots import save_figure
    from mcmi.reports.tables import mean_std

    keys = {key for grid in student_acc.values() for key in grid}
    series: dict[str, list[tuple[float, float]]] = {}
    for ts in sorted({ts for _, ts in keys}):
        points = sorted(key for key in keys if key[1] == ts)
        if len(points) >= 2 or any(tt != ts for tt, _ in points):  # a lone diagonal point joins the T_s = T_t line
            series[f"$T^s$ = {ts:g}"] = points
    diagonal = sorted(key for key in keys if key[0] == key[1])
    if len(diagonal) >= 2:
        series["$T^s$ = $T^t$"] = diagonal
    colors = {label: plt.cm.viridis(i / max(1, len(series) - 1) * 0.85) for i, label in enumerate(series)}
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, (name, grid) in enumerate(student_acc.items()):
        for label, points in series.items():
            points = [p for p in points if p in grid]
            if not points:
                continue
            stats = [mean_std([100 * a for a in grid[p]]) for p in points]
            ax.errorbar([tt for tt, _ in points], [m for m, _ in stats], yerr=[0.0 if sd != sd else sd for _, sd in stats],
                        color=colors[label], linestyle=styles[k % len(styles)], marker="o", ms=3, capsize=2,
                        label=f"{name} teacher, {label}")
    ax.set_xlabel("teacher temperature $T^t$")
    ax.set_ylabel("student top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "KD students vs teacher and student temperatures", fontsize=10)
    return save_figure(fig, out_stem)


def student_accuracy_from_runs(runs: Mapping[Any, Sequence[str | Path]], which: str = "best") -> dict[Any, list[float]]:
    """key -> accuracies (fractions) read from each run folder's ``summary.json`` (``best_acc`` or
    ``last_acc``); runs without a summary are skipped. Keys (T, or (T_t, T_s)) are kept as given."""
    out: dict[Any, list[float]] = {}
    for key, dirs in runs.items():
        for d in dirs:
            p = Path(d) / "summary.json"
            if p.is_file():
                acc = json.loads(p.read_text()).get(f"{which}_acc")
                if acc is not None:
                    out.setdefault(key, []).append(float(acc))
    return out


def temperature_figure(checkpoints: Mapping[str, str], data: str, out: str | Path, root: str | None = None,
                       split: str = "train", temperatures: Sequence[float] = PAPER_TEMPERATURES,
                       device: str = "auto", batch_size: int = 256, class_groups: list[list[int]] | None = None,
                       students: Mapping[str, Mapping[tuple[float, float], Sequence[str]]] | None = None,
                       which: str = "best", augment: bool = False, augment_seed: int = 0) -> dict:
    """Sweep every teacher over ``temperatures`` on ``split`` (default: the training set, where the
    paper measures its teachers' CMI; unaugmented, or with ``augment`` the view ``train-augmented``
    of the paper's analysis script, :mod:`mcmi.metrics.train_view`; ``temperature.json`` names
    the view) and write ``out/temperature.{png,pdf,json}``.
    With ``students`` (teacher name -> (T_t, T_s) -> KD run folders), also
    ``out/fig1_<name>.{png,pdf}`` from the runs with T_t = T_s, and ``out/fig8.{png,pdf}`` when
    some run has T_s != T_t."""
    from mcmi.analysis.common import collect_logits, load_eval_data, load_models
    from mcmi.experiments.train import resolve_device
    from mcmi.io import write_json

    dev = resolve_device(device)
    ev = load_eval_data(data, root, split, class_groups, augment, augment_seed)
    sweeps = {}
    for name, model in load_models(checkpoints, ev.num_classes, dev, ev.stats).items():
        logits, labels = collect_logits(model, ev.loader(None, batch_size, dev), dev)
        sweeps[name] = temperature_sweep(logits, labels, temperatures, ev.num_classes)
    figures = plot_temperature_sweep(sweeps, Path(out) / "temperature", f"teacher outputs softmax(z/T), {data} ({split})")
    student_acc = {}
    for name, runs in (students or {}).items():
        student_acc[name] = student_accuracy_from_runs(runs, which)
        same_t = {tt: acc for (tt, ts), acc in student_acc[name].items() if tt == ts}
        if name in sweeps and same_t:
            figures += plot_cmi_with_students(sweeps[name], same_t, Path(out) / f"fig1_{name}",
                                              f"KD students of the {name} teacher vs T", teacher=name)
    if any(tt != ts for grid in student_acc.values() for tt, ts in grid):
        figures += plot_student_temperature_grid(student_acc, Path(out) / "fig8",
                                                 f"KD students vs $(T^t, T^s)$, {data}")
    res = {"data": data, "split": split, "view": ev.view, "measured_on": ev.describe(), "n": len(ev.dataset),
           "checkpoints": dict(checkpoints), "sweeps": sweeps,
           "student_accuracy": {k: {f"{tt:g}/{ts:g}": v for (tt, ts), v in sorted(d.items())}
                                for k, d in student_acc.items()},
           "figures": [str(p) for p in figures]}
    write_json(Path(out) / "temperature.json", res)
    return res


def _parse_students(items: Sequence[str] | None) -> dict[str, dict[tuple[float, float], list[str]]]:
    """``["MLL:4=runs/a", "MLL:8/1=runs/b"]`` -> ``{"MLL": {(4.0, 4.0): ["runs/a"], (8.0, 1.0):
    ["runs/b"]}}``: ``T`` alone is a KD run at T_t = T_s = T, ``T_t/T_s`` one with its own T_s."""
    out: dict[str, dict[tuple[float, float], list[str]]] = {}
    for item in items or []:
        try:
            head, path = item.split("=", 1)
            name, t = head.split(":", 1)
            tt, _, ts = t.partition("/")
            key = (float(tt), float(ts or tt))
        except ValueError:
            raise ValueError(f"--student {item!r} must look like NAME:T=RUN_DIR or NAME:T_t/T_s=RUN_DIR") from None
        out.setdefault(name, {}).setdefault(key, []).append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    from mcmi.analysis.common import add_data_args, parse_named

    p = argparse.ArgumentParser(prog="mcmi analyze temperature",
                                description="teacher CMI / LL / accuracy vs softmax temperature (paper Fig. 1, A.7)")
    p.add_argument("checkpoints", nargs="+", help="NAME=CHECKPOINT (e.g. MLL=... MCMI=...)")
    add_data_args(p, split="train")
    p.add_argument("--temperatures", default=",".join(f"{t:g}" for t in PAPER_TEMPERATURES),
                   help="comma-separated (default: 1,...,8 as the paper)")
    p.add_argument("--student", action="append",
                   help="NAME:T=RUN_DIR of a KD student at temperature T (Fig. 1 bars), or NAME:T_t/T_s=RUN_DIR "
                        "of one with its own student temperature (Fig. 8); repeat")
    p.add_argument("--which", default="best", choices=["best", "last"], help="student accuracy read from summary.json")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import yaml

    temps = [float(t) for t in args.temperatures.split(",") if t.strip()]
    res = temperature_figure(parse_named(args.checkpoints, ("MLL", "MCMI")), args.data, args.out, args.root, args.split,
                             temps, args.device, args.batch_size,
                             yaml.safe_load(args.class_groups) if args.class_groups else None,
                             _parse_students(args.student), args.which, args.augment, args.augment_seed)
    for name, rows in res["sweeps"].items():
        print(name + ": " + "  ".join(f"T={r['temperature']:g} CMI={r['cmi']:.4f} LL={r['log_likelihood']:.3f}"
                                      for r in rows))
    print("figures: " + ", ".join(res["figures"]))
    return 0
