"""Small models, loaders, data sets and comparisons shared by several test files.

Test modules import these as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``;
processes started with ``torch.multiprocessing.spawn`` inherit that path).
"""

from __future__ import annotations

import csv
import gc
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mcmi.engine import load_checkpoint, read_jsonl
from mcmi.models.base import MODELS, FeatureModel, Features, register_model

NUM_CLASSES, IN_DIM = 5, 8


class Crash(Exception):
    """Simulated interruption (preemption, OOM kill) raised by the loader."""


class ToyLoader:
    """Minimal stateful loader: dict batches, order from a generator seeded by (seed, epoch).

    ``noise`` adds Gaussian input noise drawn from torch's global RNG, so an exact resume also
    needs the trainer to restore that RNG. ``crash_at=(epoch, batch)`` raises :class:`Crash`.
    """

    def __init__(self, x, y, batch_size=16, seed=0, shuffle=True, noise=0.0, crash_at=None):
        self.x, self.y, self.bs = x, y, batch_size
        self.seed, self.shuffle, self.noise, self.crash_at = seed, shuffle, noise, crash_at
        self.epoch, self.position = 0, 0

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def set_epoch(self, epoch):
        self.epoch, self.position = epoch, 0

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, s):
        self.epoch, self.position = s["epoch"], s["position"]

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = (
            torch.randperm(len(self.x), generator=g) if self.shuffle else torch.arange(len(self.x))
        )
        while self.position < len(self):
            i = self.position
            if self.crash_at == (self.epoch, i):
                raise Crash(f"crash at epoch {self.epoch} batch {i}")
            idx = perm[i * self.bs : (i + 1) * self.bs]
            x = self.x[idx]
            if self.noise:
                x = x + self.noise * torch.randn(x.shape)
            self.position += 1
            yield {"image": x, "label": self.y[idx], "index": idx}
        self.position = 0


class TinyNet(FeatureModel):
    """Two-layer net with dropout (exercises the torch RNG on resume); inputs are flattened, so
    it also takes images (``in_dim`` = C*H*W)."""

    def __init__(self, in_dim=IN_DIM, num_classes=NUM_CLASSES, hidden=32, p=0.2):
        super().__init__()
        self.fc = nn.Linear(in_dim, hidden)
        self.drop = nn.Dropout(p)
        self.classifier = nn.Linear(hidden, num_classes)
        self.stage_channels, self.num_features, self.num_classes = [hidden], hidden, num_classes

    def forward_features(self, x):
        z = self.fc(x.flatten(1))
        h = self.drop(z.relu())
        return Features(logits=self.classifier(h), stages=[h], preact=[z], pooled=h)


TINY_MODEL = "tests_tiny_net"
"""A registered name for :class:`TinyNet` without dropout or batch norm (recipes of the tests
refer to it: ``model.name=tests_tiny_net model.args.in_dim=48``). Without batch norm, data
parallel training over several processes is the same computation as one process on the
global batch."""

if TINY_MODEL not in MODELS:

    @register_model(TINY_MODEL)
    def _tiny_net(num_classes: int, in_dim: int = IN_DIM, hidden: int = 32) -> TinyNet:
        return TinyNet(in_dim, num_classes, hidden, p=0.0)


class ConvNet(FeatureModel):
    """A stem and 3 conv stages (32, 32, 16, 8 px for 32x32 inputs): the layout of the CIFAR zoo,
    small enough for a distiller step in milliseconds."""

    def __init__(self, widths=(4, 4, 8, 8), num_classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(b))
            for a, b, s in zip(widths[:-1], widths[1:], (1, 2, 2)))
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.stage_channels = list(widths)
        self.num_features = widths[-1]
        self.num_classes = num_classes

    def forward_features(self, x):
        pre = self.stem(x)
        x = torch.relu(pre)
        stages, preact = [x], [pre]
        for block in self.blocks:
            pre = block(x)
            x = torch.relu(pre)
            stages.append(x)
            preact.append(pre)
        pooled = x.mean(dim=(2, 3))
        return Features(self.classifier(pooled), stages, preact, pooled)


def toy_data(n=64, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(NUM_CLASSES, IN_DIM, generator=torch.Generator().manual_seed(123)) * 2.0
    y = torch.arange(n) % NUM_CLASSES
    x = means[y] + spread * torch.randn(n, IN_DIM, generator=g)
    return x, y


def write_npz(path: str | Path, n_train: int = 64, n_test: int = 32, size: int = 8,
              classes: int = 4, seed: int = 0, class_sorted: bool = False) -> Path:
    """An image archive for ``data.name=npz``: ``classes`` classes whose uint8 images differ in
    mean colour (learnable in a few steps); labels cycle through the classes, so every class
    is present and evenly split over two processes. ``class_sorted``: rows grouped by class,
    as in the bundled archives."""
    rng = np.random.default_rng(seed)
    path = Path(path)

    def make(n):
        y = np.arange(n) % classes
        if class_sorted:
            y = np.sort(y)
        else:
            rng.shuffle(y)
        x = rng.integers(0, 60, (n, size, size, 3)) + (y[:, None, None, None] * (190 // classes))
        return x.astype(np.uint8), y.astype(np.int16)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    np.savez_compressed(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    return path


def rows(out_dir):
    """The ``metrics.jsonl`` rows of a run without their wall times."""
    return [
        {k: v for k, v in r.items() if k != "time_s"} for r in read_jsonl(Path(out_dir) / "metrics.jsonl")
    ]


def csv_rows(out_dir) -> list[dict[str, str]]:
    """The ``metrics.csv`` rows of a run without their wall times."""
    with open(Path(out_dir) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def assert_same_tensors(a: Any, b: Any, where: str = "") -> None:
    """``a`` and ``b`` (nested dicts/lists of tensors and plain values) are equal, tensors bit for
    bit (``torch.equal``)."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_training_state(run_a: Path, run_b: Path) -> None:
    """Two run folders end with identical ``last.pt`` (model, optimizer, schedule, position),
    identical ``best.pt`` weights and identical metric rows (wall times aside)."""
    a, b = load_checkpoint(Path(run_a) / "last.pt"), load_checkpoint(Path(run_b) / "last.pt")
    for key in ("method", "optimizer", "scheduler", "scaler", "epoch", "step_in_epoch", "global_step",
                "best", "history"):
        if key == "history":
            strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
            assert strip(a[key]) == strip(b[key])
        else:
            assert_same_tensors(a[key], b[key], key)
    best_a, best_b = load_checkpoint(Path(run_a) / "best.pt"), load_checkpoint(Path(run_b) / "best.pt")
    assert best_a["epoch"] == best_b["epoch"]
    assert_same_tensors(best_a["method"], best_b["method"], "best.method")
    assert rows(run_a) == rows(run_b)
    assert csv_rows(run_a) == csv_rows(run_b)


@contextmanager
def gloo_group(store: str, rank: int, world: int):
    """One rank's membership of a gloo group of ``world`` processes, torn down in order.

    Torch objects that hold the group (DDP wrappers, trainers) must be gone before the block
    ends; run the work in a function so its locals die on return. The teardown is
    :func:`mcmi.engine.distributed.cleanup`: a barrier first on success, so no rank leaves while
    its peer still has traffic in flight.
    """
    import torch.distributed as dist

    from mcmi.engine.distributed import cleanup

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        yield
    except BaseException:
        cleanup(success=False)
        raise
    gc.collect()  # DDP wrappers caught in reference cycles release the group now, not after it
    cleanup()
