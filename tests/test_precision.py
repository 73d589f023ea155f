"""The distillation losses under bf16 autocast (the paper-scale recipes' ``amp: auto``) equal
their float32 values.

Inputs are made the way training makes them: by a layer run inside
``torch.autocast("cpu", dtype=torch.bfloat16)``, so they really are bf16 tensors. Features have
mean 1 and spread 0.1 (nearly collinear rows, as pooled ReLU features are), the case where bf16
Gram/distance/similarity arithmetic breaks. The reference is each formula evaluated in float64 on
the same (bf16-valued) inputs; for RKD, SP and PKT the formulas are re-implemented here, which
also shows that the naive bf16 evaluation of the same formula is off by more than 1% (the tests
have the power to fail without :mod:`mcmi.losses._precision`).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import ConvNet
from torch import Tensor, nn

from mcmi.losses._precision import fp32_context, fp32_loss, to_fp32
from mcmi.losses.at import at_loss, at_loss_multi, attention_map
from mcmi.losses.cc import cc_loss, cc_loss_repdistiller, rbf_taylor_correlation
from mcmi.losses.cmi import kl_to_centroids
from mcmi.losses.crd import contrast_scores, crd_loss
from mcmi.losses.dkd import dkd_loss, dkd_terms
from mcmi.losses.fitnet import hint_loss
from mcmi.losses.hsakd import aux_ce_loss, hsakd_loss
from mcmi.losses.kd import kd_loss, soft_target_cross_entropy
from mcmi.losses.pkt import pkt_loss
from mcmi.losses.reviewkd import hcl_loss, hcl_loss_single
from mcmi.losses.rkd import angle_matrix, pairwise_distances, rkd_loss
from mcmi.losses.sp import similarity_matrix, sp_loss
from mcmi.losses.vid import vid_loss
from mcmi.methods import METHODS, Distiller, method_class, resolve_test_options
from mcmi.methods.modules import NormalizedEmbed

BF16 = torch.bfloat16
N, D_IN, D = 16, 32, 64
CLASSES = 10
REL = 0.01  # the tolerance the issue asks for


def autocast():
    return torch.autocast("cpu", dtype=BF16)


def rel_err(value: Tensor | float, ref: Tensor | float) -> float:
    value, ref = float(torch.as_tensor(value).detach()), float(torch.as_tensor(ref).detach())
    return abs(value - ref) / abs(ref)


def bf16_features(seed: int, shape: tuple[int, ...] = (N, D), mean: float = 1.0, spread: float = 0.1):
    """Features of ``mean`` and ``spread`` made by a Linear layer inside bf16 autocast: a bf16
    tensor that requires grad (the layer's weight is trainable)."""
    g = torch.Generator().manual_seed(seed)
    numel = 1
    for s in shape[1:]:
        numel *= s
    layer = nn.Linear(D_IN, numel)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(numel, D_IN, generator=g) * spread / D_IN**0.5)
        layer.bias.fill_(mean)
    x = torch.randn(shape[0], D_IN, generator=g)
    with autocast():
        f = layer(x).view(*shape)
    assert f.dtype == BF16 and f.requires_grad
    return f, layer


def bf16_logits(seed: int, n: int = N, classes: int = CLASSES, scale: float = 3.0, base=None):
    """Logits of realistic scale (std ``scale``, a +4 margin on the label) from a Linear layer
    inside bf16 autocast; ``base`` (a layer) gives correlated logits, like a student's and its
    teacher's."""
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(D_IN, classes)
    with torch.no_grad():
        w = torch.randn(classes, D_IN, generator=g) * scale / D_IN**0.5
        if base is not None:
            w = base.weight + 0.5 * w
        layer.weight.copy_(w)
        layer.bias.zero_()
    x = torch.randn(n, D_IN, generator=torch.Generator().manual_seed(1234))
    labels = torch.arange(n) % classes
    with autocast():
        z = layer(x) + 4.0 * F.one_hot(labels, classes).to(BF16)
    assert z.dtype == BF16
    return z, labels, layer


def f64(t: Tensor) -> Tensor:
    return t.detach().double()


