"""Which images a teacher's train-set LL and CMI are measured on: two views of the training set.

The paper reports its teachers' LL and CMI "over the training set" (Table 1) without saying more;
its analysis script (ICLRMCMI ``CIFAT-100KD/MTCMI.py``) measures them on the *augmented* training
loader (``get_cifar100_dataloaders``: random crop with 4-pixel padding and horizontal flip,
shuffled) with the model in eval mode. Both views are offered:

- ``train-plain`` (the default: what the paper's text says, reproducible with no seed, and the
  view of every report committed so far): every training image once, unaugmented;
- ``train-augmented`` (the paper's script): every training image once through the data set's
  training augmentation (:func:`mcmi.data.transforms.default_augment`; for images up to 64 px
  random crop with padding H/8 and flip), drawn from ``seed`` (epoch 0 of a
  :class:`~mcmi.data.TensorLoader`: the same seed, batch size and data give the same draws), the
  model in eval mode (:func:`mcmi.metrics.evaluate` always evaluates so). The order does not
  change any figure, so the images are not shuffled.

Reports name the view their numbers were computed in (:func:`views_sentence`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TRAIN_VIEWS = ("train-plain", "train-augmented")
DEFAULT_TRAIN_VIEW = "train-plain"

#: Said beside train-set figures in every report.
PAPER_VIEW_NOTE = ("the paper's analysis script (ICLRMCMI MTCMI.py) measures teachers on the augmented training "
                   "loader in eval mode (view train-augmented); its text says only \"over the training set\"")


def check_view(view: str, what: str = "view") -> str:
    """``view`` if it is one of :data:`TRAIN_VIEWS`, else ``ValueError`` naming ``what``."""
    if view not in TRAIN_VIEWS:
        raise ValueError(f"{what} must be one of {list(TRAIN_VIEWS)}, got {view!r}")
    return view


def train_view_loader(dataset: Any, view: str, batch_size: int, *, device: Any = "cpu",
                      stats: tuple[Sequence[float], Sequence[float]] | None = None, seed: int = 0,
                      indices: Any = None):
    """A loader over ``dataset`` (a training set) in ``view``: unaugmented, or each image once
    through the training augmentation drawn from ``seed``; unshuffled either way."""
    from mcmi.data import TensorLoader

    check_view(view)
    augmented = view == "train-augmented"
    return TensorLoader(dataset, batch_size, shuffle=False, augment=augmented, seed=seed if augmented else 0,
                        device=device, stats=stats, indices=indices)


def describe_view(view: str, seed: int | None = 0) -> str:
    """The view in words, for reports."""
    check_view(view)
    if view == "train-plain":
        return "the unaugmented training set (view train-plain: every image once, as stored)"
    return (f"the training set through the training augmentation (view train-augmented: every image once, one "
            f"random crop/flip draw per image from seed {0 if seed is None else seed}; model in eval mode, as "
            "the paper's analysis script)")


def view_of(evaluation: Mapping[str, Any]) -> tuple[str, int | None]:
    """(view, seed) a ``teacher_eval.json`` was computed in; files written before views were
    recorded were computed unaugmented (``train-plain``)."""
    view = evaluation.get("view") or DEFAULT_TRAIN_VIEW
    return str(view), (evaluation.get("view_seed") if view == "train-augmented" else None)


def views_sentence(evaluations: Iterable[Mapping[str, Any] | None], what: str = "Teacher train LL and CMI") -> str:
    """``"<what>: on <view in words>; <the paper's view>."`` for the evaluations that exist (a
    grid whose teachers were measured in different views lists each)."""
    seen = list(dict.fromkeys(view_of(e) for e in evaluations if e is not None))
    if not seen:
        return f"{what}: not measured yet; {PAPER_VIEW_NOTE}."
    views = "; ".join(describe_view(v, s) for v, s in seen)
    mixed = " (teachers measured in different views)" if len(seen) > 1 else ""
    return f"{what}: on {views}{mixed}; {PAPER_VIEW_NOTE}."


__all__ = ["DEFAULT_TRAIN_VIEW", "PAPER_VIEW_NOTE", "TRAIN_VIEWS", "check_view", "describe_view",
           "train_view_loader", "view_of", "views_sentence"]
