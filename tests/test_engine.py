"""Tests of the training engine: schedules, checkpoints, exact resume, divergence, MCMI sign."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch
from helpers import (  # noqa: E402  (tests/ is on sys.path)
    IN_DIM,
    NUM_CLASSES,
    Crash,
    TinyNet,
    ToyLoader,
    assert_same_weights,
    gloo_group,
    rows,
    toy_data,
)
from torch import nn

from mcmi.engine import (
    CheckpointError,
    LRSchedule,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
    load_latest_checkpoint,
    model_state_from_checkpoint,
    previous_path,
    read_jsonl,
    save_checkpoint,
    seed_everything,
)
from mcmi.methods import MCMI, MLL
from mcmi.models import create_model
from mcmi.models.base import FeatureModel, Features


def loaders(crash_at=None, noise=0.3):
    xtr, ytr = toy_data(64, seed=1)
    xte, yte = toy_data(40, seed=2)
    return ToyLoader(xtr, ytr, noise=noise, crash_at=crash_at), ToyLoader(
        xte, yte, batch_size=20, shuffle=False
    )


def cfg(**kw):
    base = {"epochs": 4, "lr": 0.1, "schedule": "step", "milestones": (2,), "deterministic": True}
    base["seed"] = 7
    base.update(kw)
    return TrainConfig(**base)


def run(out_dir, config, crash_at=None, resume=False, model_fn=TinyNet, method_fn=MLL):
    seed_everything(0)
    method = method_fn(model_fn())
    train, test = loaders(crash_at)
    trainer = Trainer(method, train, test, config, out_dir, NUM_CLASSES)
    return trainer, trainer.fit(resume=resume)


# ----------------------------------------------------------------------------- training


def test_loss_decreases_and_files_written(tmp_path, caplog):
    config = cfg(epochs=6, schedule="constant", log_tensorboard=True)
    with caplog.at_level(logging.WARNING):
        trainer, summary = run(
            tmp_path, config, model_fn=lambda: create_model("mlp", NUM_CLASSES, in_dim=IN_DIM)
        )
    hist = trainer.history
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["train_acc"] > hist[0]["train_acc"]
    assert summary["last_acc"] >= 0.7
    for name in (
        "last.pt",
        "last.prev.pt",
        "best.pt",
        "metrics.csv",
        "metrics.jsonl",
        "summary.json",
        "config.json",
    ):
        assert (tmp_path / name).is_file(), name
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 7 and "val_cmi" in csv_lines[0] and "train_loss_ce" in csv_lines[0]
    disk = json.loads((tmp_path / "summary.json").read_text())
    assert disk["best_acc"] == max(r["val_acc"] for r in hist)
    assert disk["best_epoch"] in range(1, 7)
    assert disk["last_acc"] == hist[-1]["val_acc"] and disk["last_cmi"] == hist[-1]["val_cmi"]
    assert disk["last_ll"] == hist[-1]["val_ll"] and disk["wall_time_s"] > 0
    assert disk["config"]["train"]["epochs"] == 6
    if not any("tensorboard" in m.lower() for m in caplog.messages):  # tensorboard installed
        assert (tmp_path / "tb").is_dir()
    best = load_checkpoint(tmp_path / "best.pt", expected={"num_classes": NUM_CLASSES})
    assert best["epoch"] == disk["best_epoch"]
    model = create_model("mlp", NUM_CLASSES, in_dim=IN_DIM)
    model.load_state_dict(model_state_from_checkpoint(best))


# ----------------------------------------------------------------------------- schedules


def _opt(lr):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_step_schedule_paper_values():
    s = LRSchedule(_opt(0.05), "step", epochs=240, milestones=(150, 180, 210), gamma=0.1)
    for epoch, lr in [
        (0, 0.05),
        (149, 0.05),
        (150, 0.005),
        (179, 0.005),
        (180, 5e-4),
        (209, 5e-4),
        (210, 5e-5),
        (239, 5e-5),
    ]:
        assert s.set_position(epoch)[0] == pytest.approx(lr, rel=1e-12), epoch
        assert s.optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=1e-12)


def test_cosine_schedule_and_warmup_and_state():
    s = LRSchedule(_opt(1.0), "cosine", epochs=10)
    assert s.lr_at(0)[0] == pytest.approx(1.0)
    assert s.lr_at(5)[0] == pytest.approx(0.5)
    assert s.lr_at(10)[0] == pytest.approx(0.0, abs=1e-12)
    assert s.lr_at(9)[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))
    w = LRSchedule(_opt(1.0), "cosine", epochs=12, warmup_epochs=2, warmup_start_factor=0.1)
    assert [round(w.lr_at(e)[0], 10) for e in (0, 1, 2)] == [0.1, 0.55, 1.0]
    assert w.lr_at(7)[0] == pytest.approx(0.5)  # cosine runs over epochs 2..12
    ps = LRSchedule(
        _opt(1.0),
        "step",
        epochs=4,
        milestones=(2,),
        warmup_epochs=1,
        per_step=True,
        steps_per_epoch=4,
    )
    assert ps.lr_at(0, 2)[0] == pytest.approx(0.1 + 0.9 * 0.5)
    assert ps.lr_at(2, 0)[0] == pytest.approx(0.1)
    s.set_position(7)
    s2 = LRSchedule(_opt(123.0), "cosine", epochs=10)
    s2.load_state_dict(s.state_dict())
    assert s2.get_last_lr() == s.get_last_lr() and s2.base_lrs == [1.0]


# ----------------------------------------------------------------------------- exact resume


def test_resume_after_epoch_is_bit_identical(tmp_path):
    ref, _ = run(tmp_path / "ref", cfg())
    with pytest.raises(Crash):
        run(tmp_path / "cut", cfg(), crash_at=(2, 0))  # epochs 1-2 done and checkpointed
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed, summary = run(tmp_path / "cut", cfg(), resume=True)
    assert summary["resumed_from"].endswith("last.pt")
    assert_same_weights(ref.method, resumed.method)
    assert rows(tmp_path / "ref") == rows(tmp_path / "cut")
    assert_same_weights_optim(ref, resumed)


def assert_same_weights_optim(a: Trainer, b: Trainer):
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for k in sa:
        assert torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"])


def test_mid_epoch_resume_is_bit_identical(tmp_path):
    config = cfg(checkpoint_every_steps=3)  # 4 batches/epoch: step checkpoints mid-epoch
    ref, _ = run(tmp_path / "ref", config)
    with pytest.raises(Crash):
        run(tmp_path / "cut", config, crash_at=(1, 3))
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 2, 6)
    resumed, _ = run(tmp_path / "cut", config, resume=True)
    assert_same_weights(ref.method, resumed.method)
    assert rows(tmp_path / "ref") == rows(tmp_path / "cut")


# ----------------------------------------------------------------------------- checkpoint files


def test_truncated_checkpoint_detected_previous_survives(tmp_path):
    run(tmp_path, cfg(epochs=2))
    last = tmp_path / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(last)
    assert "last.pt" in str(info.value) and "truncated" in str(info.value)
    prev = load_checkpoint(previous_path(last))
    assert prev["epoch"] == 1
    state, used = load_latest_checkpoint(last)
    assert used.name == "last.prev.pt" and state["epoch"] == 1
    # resuming falls back to the previous checkpoint and finishes the run
    _, summary = run(tmp_path, cfg(epochs=2), resume=True)
    assert summary["epochs"] == 2 and summary["resumed_from"].endswith("last.prev.pt")


def test_foreign_and_mismatched_checkpoints(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not an mcmi checkpoint"):
        load_checkpoint(foreign)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(CheckpointError, match="not an mcmi checkpoint"):
        load_checkpoint(tmp_path / "tensor.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt"):
        load_checkpoint(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")
    ok = save_checkpoint(tmp_path / "ok.pt", {"meta": {"model": "resnet8", "num_classes": 10}})
    assert (
        load_checkpoint(ok, expected={"model": "resnet8", "num_classes": 10})["format_version"] == 1
    )
    with pytest.raises(CheckpointError, match=r"ok.pt.*num_classes=10 \(expected 100\)"):
        load_checkpoint(ok, expected={"model": "resnet8", "num_classes": 100})
    # input statistics: compared where the checkpoint records them (older ones do not)
    stats = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert load_checkpoint(ok, expected={"model": "resnet8", "normalization": stats})
    with_stats = save_checkpoint(tmp_path / "stats.pt", {"meta": {"model": "resnet8", "normalization": stats}})
    assert load_checkpoint(with_stats, expected={"normalization": stats})
    with pytest.raises(CheckpointError, match="stats.pt.*normalization="):
        load_checkpoint(with_stats, expected={"normalization": {"mean": [0.4] * 3, "std": [0.25] * 3}})
    # a trainer refuses to resume from another model's checkpoint
    run(tmp_path / "run", cfg(epochs=1))
    other = MLL(create_model("mlp", NUM_CLASSES, in_dim=IN_DIM))
    train, test = loaders()
    with pytest.raises(CheckpointError, match="model='TinyNet'"):
        Trainer(other, train, test, cfg(epochs=1), tmp_path / "run", NUM_CLASSES).fit(resume=True)


def test_atomic_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"v": 1})
    save_checkpoint(path, {"v": 2})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"v": 3})
    monkeypatch.undo()
    assert load_checkpoint(path)["v"] == 2
    assert load_checkpoint(previous_path(path))["v"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.prev.pt",
        "last.pt",
    ]  # no temp files left


# ----------------------------------------------------------------------------- divergence


class NaNAfter(MLL):
    """MLL whose loss becomes NaN at a given (epoch, call) position."""

    def __init__(self, model, at_epoch=1, at_call=2):
        super().__init__(model)
        self.at, self.calls = (at_epoch, at_call), {}

    def forward(self, batch, epoch=0):
        out = super().forward(batch, epoch)
        n = self.calls.get(epoch, 0)
        self.calls[epoch] = n + 1
        if (epoch, n) == self.at:
            out.losses["ce"] = out.losses["ce"] * float("nan")
        return out


def test_nan_loss_raises_and_leaves_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as info:
        run(tmp_path, cfg(epochs=3), method_fn=NaNAfter)
    e = info.value
    assert (e.epoch, e.step, e.term, e.global_step) == (2, 2, "ce", 6)
    assert math.isnan(e.value) and e.checkpoint is not None and "'ce'" in str(e)
    state = load_checkpoint(e.checkpoint, expected={"method": "NaNAfter"})
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["method"].values())


# ----------------------------------------------------------------------------- distributed, MCMI


def test_single_process_ddp_matches_plain_run(tmp_path):
    import torch.distributed as dist

    ref, _ = run(tmp_path / "plain", cfg(epochs=2))
    with gloo_group(str(tmp_path / "store"), 0, 1):
        ddp, _ = run(tmp_path / "ddp", cfg(epochs=2))
        assert dist.is_initialized() and ddp.world_size == 1
        method = ddp.method  # the trainer, which holds the DDP wrapper, goes before the group
        del ddp
    assert_same_weights(ref.method, method)
    assert rows(tmp_path / "plain") == rows(tmp_path / "ddp")


def test_mcmi_finetuning_raises_cmi_over_mll(tmp_path):
    """Sign check of eq. 14: fine-tuning with +lam*CMI ends with a higher CMI on the data it is
    trained on than fine-tuning with cross-entropy alone (which sharpens outputs, lowering CMI)."""
    seed_everything(0)
    pre = TinyNet(p=0.0)
    train, test = loaders(noise=0.0)
    Trainer(
        MLL(pre), train, test, cfg(epochs=5, schedule="constant"), tmp_path / "pre", NUM_CLASSES
    ).fit()
    results = {}
    for name, method_fn in {"mll": MLL, "mcmi": lambda m: MCMI(m, lam=1.0)}.items():
        train, _ = loaders(noise=0.0)
        train_eval = ToyLoader(train.x, train.y, batch_size=32, shuffle=False)
        ft = cfg(epochs=3, lr=0.05, schedule="cosine")
        trainer = Trainer(
            method_fn(copy.deepcopy(pre)), train, train_eval, ft, tmp_path / name, NUM_CLASSES
        )
        results[name] = trainer.fit()
        assert trainer.history[0]["train_loss_ce"] > 0
    assert results["mcmi"]["last_cmi"] > 1.5 * results["mll"]["last_cmi"]
    # the CMI term of the MCMI objective is negative (it is maximized)
    assert all(r["train_loss_cmi"] < 0 for r in read_jsonl(tmp_path / "mcmi" / "metrics.jsonl"))


# ----------------------------------------------------------------------------- other loaders, AMP


class GlobalRNGLoader:
    """Loader without state_dict: shuffles with torch's global RNG like DataLoader(shuffle=True)."""

    def __init__(self, x, y, batch_size=16, crash_at=None):
        self.x, self.y, self.bs, self.crash_at, self.epoch = x, y, batch_size, crash_at, 0

    def __len__(self):
        return math.ceil(len(self.x) / self.bs)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        perm = torch.randperm(len(self.x))
        for i in range(len(self)):
            if self.crash_at == (self.epoch, i):
                raise Crash(f"crash at epoch {self.epoch} batch {i}")
            idx = perm[i * self.bs : (i + 1) * self.bs]
            yield {"image": self.x[idx], "label": self.y[idx], "index": idx}


