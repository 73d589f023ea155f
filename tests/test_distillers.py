"""Every registered distiller on the one interface: builds from tiny models, produces finite
named losses, trains only the student and its own modules, checkpoints them (not the teacher),
and lowers its distillation loss on a fixed batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import ConvNet, gloo_group  # noqa: E402  (tests/ is on sys.path)

from mcmi.methods import METHODS, Distiller, method_class, resolve_test_options
from mcmi.methods.crd import CRD, ContrastMemory
from mcmi.methods.hsakd import HSAKD, HSAKDTeacher
from mcmi.methods.modules import warmup_factor
from mcmi.models import create_model, list_models

NUM_CLASSES = 5
BATCH = 8
# the paper's distillers that own trainable modules (connectors, embeddings, regressors, ABFs,
# heads) and those that own none; a method added later is checked for whichever it has
WITH_MODULES = {"fitnet", "cc", "vid", "crd", "reviewkd", "hsakd"}
WITHOUT_MODULES = {"kd", "dkd", "at", "pkt", "sp", "rkd"}


def TinyNet(widths=(4, 4, 8, 8)):
    return ConvNet(widths, NUM_CLASSES)


def distiller_names():
    return sorted(
        n
        for n in METHODS.names()
        if isinstance(METHODS.get(n), type) and issubclass(METHODS.get(n), Distiller)
    )


def make_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(BATCH, 3, 32, 32, generator=g),
        "label": torch.arange(BATCH) % NUM_CLASSES,
        "index": torch.arange(BATCH),
    }


def build(name, student, teacher, batch):
    """A fast instance from the method's own ``test_options`` (no name branches here)."""
    options = resolve_test_options(method_class(name), student, teacher)
    method = METHODS.build(name, student, teacher, **options)
    method.prepare([batch])
    return method.train()


def distill_total(out):
    return sum(v for k, v in out.losses.items() if k != "ce")


def test_all_paper_methods_are_registered():
    names = set(distiller_names())
    assert {
        "kd",
        "at",
        "pkt",
        "sp",
        "cc",
        "rkd",
        "vid",
        "crd",
        "dkd",
        "reviewkd",
        "hsakd",
        "fitnet",
    } <= names
    assert "hsakd_teacher" in METHODS.names()


@pytest.mark.parametrize("name", distiller_names())
def test_distiller_interface_and_training(name):
    torch.manual_seed(0)
    student, teacher = TinyNet((4, 4, 8, 8)), TinyNet((6, 6, 12, 16))
    batch = make_batch()
    method = build(name, student, teacher, batch)
    assert set(method.batch_keys) <= set(batch)

    out = method(batch, epoch=0)
    assert out.logits.shape == (BATCH, NUM_CLASSES)
    assert "ce" in out.losses and len(out.losses) >= 2
    for key, value in out.losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
    out.total.backward()

    # the teacher: frozen, eval mode, no gradients, not trained, not checkpointed
    assert not method.teacher.training
    assert all(not p.requires_grad and p.grad is None for p in method.teacher.parameters())
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not any(id(p) in trainable for p in method.teacher.parameters())
    state = method.state_dict()
    assert not any(k.startswith("teacher.") for k in state)
    assert any(k.startswith("model.") for k in state)
    # the method's own modules: trained and checkpointed
    extra = {n: p for n, p in method.named_parameters() if not n.startswith(("model.", "teacher."))}
    if name in WITH_MODULES | WITHOUT_MODULES:
        assert bool(extra) == (name in WITH_MODULES), sorted(extra)
    for pname, p in extra.items():
        assert id(p) in trainable, pname
        assert pname in state, pname
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in extra.values()) or not extra
    student_grads = [p.grad for p in method.student.parameters() if p.grad is not None]
    assert student_grads and all(torch.isfinite(g).all() for g in student_grads)

    # a checkpoint round-trips into a fresh instance
    fresh = build(name, TinyNet((4, 4, 8, 8)), teacher, batch)
    fresh.load_state_dict(state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k

    # 20 steps on the distillation terms alone lower them on a fixed batch (their gradient
    # points downhill; with CE in the sum, KD at a near-uniform start would rise first)
    torch.manual_seed(1)
    teacher_before = {k: v.clone() for k, v in method.teacher.state_dict().items()}
    method.zero_grad(set_to_none=True)
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    first = None
    for _ in range(20):
        out = method(batch, epoch=100)
        loss = distill_total(out)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = distill_total(method(batch, epoch=100)).item()
    assert last < first, f"{name}: distillation loss {first:.4g} -> {last:.4g}"
    for k, v in method.teacher.state_dict().items():  # weights and batch-norm statistics
        assert torch.equal(v, teacher_before[k]), k


def test_zoo_models_if_registered():
    if not {"resnet8", "resnet20"} <= set(list_models()):
        pytest.skip("CIFAR zoo not registered")
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 10), create_model("resnet20", 10)
    batch = {
        "image": torch.randn(4, 3, 32, 32),
        "label": torch.tensor([0, 1, 2, 3]),
        "index": torch.arange(4),
    }
    for name in distiller_names():
        method = METHODS.build(name, student, teacher, **resolve_test_options(method_class(name), student, teacher))
        method.prepare([batch])
        out = method.train()(batch)
        assert all(torch.isfinite(v) for v in out.losses.values()), name
        out.total.backward()
        student.zero_grad(set_to_none=True)


