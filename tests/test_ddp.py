"""Two processes (gloo on the CPU, ``torch.multiprocessing.spawn``) compute what one process
computes on the same data:

- the streaming evaluator (``CMIState`` + all-reduce): accuracy, LL, CMI and per-class CMI of
  data split unevenly over the ranks, each rank missing some classes, equal the single-process
  figures;
- an MCMI fine-tune through ``run_training`` (``distributed_context`` from the torchrun
  environment, the rank's shard of the loader, class centroids all-reduced in ``prepare``,
  DistributedDataParallel): 2 ranks x batch 8 end with the weights, centroids and metric rows
  of 1 process x batch 16 on the same global batches (a model without batch norm, no
  augmentation, so both are the same computation up to float rounding).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from helpers import NUM_CLASSES, TINY_MODEL, TinyNet, gloo_group, toy_data, write_npz

from mcmi.config import load_config
from mcmi.engine import load_checkpoint, read_jsonl
from mcmi.experiments.train import RunConfig, run_training
from mcmi.metrics import evaluate

WORLD = 2
GLOBAL_BATCH = 16


def eval_model() -> TinyNet:
    torch.manual_seed(3)
    return TinyNet(p=0.0)


def eval_data() -> tuple[torch.Tensor, torch.Tensor]:
    """37 samples sorted by label: split in two contiguous shards of 20 and 17, each rank
    lacks some classes (its local centroids of those are undefined). The shards' batches are
    the single process's batches (boundaries at multiples of 5), so the logits are the same
    and only the order of the float64 sums differs."""
    x, y = toy_data(37, seed=5)
    order = torch.argsort(y, stable=True)
    return x[order], y[order]


def batches(x, y, size=5):
    return [{"image": x[i:i + size], "label": y[i:i + size]} for i in range(0, len(x), size)]


def mcmi_overrides(data: Path, batch_size: int, out: Path) -> list[str]:
    return [f"model.name={TINY_MODEL}", "model.args.in_dim=48", "method=mcmi", "method_args.lam=0.5",
            "data.name=npz", f"data.root={data}", f"data.batch_size={batch_size}", "data.eval_batch_size=8",
            "data.augment=false", "train.epochs=2", "train.lr=0.1", "train.milestones=[1]",
            "train.deterministic=true", "train.progress=false", "device=cpu", f"out={out}"]


def _worker(rank: int, world: int, store: str, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))  # as torchrun sets
    with gloo_group(store, rank, world):
        _rank_work(rank, world, data, out)


def _rank_work(rank: int, world: int, data: str, out: str) -> None:
    x, y = eval_data()
    cut = 20
    shard = slice(0, cut) if rank == 0 else slice(cut, None)
    res = evaluate(eval_model(), batches(x[shard], y[shard]), NUM_CLASSES, distributed=True)
    Path(out, f"eval_rank{rank}.json").write_text(json.dumps(res.as_dict(per_class=True)))

    cfg = load_config(RunConfig, None, mcmi_overrides(Path(data), GLOBAL_BATCH // world, Path(out) / "ddp"))
    summary = run_training(cfg, resume=False)
    assert summary["world_size"] == world


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("ddp")
    data = write_npz(root / "tiny4px.npz", n_train=64, n_test=32, size=4, classes=4)
    mp.spawn(_worker, args=(WORLD, str(root / "store"), str(data), str(root)), nprocs=WORLD, join=True)
    return root, data


def same_numbers(a, b, rel=1e-12, abs=1e-12) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_numbers(u, v, rel, abs) for u, v in zip(a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=rel, abs=abs)
    return a == b


@pytest.mark.ddp
def test_sharded_streaming_evaluation_equals_one_process(two_ranks):
    root, _ = two_ranks
    x, y = eval_data()
    single = evaluate(eval_model(), batches(x, y), NUM_CLASSES).as_dict(per_class=True)
    assert single["n"] == 37 and math.isfinite(single["cmi"]) and single["cmi"] > 0
    for rank in range(WORLD):
        got = json.loads((root / f"eval_rank{rank}.json").read_text())
        assert got.keys() == single.keys()
        for key in single:
            assert same_numbers(got[key], single[key]), (rank, key, got[key], single[key])


@pytest.mark.ddp
def test_two_rank_mcmi_finetune_equals_one_process_on_the_global_batch(two_ranks, tmp_path):
    root, data = two_ranks
    ref = tmp_path / "single"
    run_training(load_config(RunConfig, None, mcmi_overrides(data, GLOBAL_BATCH, ref)), resume=False)

    a, b = load_checkpoint(root / "ddp" / "last.pt"), load_checkpoint(ref / "last.pt")
    assert (a["world_size"], b["world_size"]) == (WORLD, 1)
    assert a["global_step"] == b["global_step"] == 2 * 64 // GLOBAL_BATCH
    assert a["method"].keys() == b["method"].keys() and "centroids" in a["method"]
    for key in a["method"]:
        torch.testing.assert_close(a["method"][key], b["method"][key], atol=1e-6, rtol=0, msg=key)
    # the weights moved: the comparison is not between two untouched initializations
    torch.manual_seed(0)
    init = TinyNet(in_dim=48, num_classes=4, p=0.0).state_dict()
    assert not torch.allclose(a["method"]["model.fc.weight"], init["fc.weight"], atol=1e-3)

    rows_a = read_jsonl(root / "ddp" / "metrics.jsonl")
    rows_b = read_jsonl(ref / "metrics.jsonl")
    assert len(rows_a) == len(rows_b) == 2
    for ra, rb in zip(rows_a, rows_b):
        ra.pop("time_s"), rb.pop("time_s")
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-6, abs=1e-6), key
        assert ra["val_acc"] == rb["val_acc"]