def test_stateless_loader_mid_epoch_resume_is_bit_identical(tmp_path):
    config = cfg(epochs=3, checkpoint_every_steps=3)
    xtr, ytr = toy_data(64, seed=1)

    def go(out, crash_at=None, resume=False):
        seed_everything(0)
        t = Trainer(
            MLL(TinyNet()),
            GlobalRNGLoader(xtr, ytr, crash_at=crash_at),
            None,
            config,
            out,
            NUM_CLASSES,
        )
        return t, t.fit(resume=resume)

    ref, _ = go(tmp_path / "ref")
    with pytest.raises(Crash):
        go(tmp_path / "cut", crash_at=(1, 3))
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step_in_epoch"] == 2
    resumed, summary = go(tmp_path / "cut", resume=True)
    assert_same_weights(ref.method, resumed.method)
    assert rows(tmp_path / "ref") == rows(tmp_path / "cut")
    assert summary["best_acc"] is None and summary["last_acc"] is None  # no eval loader


def test_tensor_loader_resume_from_initial_and_mid_epoch_checkpoints(tmp_path):
    """The project's TensorLoader (seeded per epoch and batch) with MCMI, whose prepare() makes a
    full pass over the loader before training."""
    data = pytest.importorskip("mcmi.data")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=g, dtype=torch.uint8)
    ds = data.ImageDataset(
        images, torch.arange(40) % NUM_CLASSES, [str(i) for i in range(NUM_CLASSES)], "toy"
    )
    stats = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))

    class CrashingLoader(data.TensorLoader):
        crash_at, armed = None, False  # armed by the trainer's first set_epoch: MCMI.prepare passes

        def set_epoch(self, epoch):
            self.armed = True
            super().set_epoch(epoch)

        def __iter__(self):
            for batch in super().__iter__():
                if self.armed and self.crash_at == (self.epoch, self.state_dict()["batch"] - 1):
                    raise Crash(self.crash_at)
                yield batch

    class TinyConv(FeatureModel):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.classifier = nn.Linear(8, NUM_CLASSES)
            self.stage_channels, self.num_features, self.num_classes = [8], 8, NUM_CLASSES

        def forward_features(self, x):
            z = self.bn(self.conv(x))
            h = z.relu()
            pooled = h.mean((2, 3))
            return Features(logits=self.classifier(pooled), stages=[h], preact=[z], pooled=pooled)

    config = cfg(epochs=3, checkpoint_every_steps=4, milestones=(1,))  # 3 batches/epoch

    def go(out, crash_at=None, resume=False):
        seed_everything(0)
        train = CrashingLoader(ds, 16, shuffle=True, augment=True, seed=3, stats=stats)
        train.crash_at = crash_at
        test = data.TensorLoader(ds, 20, stats=stats)
        t = Trainer(MCMI(TinyConv(), lam=0.1), train, test, config, out, NUM_CLASSES)
        return t, t.fit(resume=resume)

    ref, _ = go(tmp_path / "ref")
    with pytest.raises(Crash):
        go(tmp_path / "cut", crash_at=(0, 1))  # only the initial checkpoint exists
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["global_step"] == 0
    with pytest.raises(Crash):
        go(tmp_path / "cut", crash_at=(1, 2), resume=True)  # last checkpoint: epoch 2, batch 1
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["step_in_epoch"] == 1
    resumed, _ = go(tmp_path / "cut", resume=True)
    assert_same_weights(ref.method, resumed.method)
    assert rows(tmp_path / "ref") == rows(tmp_path / "cut")