# -------------------------------------------------- formulas re-implemented (naive, any dtype)
def naive_rkd(fs: Tensor, ft: Tensor) -> Tensor:
    """RKD-DA (Park et al., 2019) written plainly: 25 Huber(d_s / mean d_s, d_t / mean d_t) +
    50 Huber(angle cosines), means over all entries."""

    def dist(e):
        sq = (e * e).sum(1)
        d2 = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp_min(1e-12)
        d = d2.sqrt() * (1 - torch.eye(e.shape[0], dtype=e.dtype))
        return d / d[d > 0].mean()

    def angles(e):
        diff = e[None, :, :] - e[:, None, :]
        u = diff / diff.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return u @ u.transpose(1, 2)

    return 25 * F.smooth_l1_loss(dist(fs), dist(ft)) + 50 * F.smooth_l1_loss(angles(fs), angles(ft))


def naive_sp(fs: Tensor, ft: Tensor) -> Tensor:
    """SP (Tung & Mori, 2019): ||norm_rows(Q_t Q_t^T) - norm_rows(Q_s Q_s^T)||_F^2 / N^2."""

    def g(q):
        q = q.flatten(1)
        m = q @ q.t()
        return m / m.norm(dim=1, keepdim=True)

    return (g(ft) - g(fs)).pow(2).sum() / fs.shape[0] ** 2


def naive_pkt(fs: Tensor, ft: Tensor, eps: float = 1e-7) -> Tensor:
    """PKT (Passalis & Tefas, 2018): mean_ij P_t log((P_t + eps) / (P_s + eps)), cosine kernel."""

    def p(f):
        f = f / (f.norm(dim=1, keepdim=True) + eps)
        k = (f @ f.t() + 1) / 2
        return k / k.sum(1, keepdim=True)

    ps, pt = p(fs), p(ft)
    return (pt * torch.log((pt + eps) / (ps + eps))).mean()


NAIVE = {"rkd": (naive_rkd, rkd_loss), "sp": (naive_sp, sp_loss), "pkt": (naive_pkt, pkt_loss)}


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_relation_losses_under_bf16_autocast_equal_fp32_and_naive_bf16_does_not(name):
    naive, loss = NAIVE[name]
    fs, _ = bf16_features(0)
    ft, _ = bf16_features(1)
    ref = naive(f64(fs), f64(ft))  # the formula on the same values, in float64
    assert rel_err(loss(f64(fs), f64(ft)), ref) < 1e-9  # the library computes the formula
    with autocast():
        fixed = loss(fs, ft)
        broken = naive(fs, ft)
    assert fixed.dtype == torch.float32
    assert rel_err(fixed, ref) < REL, (name, float(fixed), float(ref))
    # the power of the test: the same formula left to bf16 autocast is off by more than 1%
    assert rel_err(broken, ref) > REL, (name, float(broken), float(ref))


def _feature_cases():
    """(name, loss(fs, ft) for bf16 inputs) of every feature/relation loss."""
    log_scale = torch.full((8,), 0.3)
    return {
        "rkd": lambda s, t: rkd_loss(s.flatten(1), t.flatten(1)),
        "pkt": lambda s, t: pkt_loss(s, t),
        "sp": lambda s, t: sp_loss(s, t),
        "cc_rbf": lambda s, t: cc_loss(s.flatten(1), t.flatten(1)),
        "cc_repdistiller": lambda s, t: cc_loss_repdistiller(s.flatten(1), t.flatten(1)),
        "at": lambda s, t: at_loss(s, t),
        "at_multi": lambda s, t: at_loss_multi([s, s[:, :4]], [t, t[:, :4]]),
        "vid": lambda s, t: vid_loss(s, t, log_scale),
        "fitnet": lambda s, t: hint_loss(s, t),
        "reviewkd_hcl": lambda s, t: hcl_loss([s], [t]),
        "reviewkd_hcl_single": lambda s, t: hcl_loss_single(s, t),
        "crd_nce": lambda s, t: crd_loss(
            contrast_scores(F.normalize(s.flatten(1), dim=1), _bank(t), 0.07, 1.0),
            contrast_scores(F.normalize(t.flatten(1), dim=1), _bank(s), 0.07, 1.0),
            num_data=100,
        ),
    }


def _bank(f: Tensor) -> Tensor:
    """(N, K+1, D) candidates: each row's own embedding (positive) then the others rolled."""
    e = F.normalize(f.flatten(1), dim=1)
    return torch.stack([torch.roll(e, k, dims=0) for k in range(4)], dim=1)


