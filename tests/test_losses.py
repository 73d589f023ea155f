"""Pure distillation losses against independent numpy computations written from each paper's
formula, plus properties that catch sign and scale errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mcmi.losses.at import at_loss, at_loss_multi, attention_map
from mcmi.losses.cc import cc_loss, cc_loss_repdistiller, rbf_taylor_correlation
from mcmi.losses.crd import contrast_scores, crd_loss, nce_loss
from mcmi.losses.dkd import dkd_loss, dkd_terms
from mcmi.losses.fitnet import hint_loss
from mcmi.losses.hsakd import aux_ce_loss, hsakd_loss, rotate_batch
from mcmi.losses.kd import kd_loss
from mcmi.losses.pkt import pkt_loss
from mcmi.losses.reviewkd import hcl_loss, hcl_loss_single
from mcmi.losses.rkd import rkd_angle_loss, rkd_distance_loss, rkd_loss
from mcmi.losses.sp import sp_loss
from mcmi.losses.vid import vid_loss

DT = torch.float64


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


def npy(t):
    return t.detach().cpu().numpy().astype(np.float64)


# ------------------------------------------------------------------------- numpy helpers
def np_log_softmax(z, axis=1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def np_kl_rows(p, q):
    """sum_j p log(p / q) per row (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(1)


def np_huber(a, b):
    d = np.abs(a - b)
    return np.where(d < 1.0, 0.5 * d**2, d - 0.5).mean()


def np_block_pool(x, out):
    n, c, h, w = x.shape
    return x.reshape(n, c, out, h // out, out, w // out).mean(axis=(3, 5))


def assert_teacher_gets_no_grad(loss_fn, s, t):
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    loss_fn(s, t).backward()
    assert t.grad is None, "the teacher side must be a constant target"
    assert s.grad is not None and torch.isfinite(s.grad).all()
    assert s.grad.abs().sum() > 0


# --------------------------------------------------------------------------------- FitNet
def test_hint_loss_matches_numpy_and_is_zero_at_target():
    s, t = rand(3, 4, 5, 5, seed=1), rand(3, 4, 5, 5, seed=2)
    ref = ((npy(s) - npy(t)) ** 2).mean()
    assert hint_loss(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert hint_loss(t, t).item() == 0.0
    assert_teacher_gets_no_grad(hint_loss, s, t)
    with pytest.raises(ValueError):
        hint_loss(s, t[:, :2])


# ------------------------------------------------------------------------------------- AT
def np_attention(f, p=2):
    q = (np.abs(f) ** p).mean(1).reshape(f.shape[0], -1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_at_loss_matches_numpy_with_different_channels():
    s, t = rand(4, 3, 6, 6, seed=3), rand(4, 7, 6, 6, seed=4)
    ref = ((np_attention(npy(s)) - np_attention(npy(t))) ** 2).mean()
    assert at_loss(s, t).item() == pytest.approx(ref, rel=1e-10)
    # the larger map is average-pooled to the smaller one's size
    big = rand(4, 5, 12, 12, seed=5)
    ref2 = ((np_attention(np_block_pool(npy(big), 6)) - np_attention(npy(t))) ** 2).mean()
    assert at_loss(big, t).item() == pytest.approx(ref2, rel=1e-10)
    assert at_loss(t, big).item() == pytest.approx(ref2, rel=1e-10)
    multi = at_loss_multi([s, big], [t, t]).item()
    assert multi == pytest.approx(ref + ref2, rel=1e-10)


def test_at_properties():
    f = rand(2, 4, 5, 5, seed=6)
    assert at_loss(f, f).item() == pytest.approx(0.0, abs=1e-15)
    # attention maps are normalized: scale and channel duplication do not matter
    assert at_loss(3.0 * f, torch.cat([f, f], 1)).item() == pytest.approx(0.0, abs=1e-15)
    q = attention_map(f)
    assert torch.allclose(q.norm(dim=1), torch.ones(2, dtype=DT))
    assert at_loss(f, rand(2, 4, 5, 5, seed=7)).item() > 0
    assert_teacher_gets_no_grad(at_loss, f, rand(2, 4, 5, 5, seed=7))


# ------------------------------------------------------------------------------------ PKT
def np_pkt(s, t, eps=1e-7):
    def probs(f):
        f = f.reshape(f.shape[0], -1)
        f = f / (np.linalg.norm(f, axis=1, keepdims=True) + eps)
        k = (f @ f.T + 1.0) / 2.0
        return k / k.sum(1, keepdims=True)

    ps, pt = probs(s), probs(t)
    return (pt * np.log((pt + eps) / (ps + eps))).mean()


def test_pkt_matches_numpy_and_properties():
    s, t = rand(6, 5, seed=8), rand(6, 9, seed=9)
    assert pkt_loss(s, t).item() == pytest.approx(np_pkt(npy(s), npy(t)), rel=1e-10)
    assert pkt_loss(s, s).item() == pytest.approx(0.0, abs=1e-12)
    assert pkt_loss(2.5 * s, s).item() == pytest.approx(0.0, abs=1e-12)  # cosine kernel
    assert pkt_loss(s, t).item() > 0
    assert_teacher_gets_no_grad(pkt_loss, s, t)


# ------------------------------------------------------------------------------------- SP
def np_sp(s, t):
    def gram(f):
        f = f.reshape(f.shape[0], -1)
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    n = s.shape[0]
    return ((gram(t) - gram(s)) ** 2).sum() / n**2


def test_sp_matches_numpy_and_properties():
    s, t = rand(5, 3, 4, 4, seed=10), rand(5, 6, 2, 2, seed=11)
    assert sp_loss(s, t).item() == pytest.approx(np_sp(npy(s), npy(t)), rel=1e-10)
    assert sp_loss(s, s).item() == pytest.approx(0.0, abs=1e-14)
    assert sp_loss(4.0 * s, s).item() == pytest.approx(0.0, abs=1e-14)
    assert sp_loss(s, t).item() > 0
    assert_teacher_gets_no_grad(sp_loss, s, t)


# ------------------------------------------------------------------------------------- CC
def np_cc_corr(f, gamma, order):
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    sim = f @ f.T
    return sum(
        math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * sim**p
        for p in range(order + 1)
    )


def test_cc_rbf_matches_numpy_and_converges_to_the_rbf_kernel():
    s, t = rand(6, 8, seed=12), rand(6, 8, seed=13)
    ref = ((np_cc_corr(npy(s), 0.4, 2) - np_cc_corr(npy(t), 0.4, 2)) ** 2).mean()
    assert cc_loss(s, t, gamma=0.4, order=2).item() == pytest.approx(ref, rel=1e-10)
    # with many terms the expansion is the Gaussian RBF kernel of the normalized features
    f = npy(s) / np.linalg.norm(npy(s), axis=1, keepdims=True)
    d2 = ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1)
    exact = np.exp(-0.4 * d2)
    assert np.allclose(npy(rbf_taylor_correlation(s, 0.4, 20)), exact, atol=1e-12)
    assert cc_loss(s, s).item() == pytest.approx(0.0, abs=1e-15)
    assert cc_loss(s, t).item() > 0


def test_cc_repdistiller_variant_matches_numpy():
    s, t = rand(5, 4, seed=14), rand(5, 4, seed=15)
    d = np.abs(npy(s) - npy(t))
    ref = (d[:-1] * d[1:]).sum(1).mean()
    assert cc_loss_repdistiller(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert cc_loss_repdistiller(s, s).item() == 0.0
    assert cc_loss_repdistiller(s, t).item() >= 0


# ------------------------------------------------------------------------------------ RKD
def np_rkd(s, t, wd=25.0, wa=50.0):
    def dist(e):
        return np.sqrt(np.maximum(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1), 0.0))

    def ndist(e):
        d = dist(e)
        return d / d[d > 0].mean()

    def angles(e):
        n = e.shape[0]
        out = np.zeros((n, n, n))
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    if nu > 0 and nv > 0:
                        out[i, j, k] = u @ v / (nu * nv)
        return out

    ld = np_huber(ndist(s), ndist(t))
    la = np_huber(angles(s), angles(t))
    return ld, la, wd * ld + wa * la


def test_rkd_matches_numpy():
    s, t = rand(5, 3, seed=16), rand(5, 4, seed=17)
    ld, la, total = np_rkd(npy(s), npy(t))
    assert rkd_distance_loss(s, t).item() == pytest.approx(ld, rel=1e-8)
    assert rkd_angle_loss(s, t).item() == pytest.approx(la, rel=1e-8)
    assert rkd_loss(s, t).item() == pytest.approx(total, rel=1e-8)


def test_rkd_properties():
    s = rand(6, 4, seed=18)
    assert rkd_loss(s, s).item() == pytest.approx(0.0, abs=1e-10)
    # relations are invariant to scale and translation of the embedding
    assert rkd_loss(3.0 * s + 1.5, s).item() == pytest.approx(0.0, abs=1e-10)
    t = rand(6, 4, seed=19)
    assert rkd_loss(s, t).item() > 0
    assert_teacher_gets_no_grad(rkd_loss, s, t)


# ------------------------------------------------------------------------------------ VID
def test_vid_matches_numpy():
    mu, t = rand(2, 3, 4, 4, seed=20), rand(2, 3, 4, 4, seed=21)
    ls = torch.tensor([-1.0, 0.3, 2.0], dtype=DT)
    var = np.log1p(np.exp(npy(ls))) + 1e-5
    ref = (
        0.5
        * ((npy(mu) - npy(t)) ** 2 / var[None, :, None, None] + np.log(var)[None, :, None, None])
    ).mean()
    assert vid_loss(mu, t, ls).item() == pytest.approx(ref, rel=1e-12)
    # 2-D features (N, C) work too
    mu2, t2 = mu[:, :, 0, 0], t[:, :, 0, 0]
    ref2 = (0.5 * ((npy(mu2) - npy(t2)) ** 2 / var + np.log(var))).mean()
    assert vid_loss(mu2, t2, ls).item() == pytest.approx(ref2, rel=1e-12)


def test_vid_optimum_and_gradients():
    mu, t = rand(4, 2, 3, 3, seed=22), rand(4, 2, 3, 3, seed=23)
    # at mu = t the mean gets no gradient
    m = t.clone().requires_grad_(True)
    vid_loss(m, t, torch.zeros(2, dtype=DT)).backward()
    assert m.grad.abs().max().item() == pytest.approx(0.0, abs=1e-15)
    # the NLL is minimized over the variance at sigma_c^2 = per-channel mean squared error
    mse = ((mu - t) ** 2).mean(dim=(0, 2, 3))
    ls = torch.log(torch.expm1(mse - 1e-5)).requires_grad_(True)
    vid_loss(mu, t, ls).backward()
    assert ls.grad.abs().max().item() < 1e-10
    assert_teacher_gets_no_grad(lambda a, b: vid_loss(a, b, torch.zeros(2, dtype=DT)), mu, t)


# ------------------------------------------------------------------------------------ CRD
def np_nce(scores, num_data, eps=1e-7):
    k = scores.shape[1] - 1
    pn = 1.0 / num_data
    pos, neg = scores[:, 0], scores[:, 1:]
    l1 = np.log(pos / (pos + k * pn + eps))
    l0 = np.log(k * pn / (neg + k * pn + eps))
    return -(l1.sum() + l0.sum()) / scores.shape[0]


def test_crd_nce_matches_numpy_and_is_positive():
    g = torch.Generator().manual_seed(24)
    scores = torch.rand(4, 9, generator=g, dtype=DT) * 1e-3
    assert nce_loss(scores, 1000).item() == pytest.approx(np_nce(npy(scores), 1000), rel=1e-12)
    assert nce_loss(scores, 1000).item() > 0
    other = torch.rand(4, 9, generator=g, dtype=DT) * 1e-3
    assert crd_loss(scores, other, 1000).item() == pytest.approx(
        np_nce(npy(scores), 1000) + np_nce(npy(other), 1000), rel=1e-12
    )
    # a more similar positive (or a less similar negative) lowers the loss
    better = scores.clone()
    better[:, 0] *= 10
    assert nce_loss(better, 1000) < nce_loss(scores, 1000)
    worse = scores.clone()
    worse[:, 1:] *= 10
    assert nce_loss(worse, 1000) > nce_loss(scores, 1000)


def test_crd_contrast_scores_match_numpy():
    a = torch.nn.functional.normalize(rand(3, 5, seed=25), dim=1)
    c = torch.nn.functional.normalize(rand(3, 4, 5, seed=26), dim=2)
    ref = np.exp(np.einsum("nkd,nd->nk", npy(c), npy(a)) / 0.07) / 123.0
    got = contrast_scores(a, c, 0.07, 123.0)
    assert got.dtype == torch.float32
    assert np.allclose(npy(got), ref, rtol=1e-5)


# ----------------------------------------------------------------------------- KD and DKD
def np_dkd(s, t, y, temperature):
    s, t = s / temperature, t / temperature
    n, c = s.shape
    ps, pt = np.exp(np_log_softmax(s)), np.exp(np_log_softmax(t))
    rows = np.arange(n)
    bs = np.stack([ps[rows, y], 1 - ps[rows, y]], 1)
    bt = np.stack([pt[rows, y], 1 - pt[rows, y]], 1)
    tckd = np_kl_rows(bt, bs).mean()
    mask = np.ones_like(s, dtype=bool)
    mask[rows, y] = False
    ns = np.exp(np_log_softmax(s[mask].reshape(n, c - 1)))
    nt = np.exp(np_log_softmax(t[mask].reshape(n, c - 1)))
    nckd = np_kl_rows(nt, ns).mean()
    return tckd * temperature**2, nckd * temperature**2


def test_dkd_matches_numpy():
    s, t = rand(5, 7, seed=27), rand(5, 7, seed=28) * 2
    y = torch.tensor([0, 3, 6, 2, 2])
    tckd, nckd = np_dkd(npy(s), npy(t), y.numpy(), 4.0)
    got_t, got_n = dkd_terms(s, t, y, 4.0)
    assert got_t.item() == pytest.approx(tckd, rel=1e-10)
    assert got_n.item() == pytest.approx(nckd, rel=1e-10)
    assert dkd_loss(s, t, y, alpha=1.0, beta=8.0, temperature=4.0).item() == pytest.approx(
        tckd + 8 * nckd, rel=1e-10
    )


def test_dkd_properties():
    s, t = rand(4, 6, seed=29), rand(4, 6, seed=30)
    y = torch.tensor([1, 0, 5, 2])
    assert dkd_loss(s, s, y).item() == pytest.approx(0.0, abs=1e-12)
    a, b = dkd_terms(s, t, y)
    assert a.item() > 0 and b.item() > 0
    # T^2 factor: scaling the logits by T at temperature T gives T^2 times the T = 1 value
    for temp in (2.0, 4.0):
        scaled = dkd_loss(s * temp, t * temp, y, 1.0, 8.0, temp)
        assert scaled.item() == pytest.approx(
            temp**2 * dkd_loss(s, t, y, 1.0, 8.0, 1.0).item(), rel=1e-10
        )
    # Zhao et al.'s decomposition, per sample: KD = TCKD + (1 - p^T_target) NCKD
    for i in range(4):
        si, ti, yi = s[i : i + 1], t[i : i + 1], y[i : i + 1]
        tck, nck = dkd_terms(si, ti, yi, 3.0)
        pt = torch.softmax(ti / 3.0, 1)[0, yi].item()
        assert kd_loss(si, ti, 3.0).item() == pytest.approx(
            (tck + (1 - pt) * nck).item(), rel=1e-10
        )
    assert_teacher_gets_no_grad(lambda u, v: dkd_loss(u, v, y), s, t)
    # extreme confidence stays finite (log-sum-exp for log(1 - p))
    big = torch.zeros(2, 5, dtype=DT)
    big[:, 0] = 200.0
    assert torch.isfinite(dkd_loss(big, big.flip(1), torch.tensor([0, 0])))


def test_kd_temperature_scaling():
    s, t = rand(4, 6, seed=31), rand(4, 6, seed=32)
    ps, pt = np.exp(np_log_softmax(npy(s) / 4)), np.exp(np_log_softmax(npy(t) / 4))
    assert kd_loss(s, t, 4.0).item() == pytest.approx(16 * np_kl_rows(pt, ps).mean(), rel=1e-10)
    assert kd_loss(s * 3, t * 3, 3.0).item() == pytest.approx(
        9 * kd_loss(s, t, 1.0).item(), rel=1e-10
    )


def test_kd_with_separate_student_temperature_matches_numpy():
    """Fig. 8's grid: teacher softened at T_t, student at T_s, scaled by T_t * T_s."""
    s, t = rand(5, 7, seed=37), rand(5, 7, seed=38)
    pt, ps = np.exp(np_log_softmax(npy(t) / 8)), np.exp(np_log_softmax(npy(s) / 2))
    got = kd_loss(s, t, 8.0, student_temperature=2.0).item()
    assert got == pytest.approx(16 * np_kl_rows(pt, ps).mean(), rel=1e-10)
    assert kd_loss(s, t, 3.0, student_temperature=3.0).item() == pytest.approx(
        kd_loss(s, t, 3.0).item(), rel=1e-12)
    # zero exactly when the student's softened outputs equal the teacher's: s/T_s == t/T_t
    assert kd_loss(t * 0.25, t, 8.0, student_temperature=2.0).item() == pytest.approx(0, abs=1e-12)
    with pytest.raises(ValueError, match="student 0"):
        kd_loss(s, t, 4.0, student_temperature=0.0)


# ------------------------------------------------------------------------------- ReviewKD
def np_hcl_single(s, t):
    h = s.shape[2]
    loss, w, tot = ((s - t) ** 2).mean(), 1.0, 1.0
    for level in (4, 2, 1):
        if level >= h:
            continue
        w /= 2
        loss += w * ((np_block_pool(s, level) - np_block_pool(t, level)) ** 2).mean()
        tot += w
    return loss / tot


def test_hcl_matches_numpy():
    pairs = [
        (rand(2, 3, 8, 8, seed=33), rand(2, 3, 8, 8, seed=34)),
        (rand(2, 4, 4, 4, seed=35), rand(2, 4, 4, 4, seed=36)),
        (rand(2, 5, 1, 1, seed=37), rand(2, 5, 1, 1, seed=38)),
    ]
    refs = [np_hcl_single(npy(s), npy(t)) for s, t in pairs]
    # weights: 8x8 -> 1, 1/2, 1/4, 1/8 (sum 1.875); 4x4 -> 1, 1/2, 1/4; 1x1 -> plain MSE
    for (s, t), ref in zip(pairs, refs):
        assert hcl_loss_single(s, t).item() == pytest.approx(ref, rel=1e-12)
    assert refs[2] == pytest.approx(((npy(pairs[2][0]) - npy(pairs[2][1])) ** 2).mean())
    got = hcl_loss([s for s, _ in pairs], [t for _, t in pairs]).item()
    assert got == pytest.approx(sum(refs), rel=1e-12)
    assert hcl_loss([pairs[0][0]], [pairs[0][0]]).item() == 0.0
    assert_teacher_gets_no_grad(hcl_loss_single, *pairs[0])


# ---------------------------------------------------------------------------------- HSAKD
def test_rotate_batch():
    x = rand(2, 3, 4, 4, seed=39)
    y = torch.tensor([5, 1])
    xr, yr = rotate_batch(x, y)
    assert xr.shape == (8, 3, 4, 4)
    assert torch.equal(xr[0::4], x)
    for n in range(2):
        for r in range(4):
            assert np.array_equal(npy(xr[4 * n + r]), np.rot90(npy(x[n]), r, axes=(1, 2)))
    assert yr.tolist() == [20, 21, 22, 23, 4, 5, 6, 7]
    with pytest.raises(ValueError):
        rotate_batch(rand(1, 3, 4, 5))


def test_hsakd_losses_match_numpy():
    temp = 3.0
    s, t = rand(8, 5, seed=40), rand(8, 5, seed=41)
    sa = [rand(8, 20, seed=42), rand(8, 20, seed=43)]
    ta = [rand(8, 20, seed=44), rand(8, 20, seed=45)]

    def kd(a, b):
        pa, pb = np.exp(np_log_softmax(a / temp)), np.exp(np_log_softmax(b / temp))
        return temp**2 * np_kl_rows(pb, pa).mean()

    ref = kd(npy(s), npy(t)) + sum(kd(npy(a), npy(b)) for a, b in zip(sa, ta))
    assert hsakd_loss(s, t, sa, ta, temp).item() == pytest.approx(ref, rel=1e-10)
    assert hsakd_loss(s, s, sa, sa, temp).item() == pytest.approx(0.0, abs=1e-12)
    joint = torch.tensor([0, 1, 2, 3, 16, 17, 18, 19])
    ce_ref = sum(-np_log_softmax(npy(a))[np.arange(8), joint.numpy()].mean() for a in sa)
    assert aux_ce_loss(sa, joint).item() == pytest.approx(ce_ref, rel=1e-10)
    assert_teacher_gets_no_grad(lambda u, v: hsakd_loss(u, v, sa, ta, temp), s, t)
    ta_leaf = [a.clone().requires_grad_(True) for a in ta]
    sa_leaf = [a.clone().requires_grad_(True) for a in sa]
    hsakd_loss(s, t, sa_leaf, ta_leaf, temp).backward()
    assert all(a.grad is None for a in ta_leaf) and all(a.grad is not None for a in sa_leaf)
