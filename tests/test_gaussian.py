"""The synthetic Gaussian study: exact posterior, end-to-end grid, resume."""
import math

import numpy as np
import pytest
import torch

from mcmi.data.synthetic import bayes_posterior, make_gaussian_task
from mcmi.engine.stacked_mlp import StackedJobs, StackedMLP, train_stacked
from mcmi.experiments.gaussian import GaussianStudyConfig, run_gaussian_study
from mcmi.reports.gaussian import direction_checks, write_gaussian_report


def test_posterior_matches_bayes_rule_in_numpy():
    rng = np.random.default_rng(0)
    means, x, s = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), 1.7
    dens = np.stack([np.exp(-((x - m) ** 2).sum(1) / (2 * s * s)) for m in means], 1)
    ref = dens / dens.sum(1, keepdims=True)
    got = bayes_posterior(torch.tensor(x), torch.tensor(means), s).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_task_layout_and_noise_parameterizations():
    t = make_gaussian_task(2.0, seed=3, n=2000)
    assert [len(t.split_index[k]) for k in ("train", "val", "test")] == [1800, 100, 100]
    assert set(torch.unique(t.means).tolist()) <= {-2.0, 0.0, 2.0}
    r = make_gaussian_task(2.0, seed=3, n=2000, noise=6.0, noise_is="variance")
    assert r.std == pytest.approx(math.sqrt(6.0))
    assert [len(r.split_index[k]) for k in ("train", "val", "test")] == [100, 100, 1800]
    resid = (r.x - r.means[r.y]).std()
    assert float(resid) == pytest.approx(math.sqrt(6.0), rel=0.05)
    all_idx = torch.cat(list(t.split_index.values()))
    assert torch.equal(all_idx.sort().values, torch.arange(2000))
    with pytest.raises(ValueError, match="noise_is"):
        make_gaussian_task(1.0, 0, noise_is="sigma")


def test_tiny_grid_end_to_end_and_report(tmp_path):
    cfg = GaussianStudyConfig(deltas=[4.0], seeds=[0, 1], n=1500, epochs=6, finetune_epochs=2, lam=0.2)
    res = run_gaussian_study(cfg, tmp_path)
    assert len(res["runs"]) == 2
    r = res["runs"][0]
    assert r["targets"]["ground_truth"]["pdist_test"]["fro"] == 0.0
    # one-hot Pdist is ||e_y - P*||_F over the test split, recomputed here
    task = make_gaussian_task(4.0, 0, n=1500)
    _, y, post = task.split("test")
    ref = float((torch.nn.functional.one_hot(y, 10).double() - post.double()).norm())
    assert r["targets"]["one_hot"]["pdist_test"]["fro"] == pytest.approx(ref, rel=1e-6)
    assert r["bayes_accuracy"]["empirical"] > 0.9
    assert r["teachers"]["mll"]["test"]["accuracy"] > 0.5  # learned something at d=4
    assert len(direction_checks(res)) == 1
    report = write_gaussian_report(res, tmp_path, command="test")
    text = report.read_text()
    assert "Pdist" in text and (tmp_path / "table5.png").exists()
    # a rerun resumes from the finished phases and reproduces the results exactly
    again = run_gaussian_study(cfg, tmp_path)
    assert again["runs"] == res["runs"]


def test_stacked_training_resumes_exactly(tmp_path):
    n, c = 96, 3
    x = torch.randn(1, n, 4)
    y = torch.randint(0, c, (1, n))
    jobs = StackedJobs(x, torch.tensor([0, 0]), torch.nn.functional.one_hot(y, c).float().repeat(2, 1, 1),
                       torch.zeros(2))

    def fresh():
        gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
        return StackedMLP.init(2, (4, 8, c), [torch.Generator().manual_seed(s) for s in (1, 2)]), gens

    ref, gens = fresh()
    train_stacked(ref, jobs, 5, 1e-2, 16, gens)

    class Stop(Exception):
        pass

    def killer(done, total):
        if done == 3:
            raise Stop

    ck = tmp_path / "ck.pt"
    st, gens = fresh()
    with pytest.raises(Stop):
        train_stacked(st, jobs, 5, 1e-2, 16, gens, progress=killer, checkpoint=ck, checkpoint_every=1)
    st, gens = fresh()  # a new process: fresh objects, state only from the file
    train_stacked(st, jobs, 5, 1e-2, 16, gens, checkpoint=ck, checkpoint_every=1)
    for a, b in zip(st.params, ref.params):
        assert torch.equal(a, b)
    ck.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="ck.pt"):
        train_stacked(fresh()[0], jobs, 5, 1e-2, 16, fresh()[1], checkpoint=ck)