@pytest.mark.parametrize("name", sorted(_feature_cases()))
def test_feature_losses_under_bf16_autocast_equal_the_float64_value(name):
    fn = _feature_cases()[name]
    shape = (N, 8, 4, 4)  # maps for AT/VID/FitNet/ReviewKD; flattened for the vector losses
    fs, layer = bf16_features(0, shape)
    ft, _ = bf16_features(1, shape)
    ref = fn(f64(fs), f64(ft))
    with autocast():
        value = fn(fs, ft)
    assert value.dtype == torch.float32, name
    assert rel_err(value, ref) < REL, (name, float(value), float(ref))
    value.backward()  # gradients reach the bf16 inputs' producer
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()
    assert layer.weight.grad.abs().sum() > 0


def _logit_cases(labels: Tensor):
    log_q = torch.log_softmax(torch.randn(CLASSES, CLASSES, generator=torch.Generator().manual_seed(5)), 1)
    return {
        "kd": lambda s, t: kd_loss(s, t, 4.0),
        "kd_two_temperatures": lambda s, t: kd_loss(s, t, 4.0, student_temperature=2.0),
        "dkd": lambda s, t: dkd_loss(s, t, labels, 1.0, 8.0, 4.0),
        "dkd_tckd": lambda s, t: dkd_terms(s, t, labels, 4.0)[0],
        "dkd_nckd": lambda s, t: dkd_terms(s, t, labels, 4.0)[1],
        "mcmi_cmi": lambda s, t: kl_to_centroids(s, labels, log_q),
        "soft_target_ce": lambda s, t: soft_target_cross_entropy(s, torch.softmax(t, 1)),
        "hsakd": lambda s, t: hsakd_loss(s, t, [s, 0.5 * s], [t, 0.5 * t], 3.0),
        "hsakd_aux_ce": lambda s, t: aux_ce_loss([s, t], labels),
    }


@pytest.mark.parametrize("name", sorted(_logit_cases(torch.zeros(1))))
def test_kl_and_cmi_terms_under_bf16_autocast_equal_the_float64_value(name):
    t, labels, base = bf16_logits(0)
    s, _, layer = bf16_logits(1, base=base)
    fn = _logit_cases(labels)[name]
    ref = fn(f64(s), f64(t))
    with autocast():
        value = fn(s, t)
    assert value.dtype == torch.float32, name
    assert rel_err(value, ref) < REL, (name, float(value), float(ref))
    value.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_kd_left_to_bf16_autocast_is_wrong_on_close_logits():
    """Power check for the KL terms: the undecorated KD formula under autocast is far off."""
    t, _, base = bf16_logits(0)
    s, _, _ = bf16_logits(1, base=base)
    ref = kd_loss(f64(s), f64(t), 4.0)
    with autocast():
        broken = kd_loss.__wrapped__(s, t, 4.0)
        fixed = kd_loss(s, t, 4.0)
    assert rel_err(fixed, ref) < REL
    assert rel_err(broken, ref) > REL


def test_gram_helpers_return_float32_and_keep_gradients_in_bf16():
    f, _ = bf16_features(2)
    f.retain_grad()
    with autocast():
        outs = [pairwise_distances(f), angle_matrix(f[:6]), similarity_matrix(f),
                rbf_taylor_correlation(f), attention_map(f.view(N, 4, 4, 4))]
        total = sum(o.sum() for o in outs)
    assert all(o.dtype == torch.float32 for o in outs)
    total.backward()
    assert f.grad is not None and f.grad.dtype == BF16 and torch.isfinite(f.grad.float()).all()


def test_fp32_helpers():
    x = torch.ones(2, 2, dtype=BF16)
    d = torch.ones(2, dtype=torch.float64)
    out = to_fp32({"a": [x, (x, 3)], "b": d, "c": torch.arange(3)})
    assert out["a"][0].dtype == torch.float32 and out["a"][1][0].dtype == torch.float32
    assert out["a"][1][1] == 3 and out["b"].dtype == torch.float64 and out["c"].dtype == torch.int64
    w = torch.randn(3, 3)
    with autocast():
        assert (w @ w).dtype == BF16
        with fp32_context():
            assert (w @ w).dtype == torch.float32

        @fp32_loss
        def product(a):
            return a @ a

        assert product(w.to(BF16)).dtype == torch.float32
    assert product.__wrapped__(w).dtype == torch.float32


