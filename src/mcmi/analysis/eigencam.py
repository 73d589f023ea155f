"""Eigen-CAM (Muhammad & Yeasin, 2020) of a model's stage, and the paper's Fig. 3 / Figs. 10-13:
MLL and MCMI teachers' maps side by side on the same images.

Definition (Eigen-CAM: the activations projected on their first principal component): for one
image, the stage's activations A (C, h, w) form the matrix O (h*w, C), one row per position. With the SVD
O = U S V^T, the map is the projection of O on the first right-singular vector,
O v_1 = s_1 u_1 (h*w values), reshaped to (h, w). No class and no gradient enter.

- Centering: off by default, as in the paper's definition (O is the activation matrix itself).
  ``center=True`` subtracts each channel's spatial mean first (PCA proper; what some
  implementations do); the map then has zero mean and is only defined up to an offset.
- Sign: singular vectors are defined up to sign, so the map is flipped where needed to correlate
  positively with the channel-mean activation map (the mean of A over channels). For
  post-ReLU activations and ``center=False`` this makes the map non-negative (the first singular
  vectors of a non-negative matrix can be taken non-negative, Perron-Frobenius).
- Display: upsampled bilinearly to the image size, then min-max normalized to [0, 1] per image
  (a constant map becomes zeros). No ReLU is applied.

The maps come from ``model.forward_features(x).stages[stage]`` (default: the last stage, the
reference code's last feature map: see :class:`~mcmi.models.base.Features`; for most models the
map that is pooled), so no hooks are needed.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["eigencam", "model_eigencam", "plot_eigencam_grid", "map_statistics", "eigencam_figure", "main"]


def _minmax(x: Tensor) -> Tensor:
    """Per-image min-max normalization of (N, H, W); constant images become 0."""
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return out.reshape(x.shape)


def eigencam(activations: Tensor, size: tuple[int, int] | None = None, center: bool = False,
             normalize: bool = True) -> Tensor:
    """Eigen-CAM maps of activations (N, C, h, w) (or one (C, h, w)): (N, H, W) in float32.

    ``size``: (H, W) to upsample to bilinearly (default: keep (h, w)). ``normalize``: min-max to
    [0, 1] per image (off: the signed projection ``O v_1``, for analysis). See the module notes.
    """
    single = activations.dim() == 3
    a = activations.unsqueeze(0) if single else activations
    if a.dim() != 4:
        raise ValueError(f"activations must be (N, C, h, w) or (C, h, w), got {tuple(activations.shape)}")
    a = a.detach().double()
    n, c, h, w = a.shape
    o = a.reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    if center:
        o = o - o.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(o, full_matrices=False)  # vh: (N, min(hw, C), C)
    proj = (o @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # (N, hw) = s_1 u_1
    ref = a.mean(1).reshape(n, h * w)
    corr = ((proj - proj.mean(1, keepdim=True)) * (ref - ref.mean(1, keepdim=True))).sum(1)
    tie = corr.abs() <= 1e-12 * (proj.norm(dim=1) * ref.norm(dim=1)).clamp_min(1e-300)
    corr = torch.where(tie, (proj * ref).sum(1), corr)  # flat reference: align with its mean instead
    proj = proj * torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)[:, None]
    maps = proj.reshape(n, 1, h, w)
    if size is not None and tuple(size) != (h, w):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
    maps = maps[:, 0]
    if normalize:
        maps = _minmax(maps)
    maps = maps.float()
    return maps[0] if single else maps


@torch.no_grad()
def model_eigencam(model: torch.nn.Module, images: Tensor, stage: int = -1, center: bool = False) -> Tensor:
    """Eigen-CAM maps (N, H, W) in [0, 1] of ``model`` (a :class:`~mcmi.models.base.FeatureModel`)
    for normalized ``images`` (N, 3, H, W), from ``Features.stages[stage]``; eval mode."""
    was = model.training
    model.eval()
    try:
        feats = model.forward_features(images)
    finally:
        model.train(was)
    if not feats.stages:
        raise ValueError(f"{type(model).__name__}.forward_features returned no stages")
    return eigencam(feats.stages[stage].float(), size=tuple(images.shape[-2:]), center=center)


def plot_eigencam_grid(images: Tensor, maps: Mapping[str, Tensor], out_stem: str | Path, title: str = "",
                       row_labels: Sequence[str] | None = None, alpha: float = 0.5,
                       captions: Mapping[str, Sequence[str]] | None = None) -> list[Path]:
    """Rows = images; columns = the image, then one overlay per model (``maps``: name -> (N, H, W)
    in [0, 1]). ``images``: (N, 3, H, W) or (N, H, W, 3) floats in [0, 1]. PNG (dpi 150) and PDF.
    ``captions``: per model, a short text under each overlay (e.g. the predicted class)."""
    import matplotlib.pyplot as plt

    from mcmi.reports.plots import save_figure

    imgs = images.detach().float().cpu()
    if imgs.dim() == 4 and imgs.shape[1] == 3:
        imgs = imgs.permute(0, 2, 3, 1)
    imgs = imgs.clamp(0, 1).numpy()
    n = imgs.shape[0]
    names = list(maps)
    cols = 1 + len(names)
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols, 2.2 * n + (0.4 if title else 0)), squeeze=False)
    for i in range(n):
        ax = axes[i, 0]
        ax.imshow(imgs[i], interpolation="nearest")
        ax.set_ylabel(row_labels[i] if row_labels else f"image {i + 1}", fontsize=8)
        for j, name in enumerate(names, 1):
            ax = axes[i, j]
            ax.imshow(imgs[i], interpolation="nearest")
            im = ax.imshow(maps[name][i].detach().cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1,
                           interpolation="bilinear")
            if captions and name in captions:
                ax.set_xlabel(captions[name][i], fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=9)
    for j, name in enumerate(names, 1):
        axes[0, j].set_title(f"{name} teacher Eigen-CAM", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    cbar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, pad=0.02)
    cbar.set_label("Eigen-CAM (normalized)", fontsize=8)
    fig.set_layout_engine("constrained")
    return save_figure(fig, out_stem)


def _denormalize(x: Tensor, stats) -> Tensor:
    mean = torch.as_tensor(stats[0], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(stats[1], dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float().cpu() * std + mean).clamp(0, 1)


def pick_images(labels: Tensor, cls: int | None, num_images: int, seed: int) -> Tensor:
    """``num_images`` indices drawn at random (from ``seed``) among the samples of
    class ``cls`` (all samples when None), as the paper picks its Fig. 3 images; sorted."""
    labels = torch.as_tensor(labels).cpu()
    pool = torch.arange(len(labels)) if cls is None else (labels == cls).nonzero().reshape(-1)
    if len(pool) == 0:
        raise ValueError(f"no sample of class {cls}")
    g = torch.Generator().manual_seed(int(seed))
    return pool[torch.randperm(len(pool), generator=g)[:num_images]].sort().values


def map_statistics(maps: Mapping[str, Tensor]) -> dict:
    """Numbers behind the pictures: per model, the share of each image's pixels whose normalized
    map is >= 0.5 (how much of the image the map highlights); for the first two models, the mean
    absolute difference of their maps and the Pearson correlation of each image's pair of maps."""
    stats: dict = {"area_above_half": {}}
    for name, m in maps.items():
        area = (m.flatten(1) >= 0.5).float().mean(1)
        stats["area_above_half"][name] = {"per_image": [round(float(a), 4) for a in area],
                                          "mean": float(area.mean())}
    if len(maps) >= 2:
        (a_name, a), (b_name, b) = list(maps.items())[:2]
        a, b = a.flatten(1).double(), b.flatten(1).double()
        ac, bc = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        corr = (ac * bc).sum(1) / (ac.norm(dim=1) * bc.norm(dim=1)).clamp_min(1e-12)
        stats["pair"] = {"models": [a_name, b_name], "mean_abs_difference": float((a - b).abs().mean()),
                         "pearson_per_image": [round(float(c), 4) for c in corr], "mean_pearson": float(corr.mean())}
    return stats


