"""CMI, LL and centroids against independent numpy computations (paper eq. 5, 12, 13)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mcmi.metrics import CMIState, class_centroids, empirical_cmi, log_likelihood, per_class_cmi


def np_cmi(p: np.ndarray, y: np.ndarray):
    """Eq. 12-13 written directly: centroids per class, then the mean KL of each row to its centroid."""
    n, c = p.shape
    kl_sum = 0.0
    per_class = np.full(c, np.nan)
    for k in range(c):
        rows = p[y == k]
        if len(rows) == 0:
            continue
        q = rows.mean(0)
        kls = [sum(pi * math.log(pi / qi) for pi, qi in zip(r, q) if pi > 0) for r in rows]
        kl_sum += sum(kls)
        per_class[k] = np.mean(kls)
    return kl_sum / n, per_class


def _random(n, c, seed, sharp=1.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * sharp
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, rng.integers(0, c, size=n)


@pytest.mark.parametrize("n,c,seed,sharp", [(7, 3, 0, 1.0), (50, 5, 1, 3.0), (200, 10, 2, 0.2)])
def test_cmi_matches_numpy(n, c, seed, sharp):
    p, y = _random(n, c, seed, sharp)
    ref, ref_pc = np_cmi(p, y)
    pt, yt = torch.tensor(p), torch.tensor(y)
    assert empirical_cmi(pt, yt) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    got_pc = per_class_cmi(pt, yt).numpy()
    np.testing.assert_allclose(got_pc, ref_pc, rtol=1e-9, atol=1e-12, equal_nan=True)


def test_centroids_and_ll_match_numpy():
    p, y = _random(40, 4, 3)
    q = class_centroids(torch.tensor(p), torch.tensor(y)).numpy()
    for k in range(4):
        np.testing.assert_allclose(q[k], p[y == k].mean(0), rtol=1e-12)
    assert log_likelihood(torch.tensor(p), torch.tensor(y)) == pytest.approx(np.log(p[np.arange(40), y]).mean())


def test_known_closed_forms():
    # Two samples of one class at (1,0) and (0,1): Q = (1/2, 1/2), KL of each = log 2.
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert empirical_cmi(p, torch.tensor([0, 0])) == pytest.approx(math.log(2))
    # Each sample alone in its class: it is its own centroid, CMI = 0.
    assert empirical_cmi(p, torch.tensor([0, 1])) == pytest.approx(0.0, abs=1e-15)
    # Identical outputs within a class: CMI = 0 whatever they are.
    same = torch.tensor([[0.2, 0.8]] * 5)
    assert empirical_cmi(same, torch.zeros(5, dtype=torch.long)) == pytest.approx(0.0, abs=1e-12)


def test_temperature_raises_cmi_of_peaked_outputs():
    """Paper Sec. 4.1 / Fig. 1: softening confident outputs moves them apart relative to their centroid."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=g)
    logits = 12 * torch.nn.functional.one_hot(y, 5).float() + 2 * torch.randn(300, 5, generator=g)
    vals = []
    for t in (1.0, 4.0):
        s = CMIState.empty(5)
        s.update_logits(logits, y, temperature=t)
        vals.append(s.cmi())
    assert vals[1] > vals[0]


def test_zero_probabilities_are_exact():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 0, 2])
    ref, _ = np_cmi(p.numpy(), y.numpy())
    assert math.isfinite(empirical_cmi(p, y))
    assert empirical_cmi(p, y) == pytest.approx(ref)


def test_absent_classes_and_errors():
    p, y = _random(30, 5, 4)
    y = np.where(y == 3, 0, y)  # class 3 absent
    pt, yt = torch.tensor(p), torch.tensor(y)
    assert torch.isnan(class_centroids(pt, yt)[3]).all()
    assert math.isnan(float(per_class_cmi(pt, yt)[3]))
    assert empirical_cmi(pt, yt) == pytest.approx(np_cmi(p, y)[0])
    with pytest.raises(ValueError, match="empty"):
        empirical_cmi(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="label 7 out of range"):
        empirical_cmi(pt, torch.full((30,), 7))
    with pytest.raises(ValueError, match="not logits"):
        empirical_cmi(torch.randn(30, 5), yt)
    with pytest.raises(ValueError, match="labels must be"):
        empirical_cmi(pt, yt[:10])
    with pytest.raises(ValueError, match="empty"):
        CMIState.empty(3).cmi()


def test_streaming_equals_batch_and_merges():
    p, y = _random(101, 6, 5)
    pt, yt = torch.tensor(p), torch.tensor(y)
    a, b = CMIState.empty(6), CMIState.empty(6)
    for i in range(0, 60, 7):
        a.update_probs(pt[i : min(i + 7, 60)], yt[i : min(i + 7, 60)])
    b.update_probs(pt[60:], yt[60:])
    whole = a.merge(b)
    assert whole.n == 101
    assert whole.cmi() == pytest.approx(np_cmi(p, y)[0], rel=1e-9)
    assert whole.log_likelihood() == pytest.approx(np.log(p[np.arange(101), y]).mean(), rel=1e-9)
    assert whole.accuracy() == pytest.approx((p.argmax(1) == y).mean())
    assert whole.mean_entropy() == pytest.approx(-(p * np.log(p)).sum(1).mean(), rel=1e-9)


def test_logits_path_equals_probs_path():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 7, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 7, (64,), generator=g)
    s = CMIState.empty(7)
    s.update_logits(logits, y)
    assert s.cmi() == pytest.approx(empirical_cmi(logits.softmax(1), y), rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), c=st.integers(2, 8), seed=st.integers(0, 10_000), sharp=st.floats(0.0, 20.0))
def test_property_cmi_nonnegative_and_matches_numpy(n, c, seed, sharp):
    p, y = _random(n, c, seed, sharp)
    got = empirical_cmi(torch.tensor(p), torch.tensor(y))
    assert got >= 0
    assert got == pytest.approx(np_cmi(p, y)[0], rel=1e-6, abs=1e-9)
    # CMI is bounded by the entropy of the outputs given the label, at most log C
    assert got <= math.log(c) + 1e-9
