"""MLL, MCMI and KD objectives: values against numpy, the sign of the CMI term, teacher handling."""
import math

import numpy as np
import pytest
import torch

from mcmi.losses import kd_loss, soft_target_cross_entropy
from mcmi.methods import KD, MCMI, MLL, SoftTarget
from mcmi.metrics import empirical_cmi
from mcmi.models import create_model


def np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_soft_target_ce_matches_numpy_and_reduces_to_ce():
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(6, 4)), np_softmax(rng.normal(size=(6, 4)))
    ref = -(t * np.log(np_softmax(z))).sum(1).mean()
    assert float(soft_target_cross_entropy(torch.tensor(z), torch.tensor(t))) == pytest.approx(ref)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    onehot = torch.nn.functional.one_hot(y, 4).double()
    assert float(soft_target_cross_entropy(torch.tensor(z), onehot)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(torch.tensor(z), y)))


def test_kd_loss_matches_numpy_with_t_squared():
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 3)) * 2, rng.normal(size=(5, 3)) * 2
    for T in (1.0, 4.0):
        ps, pt = np_softmax(s / T), np_softmax(t / T)
        ref = T * T * (pt * np.log(pt / ps)).sum(1).mean()
        assert float(kd_loss(torch.tensor(s), torch.tensor(t), T)) == pytest.approx(ref, rel=1e-10)
    assert float(kd_loss(torch.tensor(s), torch.tensor(s), 4.0)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        kd_loss(torch.tensor(s), torch.tensor(t), 0.0)


def _toy(n=120, c=3, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(c, d, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    x = means[y] + torch.randn(n, d, generator=g)
    return x, y


def _pretrained(x, y, c=3, steps=150):
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=c, in_dim=x.shape[1], hidden=(16, 16))
    mll = MLL(model)
    opt = torch.optim.Adam(mll.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        loss = mll({"image": x, "label": y}).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_mcmi_loss_value_is_ce_minus_lambda_kl():
    x, y = _toy()
    model = _pretrained(x, y)
    m = MCMI(model, lam=0.3)
    m.prepare([{"image": x, "label": y}])
    out = m({"image": x, "label": y})
    p = torch.softmax(model(x), 1).detach().double().numpy()
    q = m.centroids.double().numpy()
    yn = y.numpy()
    kl = (p * np.log(p / q[yn])).sum(1).mean()
    ce = -np.log(p[np.arange(len(yn)), yn]).mean()
    assert float(out.losses["ce"].detach()) == pytest.approx(ce, rel=1e-5)
    assert float(out.losses["cmi"].detach()) == pytest.approx(-0.3 * kl, rel=1e-5)
    # the centroids of prepare() are eq. 13 over the loader
    for k in range(3):
        np.testing.assert_allclose(q[k], p[yn == k].mean(0), rtol=1e-5)


@pytest.mark.parametrize("policy", ["frozen", "ema"])
def test_mcmi_fine_tuning_increases_cmi(policy):
    """The sign guard: MCMI fine-tuning must raise the CMI that MLL fine-tuning leaves low.
    This fails if the CMI term's sign is flipped (it would then be minimized)."""
    x, y = _toy()
    cmi = {}
    for name, lam in (("mll", 0.0), ("mcmi", 0.5)):
        model = _pretrained(x, y)
        base = empirical_cmi(torch.softmax(model(x), 1).detach(), y)
        m = MCMI(model, lam=lam, centroids=policy)
        m.prepare([{"image": x, "label": y}])
        opt = torch.optim.Adam(m.trainable_parameters(), lr=3e-3)
        for _ in range(60):
            loss = m({"image": x, "label": y}).total
            opt.zero_grad()
            loss.backward()
            opt.step()
        cmi[name] = empirical_cmi(torch.softmax(model(x), 1).detach(), y)
    assert cmi["mcmi"] > base
    assert cmi["mcmi"] > cmi["mll"] + 0.02


def test_mcmi_rejects_negative_lambda_and_unprepared_use():
    model = create_model("mlp", num_classes=3, in_dim=4)
    with pytest.raises(ValueError, match="lam"):
        MCMI(model, lam=-0.1)
    with pytest.raises(RuntimeError, match="prepare"):
        MCMI(model)({"image": torch.zeros(2, 4), "label": torch.zeros(2, dtype=torch.long)})


def test_kd_distiller_keeps_teacher_frozen_and_out_of_checkpoints():
    torch.manual_seed(0)
    teacher = create_model("mlp", num_classes=4, in_dim=5)
    student = create_model("mlp", num_classes=4, in_dim=5, hidden=(8,))
    kd = KD(student, teacher)
    kd.train()
    assert not teacher.training
    batch = {"image": torch.randn(8, 5), "label": torch.randint(0, 4, (8,))}
    out = kd(batch)
    out.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert set(out.losses) == {"ce", "kd"}
    assert not any(k.startswith("teacher.") for k in kd.state_dict())
    assert {id(p) for p in kd.trainable_parameters()} == {id(p) for p in student.parameters()}
    with pytest.raises(ValueError, match="number of classes"):
        KD(student, create_model("mlp", num_classes=5, in_dim=5))
    # ce_weight 0: teacher-only distillation never reads the labels (unlabeled data may carry none)
    unlabeled = {"image": batch["image"], "label": torch.full((8,), -100)}
    out = KD(student, teacher, ce_weight=0.0, kd_weight=1.0, temperature=1.0)(unlabeled)
    with torch.no_grad():
        pt, ps = torch.softmax(teacher(batch["image"]), 1), torch.log_softmax(student(batch["image"]), 1)
    assert set(out.losses) == {"kd"}
    assert float(out.losses["kd"].detach()) == pytest.approx(float((pt * (pt.log() - ps)).sum(1).mean()), rel=1e-5)


def test_soft_target_method_uses_batch_target():
    model = create_model("mlp", num_classes=3, in_dim=2)
    x = torch.randn(4, 2)
    t = torch.softmax(torch.randn(4, 3), 1)
    out = SoftTarget(model)({"image": x, "target": t})
    assert float(out.losses["soft_ce"].detach()) == pytest.approx(float(soft_target_cross_entropy(model(x), t).detach()))
    assert math.isfinite(float(out.total))


def test_mll_regularizers_match_numpy_and_push_entropy_up():
    rng = np.random.default_rng(3)
    model = create_model("mlp", num_classes=4, in_dim=5, hidden=(8,))
    x, y = torch.tensor(rng.normal(size=(7, 5)), dtype=torch.float32), torch.tensor([0, 1, 2, 3, 0, 1, 2])
    with torch.no_grad():
        p = np_softmax(model(x).double().numpy())
    eps, beta = 0.2, 0.5
    target = np.full((7, 4), eps / 4)
    target[np.arange(7), y.numpy()] += 1 - eps
    ce_ls = -(target * np.log(p)).sum(1).mean()  # label smoothing: CE against the smoothed target
    entropy = -(p * np.log(p)).sum(1).mean()
    out = MLL(model, label_smoothing=eps, confidence_penalty=beta)({"image": x, "label": y})
    assert float(out.losses["ce"].detach()) == pytest.approx(ce_ls, rel=1e-5)
    assert float(out.losses["entropy"].detach()) == pytest.approx(-beta * entropy, rel=1e-5)  # a reward: negative
    assert set(MLL(model)({"image": x, "label": y}).losses) == {"ce"}
    # one gradient step on the penalty alone raises the mean entropy of the outputs
    pen = MLL(model, confidence_penalty=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    pen({"image": x, "label": y}).losses["entropy"].backward()
    opt.step()
    with torch.no_grad():
        p2 = np_softmax(model(x).double().numpy())
    assert -(p2 * np.log(p2)).sum(1).mean() > entropy
    with pytest.raises(ValueError, match="confidence_penalty"):
        MLL(model, confidence_penalty=-0.1)