def eigencam_figure(checkpoints: Mapping[str, str], data: str, out: str | Path, root: str | None = None,
                    split: str = "test", class_name: str | int | None = None, num_images: int = 4, seed: int = 0,
                    stage: int = -1, center: bool = False, device: str = "auto",
                    class_groups: list[list[int]] | None = None) -> dict:
    """Fig. 3: Eigen-CAM of each teacher (``{"MLL": ckpt, "MCMI": ckpt}``) on the same
    ``num_images`` images of class ``class_name`` (name or index; random images when None).
    Writes ``out/eigencam.png``, ``.pdf`` and ``eigencam.json`` (image indices, predictions)."""
    from mcmi.analysis.common import class_index, load_eval_data, load_models
    from mcmi.experiments.train import resolve_device
    from mcmi.io import write_json

    dev = resolve_device(device)
    ev = load_eval_data(data, root, split, class_groups)
    cls = class_index(ev.class_names, class_name)
    idx = pick_images(ev.dataset.labels, cls, num_images, seed)
    batch = next(iter(ev.loader(idx, batch_size=len(idx), device=dev)))
    models = load_models(checkpoints, ev.num_classes, dev, ev.stats)
    maps, preds = {}, {}
    for name, model in models.items():
        maps[name] = model_eigencam(model, batch["image"], stage=stage, center=center).cpu()
        with torch.no_grad():
            preds[name] = model(batch["image"]).argmax(1).cpu().tolist()
    names = ev.class_names
    captions = {k: [f"pred: {names[p]}" for p in v] for k, v in preds.items()}
    what = f"class '{names[cls]}'" if cls is not None else "random images"
    where = "the last stage" if stage == -1 else f"stage {stage}"
    title = f"Eigen-CAM of {where} on {data} ({split}), {what}"
    paths = plot_eigencam_grid(_denormalize(batch["image"], ev.stats), maps, Path(out) / "eigencam", title,
                               row_labels=[f"#{int(i)} ({names[int(y)]})" for i, y in zip(idx, batch["label"].cpu())],
                               captions=captions)
    info = {"data": data, "split": split, "class": None if cls is None else names[cls], "stage": stage,
            "center": center, "seed": seed, "indices": [int(i) for i in idx], "checkpoints": dict(checkpoints),
            "predictions": {k: [names[p] for p in v] for k, v in preds.items()},
            "map_stats": map_statistics(maps), "figures": [str(p) for p in paths]}
    write_json(Path(out) / "eigencam.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    from mcmi.analysis.common import add_data_args, parse_named

    p = argparse.ArgumentParser(prog="mcmi analyze eigencam", description="Eigen-CAM of MLL vs MCMI teachers (paper Fig. 3)")
    p.add_argument("checkpoints", nargs="+", help="NAME=CHECKPOINT (e.g. MLL=runs/t/mll/last.pt MCMI=runs/t/mcmi/last.pt)")
    add_data_args(p, split="test")
    p.add_argument("--class", dest="class_name", help="class name or index (default: random images)")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", type=int, default=-1, help="index into Features.stages (default: the last)")
    p.add_argument("--center", action="store_true", help="subtract channel means before the SVD (PCA proper)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import yaml

    info = eigencam_figure(parse_named(args.checkpoints, ("MLL", "MCMI")), args.data, args.out, args.root, args.split,
                           args.class_name, args.num_images, args.seed, args.stage, args.center, args.device,
                           yaml.safe_load(args.class_groups) if args.class_groups else None)
    print(json.dumps({k: info[k] for k in ("class", "indices", "figures")}))
    return 0
