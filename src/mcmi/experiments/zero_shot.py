"""Zero-shot KD (paper Sec. 6.2, A.11.4: Table 9, Figs. 4 and 14-19).

The teacher (MLL, and its MCMI fine-tune) sees the whole training set; each student distils with
every sample of ``k`` classes removed from its training set (``data.drop_classes``), keeps the
full classifier head, and is tested on all classes. The report gives, per number of dropped
classes, the student's accuracy on the dropped classes and on the kept ones (Table 9's
"dropped / kept"), and with at most 20 classes the confusion matrices of Fig. 4 / Figs. 14-19.

Which classes are dropped: with ``drop_order`` (the paper's CIFAR-10 scripts drop 9, 7, 5, 3, 1, 0
in that order), dropping ``k`` drops its first ``k``; otherwise ``k`` classes are drawn from a seed
(:func:`~mcmi.experiments.train.pick_classes`): the run's seed when ``vary_classes_with_seed``
(Table 9 averages over 5 seeds), else ``drop_seed`` for every run. Draws for the same seed are
nested (the 10 classes dropped include the 5). Accuracies are those of the last epoch's
checkpoint on the test set, from ``class_eval.json`` written beside each student run.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mcmi.experiments.shots import Cell, ShotGridConfig, plan_cells
from mcmi.grid.experiment import Experiment
from mcmi.grid.plan import PlannedRun

log = logging.getLogger(__name__)

#: The paper's CIFAR-10 scripts (ZeroShot/scripts): classes dropped in this order.
PAPER_CIFAR10_DROP_ORDER = [9, 7, 5, 3, 1, 0]
#: Table 9 (CIFAR-100, WRN-40-2 -> WRN-16-2, KD, 5 seeds): dropped classes -> (dropped %, kept %).
PAPER_TABLE9: dict[str, dict[int, tuple[float, float]]] = {
    "mll": {5: (0.16, 75.02), 10: (2.70, 75.82), 20: (1.63, 76.28), 30: (1.11, 80.15), 40: (1.74, 80.42),
            50: (0.87, 82.38)},
    "mcmi": {5: (25.64, 75.08), 10: (32.78, 75.78), 20: (30.61, 76.22), 30: (21.72, 80.27), 40: (23.74, 80.79),
             50: (22.26, 82.46)},
}


@dataclass
class ZeroShotConfig(ShotGridConfig):
    """The zero-shot grid: ``drop_counts`` x methods x teacher kinds x seeds (see the module notes)."""

    drop_counts: list[int] = field(default_factory=lambda: [5])
    drop_order: list[int] | None = None
    vary_classes_with_seed: bool = True
    drop_seed: int = 0

    def __post_init__(self) -> None:
        self.name = self.name or "zero_shot"
        super().__post_init__()
        if not self.drop_counts or any(k < 1 for k in self.drop_counts) or len(set(self.drop_counts)) != len(self.drop_counts):
            raise ValueError(f"drop_counts must list distinct numbers >= 1, got {self.drop_counts}")
        if self.drop_order is not None:
            if len(set(self.drop_order)) != len(self.drop_order):
                raise ValueError(f"drop_order lists a class twice: {self.drop_order}")
            if max(self.drop_counts) > len(self.drop_order):
                raise ValueError(f"drop_counts go up to {max(self.drop_counts)} but drop_order has "
                                 f"{len(self.drop_order)} classes")

    def cells(self) -> list[Cell]:
        def data_for(k: int):
            if self.drop_order is not None:
                return lambda seed: {"drop_classes": sorted(self.drop_order[:k])}
            return lambda seed: {"drop_num_classes": k,
                                 "drop_seed": seed if self.vary_classes_with_seed else self.drop_seed}

        return [Cell(f"drop{k}", f"{k} dropped", data_for(k), float(k)) for k in sorted(self.drop_counts)]


# ------------------------------------------------------------------------------ evaluation
def evaluate_student(run: PlannedRun, checkpoint: str = "last") -> dict[str, Any]:
    """Test accuracy of a student checkpoint on all classes, on its dropped classes and on the
    kept ones, per-class accuracy and the confusion matrix."""
    import torch

    from mcmi.data import TensorLoader, dataset_stats
    from mcmi.experiments.train import load_datasets, resolve_device
    from mcmi.metrics import evaluate
    from mcmi.models.io import load_model

    spec = run.config.data
    dev = resolve_device(run.config.device)
    train, test = load_datasets(spec)
    dropped = spec.dropped_classes(train.num_classes)
    kept = [c for c in range(train.num_classes) if c not in set(dropped)]
    stats = dataset_stats(train, root=spec.root)
    model = load_model(run.out_dir / f"{checkpoint}.pt", num_classes=train.num_classes,
                       normalization=(stats.mean, stats.std)).to(dev)
    loader = TensorLoader(test, spec.eval_batch_size, augment=False, device=dev, stats=(stats.mean, stats.std))
    with torch.no_grad():
        res = evaluate(model, loader, train.num_classes, dev)
    return {"checkpoint": checkpoint, "dropped": dropped, "accuracy": res.accuracy,
            "accuracy_dropped": res.accuracy_on(dropped), "accuracy_kept": res.accuracy_on(kept),
            "per_class_accuracy": res.per_class_accuracy, "confusion": res.confusion.tolist(),
            "log_likelihood": res.log_likelihood, "cmi": res.cmi, "classes": list(train.classes)}


def ensure_class_eval(run: PlannedRun) -> dict[str, Any]:
    """``class_eval.json`` of a finished student, computed once (a rerun of the run removes it)."""
    from mcmi.io import write_json

    path = run.out_dir / "class_eval.json"
    summary = run.out_dir / "summary.json"
    if path.is_file() and path.stat().st_mtime_ns >= summary.stat().st_mtime_ns:
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    res = evaluate_student(run)
    write_json(path, res)
    return res


def measure(cfg: ZeroShotConfig, runs: Sequence[PlannedRun]) -> None:
    """``class_eval.json`` (accuracy on the dropped and the kept classes, confusion) of every
    finished student that lacks an up-to-date one; a failure is logged, the report shows the run
    as missing."""
    for run in runs:
        if run.stage == "student" and (run.out_dir / "summary.json").is_file():
            try:
                ensure_class_eval(run)
            except Exception:  # noqa: BLE001 -- a report must still be written
                log.exception("%s: evaluation after training failed", run.key)


EXPERIMENT = Experiment(
    command="zero-shot", config_cls=ZeroShotConfig, default_config="zero_shot_cifar100",
    plan=lambda cfg: plan_cells(cfg, cfg.cells()), report="mcmi.reports.zero_shot", measure=measure)

__all__ = ["EXPERIMENT", "ZeroShotConfig", "ensure_class_eval", "evaluate_student", "measure"]
