"""Optimizers of ``train.optimizer``: SGD (with Nesterov) and AdamW, each step against a hand
computation of the update; AdamW through the trainer and an exact resume with its state."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from helpers import (
    NUM_CLASSES,
    Crash,
    TinyNet,
    ToyLoader,
    assert_same_tensors,
    assert_same_weights,
    toy_data,
)
from torch import nn

from mcmi.config import ConfigError, load_config, load_yaml
from mcmi.engine import CheckpointError, TrainConfig, Trainer, load_checkpoint, seed_everything
from mcmi.methods import MLL
from mcmi.recipes import RECIPES


def _steps(cfg: TrainConfig, p0: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    """Run torch's optimizer of ``cfg`` on one parameter with the given gradients."""
    p = nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = cfg.build_optimizer([p])
    for g in grads:
        opt.zero_grad()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


P0 = np.array([0.5, -1.5, 2.0, 0.0])
G1 = np.array([0.3, -0.2, 1.0, -4.0])
G2 = np.array([-0.1, 0.4, 0.5, 2.0])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_steps_by_hand(nesterov):
    lr, mu, wd = 0.1, 0.9, 5e-4
    cfg = TrainConfig(optimizer="sgd", lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov)
    assert isinstance(cfg.build_optimizer([nn.Parameter(torch.zeros(1))]), torch.optim.SGD)
    # torch's SGD: d = g + wd p; buf = mu buf + d (buf = d at the first step); step d + mu buf
    # (Nesterov) or buf
    p, buf = P0.copy(), None
    for g in (G1, G2):
        d = g + wd * p
        buf = d if buf is None else mu * buf + d
        p = p - lr * (d + mu * buf if nesterov else buf)
    assert np.allclose(_steps(cfg, P0, [G1, G2]), p, rtol=0, atol=1e-15)
    one = P0 - lr * ((1 + mu) if nesterov else 1) * (G1 + wd * P0)  # the first step alone
    assert np.allclose(_steps(cfg, P0, [G1]), one, rtol=0, atol=1e-15)


def test_adamw_steps_by_hand():
    lr, wd, (b1, b2), eps = 0.01, 0.05, (0.8, 0.99), 1e-6
    cfg = TrainConfig(optimizer="adamw", lr=lr, weight_decay=wd, betas=(b1, b2), eps=eps)
    assert isinstance(cfg.build_optimizer([nn.Parameter(torch.zeros(1))]), torch.optim.AdamW)
    # AdamW (Loshchilov & Hutter): decoupled decay p *= 1 - lr wd, then the bias-corrected Adam step
    p, m, v = P0.copy(), np.zeros(4), np.zeros(4)
    for t, g in enumerate((G1, G2), start=1):
        p = p * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    assert np.allclose(_steps(cfg, P0, [G1, G2]), p, rtol=0, atol=1e-15)
    # the first step is p (1 - lr wd) - lr g / (|g| + eps): a step of about lr per coordinate
    one = P0 * (1 - lr * wd) - lr * G1 / (np.abs(G1) + eps)
    assert np.allclose(_steps(cfg, P0, [G1]), one, rtol=0, atol=1e-15)


def test_adamw_defaults_are_torchs():
    cfg = TrainConfig(optimizer="adamw")
    group = cfg.build_optimizer([nn.Parameter(torch.zeros(1))]).param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    assert group["weight_decay"] == cfg.weight_decay == 5e-4 and group["lr"] == cfg.lr


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_one_trainer_step_is_the_hand_update(tmp_path, opt):
    """One batch, one epoch: the trained weights are the hand update with the batch's gradient."""
    x, y = toy_data(16, seed=4)
    torch.manual_seed(0)
    model = TinyNet(p=0.0)
    start = copy.deepcopy(model)
    ref = MLL(copy.deepcopy(model))
    loss = sum(ref({"image": x, "label": y}).losses.values())
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    cfg = TrainConfig(optimizer=opt, epochs=1, lr=0.1, momentum=0.9, nesterov=opt == "sgd", weight_decay=1e-3,
                      schedule="constant", progress=False, log_every_steps=0)
    Trainer(MLL(model), ToyLoader(x, y, batch_size=16, shuffle=False), None, cfg, tmp_path, NUM_CLASSES).fit()
    for (name, p0), g, p1 in zip(start.named_parameters(), grads, model.parameters()):
        p0, g = p0.detach().double(), g.double()
        if opt == "sgd":
            expected = p0 - 0.1 * 1.9 * (g + 1e-3 * p0)
        else:
            expected = p0 * (1 - 0.1 * 1e-3) - 0.1 * g / (g.abs() + 1e-8)
        assert torch.allclose(p1.detach().double(), expected, atol=1e-6, rtol=0), name


