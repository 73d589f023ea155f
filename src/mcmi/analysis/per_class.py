"""Per-class CMI (paper A.3: CMI(f, Y=y), the mean KL(P_x || Q^y) over class y) of one or more
teachers as a Markdown table: the classes with the highest and the lowest CMI of the first
teacher, with every teacher's value and accuracy on that class, and class names where the data
set has them (CIFAR lists, ``class_names`` of npz archives such as tinyimagenet100-32px)."""
from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["per_class_cmi_table", "per_class_report", "main"]


def _num(x: float, digits: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def per_class_cmi_table(per_class: Mapping[str, Sequence[float]], class_names: Sequence[str] | None = None,
                        k: int = 10, sort_by: str | None = None,
                        accuracy: Mapping[str, Sequence[float]] | None = None) -> str:
    """Markdown: the ``k`` classes of highest and the ``k`` of lowest per-class CMI under model
    ``sort_by`` (default: the first), one CMI column (and accuracy column, when given) per model.
    Classes whose value is NaN (absent from the data) are left out; when there are at most 2k
    classes all are listed once, highest first."""
    from mcmi.reports.tables import markdown_table

    names = list(per_class)
    if not names:
        raise ValueError("per_class is empty")
    key = sort_by or names[0]
    values = [float(v) for v in per_class[key]]
    c = len(values)
    if any(len(per_class[n]) != c for n in names):
        raise ValueError("every model needs one value per class")
    labels = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    present = [i for i in range(c) if not math.isnan(values[i])]
    order = sorted(present, key=lambda i: (-values[i], i))
    header = ["rank", "class"] + [f"CMI {n}" for n in names] + ([f"acc. {n} (%)" for n in names] if accuracy else [])

    def row(rank: int, i: int) -> list[str]:
        cells = [str(rank), f"{labels[i]} ({i})"] + [_num(float(per_class[n][i]), 4) for n in names]
        if accuracy:
            cells += [_num(100 * float(accuracy[n][i]), 2) for n in names]
        return cells

    if len(order) <= 2 * k:
        return markdown_table(header, [row(r, i) for r, i in enumerate(order, 1)])
    top = [row(r, i) for r, i in enumerate(order[:k], 1)]
    bottom = [row(len(order) - k + r, i) for r, i in enumerate(order[-k:], 1)]
    gap = ["…"] * len(header)
    return markdown_table(header, top + [gap] + bottom)


def per_class_report(checkpoints: Mapping[str, str], data: str, out: str | Path, root: str | None = None,
                     split: str = "train", k: int = 10, device: str = "auto", batch_size: int = 256,
                     class_groups: list[list[int]] | None = None, command: str = "", augment: bool = False,
                     augment_seed: int = 0) -> Path:
    """Evaluate every teacher on ``split`` (default: the training set, where the paper measures its
    teachers' CMI; unaugmented, or with ``augment`` the view ``train-augmented`` of the paper's
    analysis script, :mod:`mcmi.metrics.train_view`) and write ``out/per_class_cmi.md`` and
    ``per_class_cmi.json``; both name the view."""
    from mcmi.analysis.common import load_eval_data, load_models
    from mcmi.experiments.train import resolve_device
    from mcmi.io import write_json, write_text
    from mcmi.metrics import evaluate

    dev = resolve_device(device)
    ev = load_eval_data(data, root, split, class_groups, augment, augment_seed)
    results = {}
    for name, model in load_models(checkpoints, ev.num_classes, dev, ev.stats).items():
        results[name] = evaluate(model, ev.loader(None, batch_size, dev), ev.num_classes, dev)
    table = per_class_cmi_table({n: r.per_class_cmi for n, r in results.items()}, ev.class_names, k,
                                accuracy={n: r.per_class_accuracy for n, r in results.items()})
    overall = "\n".join(f"- {n}: CMI {r.cmi:.4f} nats, LL {r.log_likelihood:.4f}, accuracy {100 * r.accuracy:.2f}% "
                        f"(`{checkpoints[n]}`)" for n, r in results.items())
    text = (f"# Per-class CMI on {data} ({split}, {len(ev.dataset)} images, {ev.num_classes} classes)\n\n"
            f"CMI(f, Y=y) of paper A.3 in nats, sorted by the first model ({next(iter(results))}), on "
            f"{ev.describe()}.\n\n"
            f"{overall}\n\n{table}\n" + (f"\nCommand: `{command}`\n" if command else ""))
    out = Path(out)
    write_json(out / "per_class_cmi.json", {
        "data": data, "split": split, "view": ev.view, "view_seed": ev.view_seed if ev.view == "train-augmented" else None,
        "classes": ev.class_names,
        "models": {n: {"checkpoint": checkpoints[n], **r.as_dict(per_class=True)} for n, r in results.items()}})
    return write_text(out / "per_class_cmi.md", text)


def main(argv: list[str] | None = None) -> int:
    import shlex
    import sys

    import yaml

    from mcmi.analysis.common import add_data_args, parse_named

    p = argparse.ArgumentParser(prog="mcmi analyze per-class", description="per-class CMI table of teachers (paper A.3)")
    p.add_argument("checkpoints", nargs="+", help="NAME=CHECKPOINT (e.g. MLL=... MCMI=...)")
    add_data_args(p, split="train")
    p.add_argument("-k", type=int, default=10, help="classes listed at each end (default 10)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    path = per_class_report(parse_named(args.checkpoints, ("MLL", "MCMI")), args.data, args.out, args.root, args.split,
                            args.k, args.device, args.batch_size,
                            yaml.safe_load(args.class_groups) if args.class_groups else None,
                            command="mcmi analyze per-class " + command, augment=args.augment,
                            augment_seed=args.augment_seed)
    print(path.read_text())
    return 0