def test_crd_embedding_head_runs_in_float32_under_autocast():
    embed = NormalizedEmbed(D, 16)
    f, _ = bf16_features(3)
    with autocast():
        e = embed(f)
    assert e.dtype == torch.float32
    ref = F.normalize(embed.linear(f64(f).float()).double(), dim=1)
    assert torch.allclose(e.double(), ref, atol=1e-6)


# ------------------------------------------------------------- one step of each method, end to end
def Net(widths=(4, 8, 8, 16)):
    """A stem and three conv stages (32, 32, 16, 8 px), like the CIFAR zoo."""
    return ConvNet(widths, CLASSES)


E2E = ["kd", "dkd", "at", "pkt", "sp", "cc", "rkd", "vid", "crd", "fitnet", "reviewkd", "hsakd",
       "hsakd_teacher", "mcmi"]


def _method(name: str, batch):
    """A fast instance from the method's own ``test_options``, prepared on ``batch``."""
    torch.manual_seed(0)
    student, teacher = Net(), Net((6, 12, 12, 24))
    cls = method_class(name)
    models = (student, teacher) if issubclass(cls, Distiller) else (teacher,)
    if name == "mcmi":  # confident outputs, centroids from other images: the CMI term well above 0
        with torch.no_grad():
            teacher.classifier.weight.mul_(30.0)
        g = torch.Generator().manual_seed(7)
        batch = {"image": torch.randn(8, 3, 32, 32, generator=g), "label": batch["label"]}
    method = cls(*models, **resolve_test_options(cls, *models))
    method.prepare([batch])
    return method


@pytest.mark.parametrize("name", E2E)
def test_one_training_step_under_bf16_autocast_gives_the_fp32_losses(name):
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(8, 3, 32, 32, generator=g), "label": torch.arange(8) % CLASSES,
             "index": torch.arange(8)}
    method = _method(name, batch).train()
    outs = {}
    for precision in ("fp32", "bf16"):
        m = copy.deepcopy(method)  # the same state for both (CRD's bank, BN statistics)
        torch.manual_seed(1)  # the same negatives for CRD
        if precision == "bf16":
            with autocast():
                out = m(batch, epoch=30)
        else:
            out = m(batch, epoch=30)
        total = sum(out.losses.values())
        total.backward()  # the trainer's backward: gradients reach every parameter
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
        outs[precision] = {k: float(v.detach()) for k, v in out.losses.items()}
        if precision == "bf16":
            assert all(v.dtype == torch.float32 for v in out.losses.values()), name
    assert outs["fp32"].keys() == outs["bf16"].keys()
    for key, ref in outs["fp32"].items():
        assert rel_err(outs["bf16"][key], ref) < REL, (name, key, outs["bf16"][key], ref)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_trainer_amp_path_trains_a_relation_distiller(tmp_path, amp):
    """The trainer's autocast (``TrainConfig.amp``, :func:`mcmi.engine.config.resolve_amp`) with
    the float32 losses: one epoch of PKT (fp16 through the grad scaler) ends finite, and its first
    loss equals the fp32 run's within 1%."""
    from helpers import ToyLoader

    from mcmi.engine import Trainer
    from mcmi.engine.config import TrainConfig

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % CLASSES
    first = {}
    for mode in ("off", amp):
        torch.manual_seed(0)
        method = METHODS.build("pkt", Net(), Net((6, 12, 12, 24)))
        cfg = TrainConfig(epochs=1, lr=0.01, amp=mode, progress=False, seed=0)
        trainer = Trainer(method, ToyLoader(x, y, batch_size=8, shuffle=False),
                          ToyLoader(x, y, batch_size=8, shuffle=False), cfg, tmp_path / mode, CLASSES)
        assert trainer.amp_dtype == {"off": None, "bf16": BF16, "fp16": torch.float16}[mode]
        batch = {"image": x[:8], "label": y[:8], "index": torch.arange(8)}
        with trainer_autocast(trainer):
            first[mode] = float(method(batch).losses["pkt"].detach())
        summary = trainer.fit()
        assert torch.isfinite(torch.tensor(summary["last_train_loss"]))
    assert rel_err(first[amp], first["off"]) < REL


def trainer_autocast(trainer):
    """The autocast context the trainer's step uses (engine/loop.py)."""
    import contextlib

    if trainer.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(trainer.device.type, dtype=trainer.amp_dtype)