def _run(out, crash_at=None, resume=False, epochs=3):
    seed_everything(0)
    xtr, ytr = toy_data(64, seed=1)
    xte, yte = toy_data(40, seed=2)
    cfg = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.01, betas=(0.85, 0.99), epochs=epochs,
                      schedule="step", milestones=(2,), deterministic=True, seed=5, progress=False,
                      checkpoint_every_steps=3)
    t = Trainer(MLL(TinyNet()), ToyLoader(xtr, ytr, noise=0.3, crash_at=crash_at),
                ToyLoader(xte, yte, batch_size=20, shuffle=False), cfg, out, NUM_CLASSES)
    return t, t.fit(resume=resume)


def test_adamw_resume_is_exact(tmp_path):
    straight, _ = _run(tmp_path / "a")
    with pytest.raises(Crash):
        _run(tmp_path / "b", crash_at=(1, 3))  # after a mid-epoch checkpoint at global step 6
    resumed, summary = _run(tmp_path / "b", resume=True)
    assert summary["resumed_from"] is not None
    assert_same_weights(straight.method, resumed.method)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")  # exp_avg, exp_avg_sq, step
    assert set(a["optimizer"]["state"][0]) >= {"exp_avg", "exp_avg_sq", "step"}
    assert a["optimizer"]["param_groups"][0]["betas"] == (0.85, 0.99)


def test_resume_with_another_optimizer_is_refused(tmp_path):
    _run(tmp_path / "run", epochs=1)
    seed_everything(0)
    x, y = toy_data(64, seed=1)
    cfg = TrainConfig(optimizer="sgd", epochs=2, progress=False, lr=0.01, weight_decay=0.01)
    t = Trainer(MLL(TinyNet()), ToyLoader(x, y), None, cfg, tmp_path / "run", NUM_CLASSES)
    # even when the recipe change is allowed: the optimizer state cannot carry over
    with pytest.raises(CheckpointError, match="train.optimizer cannot change on resume"):
        t.fit(resume=True, allow_changes=("train",))


@dataclass
class _Recipe:
    train: TrainConfig = field(default_factory=TrainConfig)


def test_optimizer_settings_are_checked():
    for bad, match in ((dict(optimizer="adam"), "optimizer must be 'sgd' or 'adamw', got 'adam'"),
                       (dict(optimizer="adamw", nesterov=True), "nesterov needs"),
                       (dict(nesterov=True, momentum=0.0), "nesterov needs"),
                       (dict(betas=(0.9, 0.99, 0.1)), "betas must be two"),
                       (dict(betas=(0.9, 1.0)), "betas must be two"),
                       (dict(eps=0.0), "eps must be a positive number")):
        with pytest.raises(ValueError, match=match):
            TrainConfig(**bad)
    cfg = load_config(_Recipe, None, ["train.optimizer=adamw", "train.betas=[0.9, 0.95]", "train.eps=0.001"]).train
    assert cfg.optimizer == "adamw" and cfg.betas == (0.9, 0.95) and cfg.eps == 0.001
    with pytest.raises(ConfigError, match="optimizer"):
        load_config(_Recipe, None, ["train.optimizer=lion"])


def _optimizer_values(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "optimizer":
                yield v
            yield from _optimizer_values(v)
    elif isinstance(node, list):
        for v in node:
            yield from _optimizer_values(v)


def test_the_papers_recipes_keep_sgd():
    assert TrainConfig().optimizer == "sgd"
    files = sorted(RECIPES.rglob("*.yaml"))
    assert files
    for path in files:
        assert all(v == "sgd" for v in _optimizer_values(load_yaml(path))), path
