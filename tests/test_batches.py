"""Standard batches: what a torch DataLoader yields ((x, y), (x, y, index)) gives the same numbers
as mcmi's dict batches in evaluate, MCMI.prepare, methods and the Trainer; MCMI.prepare has no
side effect on the model it measures."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import rows  # tests/ is on sys.path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import mcmi
from mcmi.data.batch import BatchError, as_batch, require_fields
from mcmi.engine import TrainConfig, Trainer
from mcmi.methods import KD, MCMI, MLL

C, N = 4, 48


class SmallCNN(nn.Module):
    """A plain module with batch norm (its train/eval difference is what prepare must keep)."""

    def __init__(self, width=6, num_classes=C):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def data(n=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.randn(n, 3, 8, 8, generator=g) + y[:, None, None, None] * 0.5
    return x, y


def dict_batches(x, y, bs):
    return [{"image": x[i:i + bs], "label": y[i:i + bs], "index": torch.arange(i, min(i + bs, len(x)))}
            for i in range(0, len(x), bs)]


def model(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN()
    m.train()
    with torch.no_grad():  # running statistics away from their initial values
        m(data(16, seed=5)[0] * 2 + 1)
    return m


def buffers(m):
    return {k: v.clone() for k, v in m.named_buffers()}


# ------------------------------------------------------------------------------------ the form
def test_as_batch_forms_and_errors():
    x, y = data(4)
    idx = torch.arange(4)
    assert as_batch((x, y)).keys() == {"image", "label"}
    b = as_batch([x, y, idx])
    assert b["image"] is x and b["label"] is y and b["index"] is idx
    d = {"image": x, "label": y}
    assert as_batch(d) is d
    assert as_batch((x, [0, 1, 2, 3]))["label"].tolist() == [0, 1, 2, 3]
    assert as_batch((x, y), ("image", "target")).keys() == {"image", "target"}
    for bad in ((x,), [x], (x, y, idx, idx), x, 3):
        with pytest.raises(BatchError) as err:
            as_batch(bad)
        assert "\n" not in str(err.value) and "(x, y)" in str(err.value)
    with pytest.raises(BatchError, match="no 'image'.*'x'"):
        as_batch({"x": x, "y": y})
    with pytest.raises(BatchError, match="evaluate needs the batch field 'label'"):
        require_fields({"image": x}, ("label",), "evaluate")
    with pytest.raises(BatchError, match=r"\(x, y\)"):
        mcmi.evaluate(SmallCNN(), [(x,)], C)


# ------------------------------------------------------------------------------- entry points
def test_evaluate_on_tuples_equals_dicts():
    x, y = data()
    m = model()
    ref = mcmi.evaluate(m, dict_batches(x, y, 10), C)
    for loader in (DataLoader(TensorDataset(x, y), batch_size=10),
                   DataLoader(TensorDataset(x, y, torch.arange(N)), batch_size=10)):
        res = mcmi.evaluate(m, loader, C)
        assert (res.accuracy, res.log_likelihood, res.cmi, res.n) == (
            ref.accuracy, ref.log_likelihood, ref.cmi, ref.n)
        assert torch.equal(res.confusion, ref.confusion)
    assert m.training  # evaluate restores the mode


def test_mcmi_prepare_on_tuples_equals_dicts():
    x, y = data()
    a, b = MCMI(model()), MCMI(model())
    a.prepare(dict_batches(x, y, 12))
    b.prepare(DataLoader(TensorDataset(x, y), batch_size=12))
    assert torch.equal(a.centroids, b.centroids)
    out_a, out_b = a.train()(dict_batches(x, y, 12)[0]), b.train()((x[:12], y[:12]))
    for k in out_a.losses:
        assert torch.equal(out_a.losses[k], out_b.losses[k])


def test_mcmi_prepare_keeps_bn_statistics_and_uses_train_mode_outputs():
    x, y = data()
    m = model()
    m.eval()
    m.bn.train()  # a mixed mode must come back as it was, too
    before, modes = buffers(m), [mod.training for mod in m.modules()]
    with torch.no_grad():
        eval_logits = copy.deepcopy(m).eval()(x)
    method = MCMI(m)
    method.prepare(DataLoader(TensorDataset(x, y), batch_size=12))
    after = buffers(m)
    assert before.keys() == after.keys()
    for k in before:  # bit-identical running_mean / running_var / num_batches_tracked
        assert before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]), k
    assert [mod.training for mod in m.modules()] == modes
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(m).eval()(x), eval_logits)  # the teacher is unchanged
    # the centroids are still those of the train-mode outputs (batch statistics), per batch
    ref = copy.deepcopy(m).train()
    with torch.no_grad():
        p = torch.cat([ref(x[i:i + 12]).softmax(1) for i in range(0, N, 12)])
        p_eval = eval_logits.softmax(1)
    want = torch.stack([p[y == k].mean(0) for k in range(C)])
    torch.testing.assert_close(method.centroids, want, rtol=1e-5, atol=1e-7)
    eval_q = torch.stack([p_eval[y == k].mean(0) for k in range(C)])
    assert not torch.allclose(want, eval_q, atol=1e-3)  # the mode matters for this model


def test_methods_take_tuples():
    x, y = data(12)
    torch.manual_seed(0)
    student, teacher = SmallCNN(), SmallCNN(width=8)
    kd = KD(student, teacher).train()
    a, b = kd({"image": x, "label": y}), kd((x, y))
    assert torch.equal(a.total, b.total)
    assert set(KD(student, teacher, ce_weight=0.0).required_fields()) == {"image"}
    with pytest.raises(BatchError, match="KD needs the batch field 'label'"):
        kd({"image": x})


# ------------------------------------------------------------------------------------ trainer
@pytest.mark.parametrize("method_fn", [MLL, MCMI, lambda m: KD(m, model(seed=3))],
                         ids=["mll", "mcmi", "kd"])
def test_trainer_on_a_dataloader_of_tuples_equals_dict_batches(tmp_path, method_fn):
    x, y = data()
    xt, yt = data(20, seed=1)
    cfg = TrainConfig(epochs=2, lr=0.05, schedule="constant", deterministic=True, seed=3,
                      progress=False, fold_teacher_bn=False)
    results = {}
    for kind in ("dict", "tuple"):
        if kind == "dict":
            train, test = dict_batches(x, y, 16), dict_batches(xt, yt, 10)
        else:
            train = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
            test = DataLoader(TensorDataset(xt, yt), batch_size=10)
        method = method_fn(model())
        trainer = Trainer(method, train, test, cfg, tmp_path / kind, C)
        trainer.fit()
        results[kind] = (rows(tmp_path / kind), {k: v.clone() for k, v in method.state_dict().items()})
    assert results["dict"][0] == results["tuple"][0]
    assert len(results["tuple"][0]) == 2 and "val_cmi" in results["tuple"][0][-1]
    for k, v in results["dict"][1].items():
        assert torch.equal(v, results["tuple"][1][k]), k
