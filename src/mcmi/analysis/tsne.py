"""t-SNE of teachers' output probability vectors (paper Fig. 6, A.4.1): the C-dimensional
softmax outputs P_x mapped to 2-D with scikit-learn's t-SNE, one panel per teacher, points
coloured by true class. The panel titles give the teacher's CMI (eq. 12) on the plotted samples:
per A.4.1, the lower the CMI, the tighter each class's cluster around its centroid Q^y."""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["tsne_embed", "plot_tsne", "tsne_figure", "main"]


def tsne_embed(probs: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D t-SNE embedding (N, 2) of probability vectors (N, C); PCA initialization, Euclidean
    distances, deterministic given ``seed``. Perplexity is capped below N."""
    from sklearn.manifold import TSNE

    x = np.asarray(probs, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"need (N, C) probabilities with N >= 3, got shape {x.shape}")
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=int(seed)).fit_transform(x)


def plot_tsne(panels: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
              out_stem: str | Path, title: str = "", subtitles: Mapping[str, str] | None = None) -> list[Path]:
    """One scatter per panel (``name -> (embedding (N, 2), labels (N,))``), coloured by class,
    with a shared legend of the classes present (up to 20 entries). PNG (dpi 150) and PDF."""
    import matplotlib.pyplot as plt

    from mcmi.reports.plots import save_figure

    present = sorted({int(y) for _, labels in panels.values() for y in np.asarray(labels)})
    cmap = plt.get_cmap("tab10" if len(present) <= 10 else "tab20" if len(present) <= 20 else "nipy_spectral")
    colour = {c: cmap(i if len(present) <= 20 else i / max(1, len(present) - 1)) for i, c in enumerate(present)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels) + 1.6, 4.6), squeeze=False)
    for ax, (name, (emb, labels)) in zip(axes[0], panels.items()):
        emb, labels = np.asarray(emb), np.asarray(labels)
        for c in present:
            m = labels == c
            if m.any():
                ax.scatter(emb[m, 0], emb[m, 1], s=6, color=colour[c], label=class_names[c], alpha=0.8, linewidths=0)
        ax.set_title(f"{name}" + (f"\n{subtitles[name]}" if subtitles and name in subtitles else ""), fontsize=10)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    if len(present) <= 20:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.set_layout_engine("constrained")
        fig.legend(handles, labels, loc="outside right center", fontsize=7, markerscale=2, title="class",
                   title_fontsize=8)
    else:
        fig.set_layout_engine("constrained")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, out_stem)


def _pick(labels: torch.Tensor, classes: Sequence[int] | None, num_samples: int) -> torch.Tensor:
    """The first samples of every selected class in turn (stratified, file order), at most
    ``num_samples``."""
    from mcmi.experiments.train import subset_indices

    labels = torch.as_tensor(labels).cpu()
    pool = torch.arange(len(labels))
    if classes:
        pool = pool[torch.isin(labels, torch.as_tensor(list(classes)))]
    return pool[subset_indices(labels[pool], num_samples, "stratified")]


def tsne_figure(checkpoints: Mapping[str, str], data: str, out: str | Path, root: str | None = None,
                split: str = "test", classes: Sequence[int | str] | None = None, num_samples: int = 2000,
                seed: int = 0, perplexity: float = 30.0, device: str = "auto", batch_size: int = 256,
                class_groups: list[list[int]] | None = None) -> dict:
    """Fig. 6: t-SNE of each teacher's output probabilities on the same ``num_samples`` images
    (stratified over ``classes``, default all). Writes ``out/tsne.png``, ``.pdf``, ``tsne.json``."""
    from mcmi.analysis.common import class_index, collect_logits, load_eval_data, load_models
    from mcmi.experiments.train import resolve_device
    from mcmi.io import write_json
    from mcmi.metrics import empirical_cmi

    dev = resolve_device(device)
    ev = load_eval_data(data, root, split, class_groups)
    cls = [class_index(ev.class_names, c) for c in classes] if classes else None
    idx = _pick(ev.dataset.labels, cls, num_samples)
    panels, subtitles, info = {}, {}, {}
    for name, model in load_models(checkpoints, ev.num_classes, dev, ev.stats).items():
        logits, labels = collect_logits(model, ev.loader(idx, batch_size, dev), dev)
        probs = torch.softmax(logits.double(), 1)
        cmi = empirical_cmi(probs, labels, ev.num_classes)
        acc = float((probs.argmax(1) == labels).double().mean())
        panels[name] = (tsne_embed(probs.numpy(), seed, perplexity), labels.numpy())
        subtitles[name] = f"CMI {cmi:.4f} nats, accuracy {100 * acc:.2f}% (n={len(labels)})"
        info[name] = {"checkpoint": checkpoints[name], "cmi": cmi, "accuracy": acc}
    title = f"t-SNE of output probabilities, {data} ({split})"
    paths = plot_tsne(panels, ev.class_names, Path(out) / "tsne", title, subtitles)
    result = {"data": data, "split": split, "n": int(len(idx)), "seed": seed, "perplexity": perplexity,
              "classes": None if cls is None else [ev.class_names[c] for c in cls], "teachers": info,
              "figures": [str(p) for p in paths]}
    write_json(Path(out) / "tsne.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    from mcmi.analysis.common import add_data_args, parse_named

    p = argparse.ArgumentParser(prog="mcmi analyze tsne", description="t-SNE of teachers' output probabilities (paper Fig. 6)")
    p.add_argument("checkpoints", nargs="+", help="NAME=CHECKPOINT (e.g. MLL=... MCMI=...)")
    add_data_args(p, split="test")
    p.add_argument("--classes", help="comma-separated class names or indices (default: all)")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import yaml

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    res = tsne_figure(parse_named(args.checkpoints, ("MLL", "MCMI")), args.data, args.out, args.root, args.split,
                      classes, args.num_samples, args.seed, args.perplexity, args.device, args.batch_size,
                      yaml.safe_load(args.class_groups) if args.class_groups else None)
    print(json.dumps({"teachers": res["teachers"], "figures": res["figures"]}))
    return 0