def test_unknown_option_is_an_error():
    with pytest.raises(TypeError, match="at_wieght"):
        METHODS.build("at", TinyNet(), TinyNet(), at_wieght=1.0)


def test_dkd_and_reviewkd_warmup():
    assert warmup_factor(0, 20) == pytest.approx(1 / 20)
    assert warmup_factor(19, 20) == 1.0 and warmup_factor(50, 20) == 1.0
    assert warmup_factor(0, 0) == 1.0
    torch.manual_seed(0)
    batch = make_batch()
    method = METHODS.build("dkd", TinyNet(), TinyNet((6, 6, 12, 16)))
    with torch.no_grad():
        early, late = method(batch, epoch=0).losses["dkd"], method(batch, epoch=30).losses["dkd"]
    assert early.item() == pytest.approx(late.item() / 20, rel=1e-5)


def test_crd_memory_bank():
    mem = ContrastMemory(num_data=40, feat_dim=6, num_negatives=50, negatives="class")
    assert mem.memory_bytes == 2 * 40 * 6 * 4 + 40 * 8 + 2 * 4
    assert ContrastMemory.bank_bytes(1_281_167, 128) == 1_311_915_008
    labels = torch.arange(40) % 4
    labels[-5:] = -1  # outside the training subset: never a negative
    mem.set_labels(labels)
    index = torch.tensor([0, 1, 2, 3])
    neg = mem.sample_negatives(index, labels[index])
    assert neg.shape == (4, 50)
    assert (labels[neg] != labels[index][:, None]).all() and (labels[neg] >= 0).all()
    uni = ContrastMemory(num_data=10, feat_dim=6, num_negatives=200, negatives="uniform")
    neg = uni.sample_negatives(index)
    assert (neg != index[:, None]).all() and neg.min() >= 0 and neg.max() < 10
    # momentum update keeps rows on the unit sphere and moves them towards the embedding
    emb = F.normalize(torch.randn(4, 6), dim=1)
    before = (mem.memory_s[index] * emb).sum(1)
    mem.train()
    s_scores, t_scores = mem(emb, emb, index, labels[index])
    assert s_scores.shape == t_scores.shape == (4, 51) and (s_scores > 0).all()
    assert torch.allclose(mem.memory_s[index].norm(dim=1), torch.ones(4), atol=1e-6)
    assert ((mem.memory_s[index] * emb).sum(1) > before).all()
    assert (mem.normalizers > 0).all()
    one_class = ContrastMemory(num_data=6, feat_dim=4, num_negatives=3)
    one_class.set_labels(torch.zeros(6, dtype=torch.long))
    with pytest.raises(RuntimeError, match="one class"):
        one_class.sample_negatives(index[:2])


