"""The stacked many-MLP trainer against plain autograd training of nn.Modules."""
import math

import torch
import torch.nn.functional as F

from mcmi.engine.stacked_mlp import StackedJobs, StackedMLP, loss_grad, train_stacked
from mcmi.models.mlp import MLP


def _autograd_loss(logits, targets, lam, log_q):
    logp = F.log_softmax(logits, -1)
    ce = -(targets * logp).sum(-1).mean()
    kl = (logp.exp() * (logp - log_q)).sum(-1).mean()
    return ce - lam * kl


def test_loss_grad_matches_autograd():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    t = torch.softmax(torch.randn(3, 7, 5, generator=g, dtype=torch.float64), -1)
    log_q = torch.log_softmax(torch.randn(3, 7, 5, generator=g, dtype=torch.float64), -1)
    lam = torch.tensor([0.0, 0.3, 1.5], dtype=torch.float64)
    loss, grad = loss_grad(z, t, lam, log_q)
    for m in range(3):
        zm = z[m].clone().requires_grad_(True)
        ref = _autograd_loss(zm, t[m], lam[m], log_q[m])
        ref.backward()
        assert math.isclose(float(loss[m].detach()), float(ref), rel_tol=1e-10)
        assert torch.allclose(grad[m], zm.grad, atol=1e-12)


def test_init_distribution_matches_nn_linear_bounds():
    gens = [torch.Generator().manual_seed(s) for s in range(4)]
    st = StackedMLP.init(4, (30, 128, 128, 10), gens)
    for w, fan_in in zip(st.weights, (30, 128, 128)):
        bound = 1 / math.sqrt(fan_in)
        assert w.abs().max() <= bound
        # uniform(-b, b) has std b/sqrt(3)
        assert abs(float(w.std()) - bound / math.sqrt(3)) < 0.05 * bound
    # independent models differ
    assert not torch.equal(st.weights[1][0], st.weights[1][1])


def test_stack_of_models_equals_separate_autograd_training():
    torch.manual_seed(0)
    n, d, c, b = 64, 6, 4, 16
    x = torch.randn(2, n, d)
    y = torch.randint(0, c, (2, n))
    targets = torch.stack([F.one_hot(y[0], c).float(), torch.softmax(torch.randn(n, c), -1)])
    log_q = torch.log_softmax(torch.randn(2, c, c), -1)
    lam = torch.tensor([0.5, 0.0])
    modules = [MLP(d, c, (8, 8)) for _ in range(2)]
    stack = StackedMLP.from_modules(modules)
    jobs = StackedJobs(x=x, data_id=torch.tensor([0, 1]), targets=targets, lam=lam, labels=y, log_centroids=log_q)
    train_stacked(stack, jobs, epochs=3, lr=1e-2, batch_size=b, gens=[torch.Generator().manual_seed(s) for s in (1, 2)])
    # reference: each module alone, autograd + torch Adam, the same per-epoch permutations
    for m, mod in enumerate(modules):
        opt = torch.optim.Adam(mod.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(m + 1)
        for _ in range(3):
            order = torch.randperm(n, generator=gen)
            for s in range(0, n, b):
                i = order[s : s + b]
                loss = _autograd_loss(mod(x[m, i]), targets[m, i], lam[m], log_q[m][y[m, i]])
                opt.zero_grad()
                loss.backward()
                opt.step()
    for got, ref in zip(stack.to_modules(), modules):
        for p, q in zip(got.parameters(), ref.parameters()):
            assert torch.allclose(p, q, atol=1e-5), (p - q).abs().max()


def test_mcmi_term_raises_cmi_and_minus_sign_matters():
    """Sign guard: training with lam > 0 must end with a larger KL to the frozen centroids than
    lam = 0; flipping the sign of the term (lam < 0) must lower it."""
    torch.manual_seed(1)
    n, d, c = 256, 5, 3
    means = torch.randn(c, d) * 2
    y = torch.randint(0, c, (n,))
    x = (means[y] + torch.randn(n, d))[None]
    base = MLP(d, c, (16, 16))
    pre = StackedMLP.from_modules([base])
    jobs0 = StackedJobs(x, torch.tensor([0]), F.one_hot(y, c).float()[None], torch.tensor([0.0]))
    train_stacked(pre, jobs0, 20, 1e-2, 32, [torch.Generator().manual_seed(0)])
    p = pre.predict_proba(x)[0]
    q = torch.stack([p[y == k].mean(0) for k in range(c)])
    kls = {}
    for lam in (-0.5, 0.0, 0.5):
        st = pre.select([0])
        jobs = StackedJobs(x, torch.tensor([0]), F.one_hot(y, c).float()[None], torch.tensor([lam]),
                           labels=y[None], log_centroids=q.log()[None])
        train_stacked(st, jobs, 5, 1e-3, 32, [torch.Generator().manual_seed(5)])
        pp = st.predict_proba(x)[0]
        kls[lam] = float((pp * (pp.log() - q[y].log())).sum(1).mean())
    assert kls[0.5] > kls[0.0] > kls[-0.5]
