"""Top-5 accuracy and ECE (Guo et al. 2017, 15 bins) against independent numpy computations, in
batch and streaming form, through ``mcmi.metrics.evaluate`` and merged across shards."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from mcmi.metrics import (
    CalibrationState,
    evaluate,
    expected_calibration_error,
    topk_accuracy,
)


def np_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017) eq. 3, written out: bins (lo, hi], weight |B| / n, |acc - conf|."""
    conf = p.max(1)
    pred = p.argmax(1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.sum() == 0:
            continue
        acc = (pred[in_bin] == y[in_bin]).mean()
        total += in_bin.mean() * abs(acc - conf[in_bin].mean())
    return float(total)


def np_topk(p: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return float(np.mean([y[i] in top[i] for i in range(len(y))]))


def _random(n: int, c: int, seed: int, sharp: float = 1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * sharp
    return logits, rng.integers(0, c, size=n)


CASES = [(7, 5, 0, 1.0), (60, 10, 1, 3.0), (300, 20, 2, 0.3), (257, 100, 3, 5.0)]


@pytest.mark.parametrize("n,c,seed,sharp", CASES)
def test_batch_functions_match_numpy(n, c, seed, sharp):
    logits, y = _random(n, c, seed, sharp)
    p = np_softmax(logits)
    pt, yt = torch.from_numpy(p), torch.from_numpy(y)
    assert expected_calibration_error(pt, yt) == pytest.approx(np_ece(p, y), abs=1e-12)
    assert topk_accuracy(pt, yt, 5) == pytest.approx(np_topk(p, y, 5), abs=1e-12)
    assert topk_accuracy(torch.from_numpy(logits), yt, 5) == pytest.approx(np_topk(p, y, 5), abs=1e-12)
    assert topk_accuracy(pt, yt, 1) == pytest.approx(float((p.argmax(1) == y).mean()), abs=1e-12)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_other_bin_counts(n_bins):
    logits, y = _random(200, 7, 4, 2.0)
    p = np_softmax(logits)
    got = expected_calibration_error(torch.from_numpy(p), torch.from_numpy(y), n_bins=n_bins)
    assert got == pytest.approx(np_ece(p, y, n_bins), abs=1e-12)


def test_ece_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins (13/15, 14/15] and (8/15, 9/15]
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    expected = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6)
    assert expected_calibration_error(p, y) == pytest.approx(expected, abs=1e-12)
    # perfectly calibrated and perfectly confident: 0
    assert expected_calibration_error(torch.eye(3, dtype=torch.float64), torch.arange(3)) == 0.0


def test_upper_bin_edge_is_inclusive():
    # confidence exactly 0.6 = 9/15 goes into bin (8/15, 9/15], as Guo et al.'s boundaries
    conf = torch.tensor([0.6, 1.0, 1 / 15], dtype=torch.float64)
    from mcmi.metrics.calibration import _bin_index

    edges = np.linspace(0, 1, 16)
    ref = [int(np.nonzero((c > edges[:-1]) & (c <= edges[1:]))[0][0]) for c in conf.numpy()]
    assert _bin_index(conf, 15).tolist() == ref == [8, 14, 0]


def test_fewer_than_five_classes_top5_is_nan():
    logits, y = _random(20, 3, 5)
    assert math.isnan(topk_accuracy(torch.from_numpy(logits), torch.from_numpy(y), 5))
    s = CalibrationState(3)
    s.update_logits(torch.from_numpy(logits), torch.from_numpy(y))
    assert math.isnan(s.topk_accuracy()) and math.isfinite(s.ece())


def test_streaming_in_batches_and_merged_shards_equal_one_pass():
    logits, y = _random(203, 12, 6, 2.0)
    lt, yt = torch.from_numpy(logits), torch.from_numpy(y)
    whole = CalibrationState(12)
    whole.update_logits(lt, yt)
    shards = [CalibrationState(12), CalibrationState(12)]
    for i in range(0, 203, 17):  # uneven batches, alternating "ranks"
        shards[(i // 17) % 2].update_logits(lt[i:i + 17], yt[i:i + 17])
    merged = shards[0].merge(shards[1])  # what all_reduce sums
    assert merged.n == whole.n == 203
    assert merged.ece() == pytest.approx(whole.ece(), abs=1e-12)
    assert merged.topk_accuracy() == whole.topk_accuracy()
    p = np_softmax(logits)
    assert whole.ece() == pytest.approx(np_ece(p, y), abs=1e-12)
    assert whole.topk_accuracy() == pytest.approx(np_topk(p, y), abs=1e-12)
    rel = whole.reliability()
    assert len(rel) == 15 and sum(b["count"] for b in rel) == 203


def test_temperature_applies_to_both():
    logits, y = _random(100, 8, 7, 2.0)
    s = CalibrationState(8)
    s.update_logits(torch.from_numpy(logits), torch.from_numpy(y), temperature=4.0)
    assert s.ece() == pytest.approx(np_ece(np_softmax(logits / 4.0), y), abs=1e-12)


class _Lookup(nn.Module):
    """A "model" returning stored logits for the sample indices it is given as images."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x):
        return self.table[x.long().reshape(-1)]


@pytest.mark.parametrize("c", [3, 10])
def test_evaluate_reports_top5_and_ece(c):
    logits, y = _random(95, c, 8, 2.5)
    model = _Lookup(torch.from_numpy(logits).float())
    idx = torch.arange(95)
    batches = [{"image": idx[i:i + 20].float(), "label": torch.from_numpy(y[i:i + 20])} for i in range(0, 95, 20)]
    res = evaluate(model, batches, c)
    p = np_softmax(logits.astype(np.float32).astype(np.float64))
    assert res.ece == pytest.approx(np_ece(p, y), abs=1e-9)
    d = res.as_dict()
    assert {"top5", "ece"} <= d.keys()
    if c < 5:
        assert math.isnan(res.top5) and math.isnan(d["top5"])
    else:
        assert res.top5 == pytest.approx(np_topk(p, y), abs=1e-12)
        assert res.top5 >= res.accuracy


@pytest.mark.parametrize("classes", [4, 6])
def test_mcmi_evaluate_prints_top5_and_ece(tmp_path, classes):
    from helpers import TINY_MODEL, write_npz

    from mcmi.config import load_config
    from mcmi.experiments.evaluate import evaluate_checkpoint
    from mcmi.experiments.train import RunConfig, run_training

    data = write_npz(tmp_path / "d.npz", n_train=48, n_test=30, size=4, classes=classes)
    cfg = load_config(RunConfig, None, [f"model.name={TINY_MODEL}", "model.args.in_dim=48", "data.name=npz",
                                        f"data.root={data}", "data.batch_size=16", "data.augment=false",
                                        "train.epochs=1", "train.progress=false", "device=cpu",
                                        f"out={tmp_path / 'run'}"])
    summary = run_training(cfg, resume=False)
    out = json.loads(evaluate_checkpoint(tmp_path / "run" / "last.pt", "npz", root=str(data), device="cpu"))
    assert out["accuracy"] == pytest.approx(summary["last_acc"]) and out["n"] == 30
    assert out["ece"] == pytest.approx(summary["last_ece"]) and 0 <= out["ece"] <= 1
    if classes < 5:
        assert out["top5"] is None and summary["last_top5"] is None  # NaN: null; no val_top5 column
    else:
        assert out["top5"] == pytest.approx(summary["last_top5"]) and out["top5"] >= out["accuracy"]