def test_amp_modes_on_cpu_and_fp16_resume_is_bit_identical(tmp_path):
    trainer, summary = run(tmp_path / "bf16", cfg(epochs=1, amp="bf16", grad_clip=1.0))
    assert trainer.amp_dtype == torch.bfloat16 and math.isfinite(summary["last_train_loss"])
    fp16 = cfg(epochs=3, amp="fp16", grad_clip=1.0)
    ref, _ = run(tmp_path / "ref", fp16)
    assert ref.scaler.is_enabled()
    with pytest.raises(Crash):
        run(tmp_path / "cut", fp16, crash_at=(2, 0))
    resumed, _ = run(tmp_path / "cut", fp16, resume=True)
    assert resumed.scaler.state_dict() == ref.scaler.state_dict()
    assert_same_weights(ref.method, resumed.method)
    seed_everything(0)
    train, test = loaders()
    auto = Trainer(MLL(TinyNet()), train, test, cfg(amp="auto"), tmp_path / "auto", NUM_CLASSES)
    assert auto.amp_dtype is None and not auto.scaler.is_enabled()


# ----------------------------------------------------------------------------- two processes


def _ddp_worker(rank, world, store, out):
    with gloo_group(store, rank, world):
        _ddp_resume_check(rank, world, out)


def _ddp_resume_check(rank, world, out):
    """One rank: uninterrupted run, then a run crashed mid-epoch and resumed; same weights."""
    xtr, ytr = toy_data(64, seed=1)
    xte, yte = toy_data(40, seed=2)
    config = cfg(epochs=3, checkpoint_every_steps=5)  # 2 batches/epoch per rank

    def go(name, crash_at=None, resume=False):
        seed_everything(0)
        train = ToyLoader(xtr[rank::world], ytr[rank::world], crash_at=crash_at)
        test = ToyLoader(xte[rank::world], yte[rank::world], shuffle=False)
        t = Trainer(MLL(TinyNet()), train, test, config, out / name, NUM_CLASSES)
        return t, t.fit(resume=resume)

    ref, ref_summary = go("ref")
    try:
        go("cut", crash_at=(2, 1))
        raise AssertionError("no crash")
    except Crash:
        pass
    state = load_checkpoint(out / "cut" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], len(state["ranks"])) == (2, 1, world)
    resumed, summary = go("cut", resume=True)
    assert_same_weights(ref.method, resumed.method)
    if rank == 0:
        assert rows(out / "ref") == rows(out / "cut")
    assert summary["last_acc"] == ref_summary["last_acc"] and summary["world_size"] == world


@pytest.mark.ddp
def test_two_process_ddp_resume_is_bit_identical(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), tmp_path), nprocs=2, join=True)
    assert len(read_jsonl(tmp_path / "ref" / "metrics.jsonl")) == 3


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    from mcmi.io import write_text

    mask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "r.md", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # not mkstemp's 0600