def test_crd_under_autocast_is_finite():
    torch.manual_seed(0)
    crd = CRD(TinyNet(), TinyNet((6, 6, 12, 16)), num_data=BATCH, num_negatives=16)
    crd.prepare([make_batch()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crd.train()(make_batch())
    assert out.losses["crd"].dtype == torch.float32 and torch.isfinite(out.total)


def test_crd_prepare_reads_dataset_labels_and_requires_them():
    student, teacher = TinyNet(), TinyNet((6, 6, 12, 16))
    crd = CRD(student, teacher, num_data=BATCH, num_negatives=4)
    with pytest.raises(RuntimeError, match="prepare"):
        crd(make_batch())

    class Loader:  # the fast path: dataset labels plus the subset the loader yields
        dataset = type("D", (), {"labels": torch.arange(BATCH) % 2})()
        indices = torch.arange(BATCH - 2)

        def __iter__(self):
            raise AssertionError("labels must come from the dataset, not a pass over the data")

    crd.prepare(Loader())
    assert crd.memory.labels.tolist() == [0, 1, 0, 1, 0, 1, -1, -1]
    assert torch.isfinite(crd(make_batch()).total)
    assert "index" in CRD.batch_keys


def test_hsakd_teacher_trains_heads_only_and_heads_round_trip(tmp_path):
    torch.manual_seed(0)
    teacher = TinyNet((6, 6, 12, 16))
    ref = {k: v.clone() for k, v in teacher.state_dict().items()}
    method = METHODS.build("hsakd_teacher", teacher).train()
    assert not method.model.training
    trainable = method.trainable_parameters()
    assert trainable and all(
        id(p) in {id(q) for q in method.aux_heads.parameters()} for p in trainable
    )
    batch = make_batch()
    opt = torch.optim.Adam(trainable, lr=1e-2)
    first = None
    for _ in range(20):
        out = method(batch)
        first = out.losses["aux_ce"].item() if first is None else first
        assert out.logits.shape == (BATCH, NUM_CLASSES)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    assert method(batch).losses["aux_ce"].item() < first
    for k, v in teacher.state_dict().items():  # frozen backbone, batch-norm statistics included
        assert torch.equal(v, ref[k]), k
    assert {k.split(".")[0] for k in method.state_dict()} == {"model", "aux_heads"}

    path = tmp_path / "heads.pt"
    method.save_heads(path)
    for source in (path, str(path), method.state_dict(), {"method": method.state_dict()}, method):
        student = HSAKD(TinyNet(), teacher, teacher_heads=source)
        for k, v in method.aux_heads.state_dict().items():
            assert torch.equal(student.teacher.heads.state_dict()[k], v)
        assert not any(k.startswith("teacher") for k in student.state_dict())
    with pytest.raises(ValueError, match="teacher_heads"):
        HSAKD(TinyNet(), teacher)
    with pytest.raises(ValueError, match="do not fit"):
        HSAKD(TinyNet(), TinyNet((6, 6, 12, 32)), teacher_heads=path)


def test_hsakd_logits_are_those_of_the_unrotated_images():
    torch.manual_seed(0)
    teacher = TinyNet((6, 6, 12, 16))
    batch = make_batch()
    for method in (
        HSAKD(TinyNet(), teacher, teacher_heads=HSAKDTeacher(teacher)),
        HSAKDTeacher(teacher),
    ):
        method.eval()  # batch-norm running statistics: rows do not interact
        with torch.no_grad():
            out = method(batch)
            expected = method.model(batch["image"])
        assert torch.allclose(out.logits, expected, atol=1e-5)
        if "ce" in out.losses:
            assert out.losses["ce"].item() == pytest.approx(
                F.cross_entropy(expected, batch["label"]).item(), rel=1e-5
            )


def _ddp_memory_worker(rank, world, init_file, out_dir):
    with gloo_group(init_file, rank, world):
        torch.manual_seed(0)  # the same initial bank on both processes
        mem = ContrastMemory(num_data=12, feat_dim=4, num_negatives=5, negatives="uniform").train()
        torch.manual_seed(100 + rank)
        n = 3 if rank == 0 else 2  # unequal shares
        index = torch.arange(n) + 6 * rank
        emb = F.normalize(torch.randn(n, 4), dim=1)
        mem(emb, emb, index)
        torch.save({"memory_s": mem.memory_s, "normalizers": mem.normalizers}, f"{out_dir}/{rank}.pt")


@pytest.mark.ddp
def test_crd_memory_stays_identical_across_processes(tmp_path):
    import torch.multiprocessing as mp

    torch.manual_seed(0)
    initial = ContrastMemory(
        num_data=12, feat_dim=4, num_negatives=5, negatives="uniform"
    ).memory_s.clone()
    mp.spawn(_ddp_memory_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    a, b = torch.load(tmp_path / "0.pt"), torch.load(tmp_path / "1.pt")
    assert torch.equal(a["memory_s"], b["memory_s"]) and torch.equal(
        a["normalizers"], b["normalizers"]
    )
    changed = (a["memory_s"] != initial).any(1).nonzero().squeeze(1).tolist()
    assert changed == [0, 1, 2, 6, 7]  # rows of both processes' samples, and only those


def test_crd_shared_negatives_score_like_per_anchor_candidates():
    import numpy as np

    torch.manual_seed(0)
    mem = ContrastMemory(num_data=50, feat_dim=8, num_negatives=7, negatives="shared")
    emb_s = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    emb_t = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    index = torch.tensor([3, 9, 17, 30, 44])
    torch.manual_seed(1)
    shared = mem._shared_scores(emb_s, emb_t, index)
    torch.manual_seed(1)
    neg = torch.randint(0, 50, (7,))  # the draw _shared_scores makes
    cand = torch.cat([index[:, None], neg.expand(5, 7)], 1)
    per_anchor = mem._per_anchor_scores(emb_s, emb_t, index, None, cand)
    for a, b in zip(shared, per_anchor):
        assert a.shape == (5, 8)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=0)
    # by hand, numpy: exp(<anchor, bank row> / T), positive first
    rows = np.concatenate([index.numpy(), neg.numpy()])
    ref = np.exp(emb_s.numpy() @ mem.memory_t.numpy()[rows].T / 0.07)
    ref = np.concatenate([np.diag(ref[:, :5])[:, None], ref[:, 5:]], 1)
    np.testing.assert_allclose(shared[0].numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize("negatives", ["class", "uniform", "given"])
def test_crd_whole_bank_scoring_equals_gathered_rows_in_value_and_gradient(negatives):
    """scoring="bank" (one product with the whole bank) must give CRD's gathered-row scores, and
    the same gradients even though the banks are updated in place before backward runs."""
    import numpy as np

    n, d, k, num_data = 6, 8, 40, 30  # K > num_data: candidates repeat, as they do on CIFAR
    labels = torch.arange(num_data) % 3
    index = torch.tensor([0, 4, 8, 13, 21, 29])
    given = torch.randint(0, num_data, (n, k + 1), generator=torch.Generator().manual_seed(5))
    given[:, 0] = index
    results = {}
    for scoring in ("gather", "bank"):
        torch.manual_seed(0)
        mem = ContrastMemory(num_data, d, k, negatives="uniform" if negatives == "uniform"
                             else "class", scoring=scoring).train()
        mem.set_labels(labels)
        bank_t = mem.memory_t.clone()
        emb_s = F.normalize(torch.randn(n, d), dim=1).requires_grad_()
        emb_t = F.normalize(torch.randn(n, d), dim=1).requires_grad_()
        torch.manual_seed(1)  # the same negative draw for both scorings
        s, t = mem(emb_s, emb_t, index, labels[index], given if negatives == "given" else None)
        assert not torch.equal(mem.memory_t, bank_t)  # the in-place update happened
        weights = torch.linspace(0.5, 2.0, k + 1)
        ((s * weights).sum() + (t.log() * weights).sum()).backward()
        results[scoring] = (s.detach(), t.detach(), emb_s.grad, emb_t.grad, mem.memory_t.clone())
        if negatives == "given":  # by hand: exp(<anchor, row> / T) / Z with Z = mean * num_data
            raw = np.exp(np.einsum("nd,nkd->nk", emb_s.detach().numpy(),
                                   bank_t.numpy()[given.numpy()]) / 0.07)
            np.testing.assert_allclose(s.detach().numpy(), raw / (raw.mean() * num_data), rtol=1e-5)
    for a, b in zip(results["gather"], results["bank"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_crd_scoring_auto_picks_the_bank_product_only_for_banks_within_16_k():
    assert ContrastMemory(50_000, 8, 16384).scoring == "bank"
    assert ContrastMemory(16 * 16385 + 1, 8, 16384).scoring == "gather"
    assert ContrastMemory(100, 8, 4, scoring="gather").scoring == "gather"
    with pytest.raises(ValueError, match="scoring"):
        ContrastMemory(100, 8, 4, scoring="dense")
    mem = ContrastMemory(50_000, 128, 16384)
    assert mem.step_bytes(64) == 2 * (2 * 64 * 50_000 + 50_000 * 128 + 64 * 16385) * 4
