"""Few-shot KD (paper Sec. 6.3: Table 3, Table 12).

The teacher (MLL, and its MCMI fine-tune) sees the whole training set; each student distils from a
fraction alpha of it (``data.train_fraction``), the same images for every teacher kind and seed.
Defaults follow the paper's code: the first alpha * N images in file order (``fraction_mode:
first``; the paper's text says alpha of the samples of each class, which is ``stratified``) and
epochs that keep the full data set's length (``epoch_length: full``: the code reads image
``i mod alpha*N`` for i over all N). The report gives the students' test top-1 (best epoch and
last epoch, mean ± std over seeds) per method, teacher kind and alpha, with the MCMI - MLL gain
(of the means, and paired by seed), and draws top-1 against alpha.

One difference from the paper's code: its CRD memory bank keeps all N entries (indices modulo
alpha*N never reach most of them); here CRD's bank holds the alpha*N images the student sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mcmi.experiments.shots import Cell, ShotGridConfig, plan_cells
from mcmi.grid.experiment import Experiment


@dataclass
class FewShotConfig(ShotGridConfig):
    """The few-shot grid: ``fractions`` x methods x teacher kinds x seeds (see the module notes)."""

    fractions: list[float] = field(default_factory=lambda: [0.05, 0.10, 0.15, 0.25, 0.35, 0.50, 0.75])
    fraction_mode: str = "first"  # "first" (the paper's code) | "stratified" (its text)
    epoch_length: str = "full"

    def __post_init__(self) -> None:
        self.name = self.name or "few_shot"
        super().__post_init__()
        if not self.fractions or any(not 0 < a <= 1 for a in self.fractions) or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions must list distinct values in (0, 1], got {self.fractions}")
        if self.fraction_mode not in ("first", "stratified"):
            raise ValueError(f"fraction_mode must be 'first' or 'stratified', got {self.fraction_mode!r}")
        if self.epoch_length not in ("subset", "full"):
            raise ValueError(f"epoch_length must be 'subset' or 'full', got {self.epoch_length!r}")

    def cells(self) -> list[Cell]:
        def data_for(a: float):
            return lambda seed: {"train_fraction": float(a), "fraction_mode": self.fraction_mode,
                                 "epoch_length": self.epoch_length}

        return [Cell(f"frac{a:g}", f"α = {100 * a:g}%", data_for(a), float(a)) for a in sorted(self.fractions)]


EXPERIMENT = Experiment(
    command="few-shot", config_cls=FewShotConfig, default_config="few_shot_cifar100",
    plan=lambda cfg: plan_cells(cfg, cfg.cells()), report="mcmi.reports.few_shot")

__all__ = ["EXPERIMENT", "FewShotConfig"]
