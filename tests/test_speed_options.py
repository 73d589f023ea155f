"""Speed options: batch-norm folding of frozen teachers, cached teacher logits, torch.compile,
and the distillation benchmark (benchmarks/bench_kd.py)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mcmi.data import ImageDataset, TensorLoader
from mcmi.data.augment import CropFlipParams
from mcmi.data.teacher_cache import (
    CachedTeacherLoader,
    cache_bytes,
    precompute_teacher_logits,
    sample_view_pool,
    with_cached_teacher,
)
from mcmi.data.transforms import RandomCropFlip
from mcmi.models import create_model
from mcmi.models.fold import find_conv_bn_pairs, fold_batchnorm

ROOT = Path(__file__).resolve().parents[1]


def _features(model, x):
    f = model.forward_features(x)
    return [f.logits, f.pooled, *f.stages, *f.preact]


def _trained_like(name: str, dtype=torch.float32) -> nn.Module:
    """A zoo model whose batch norms hold realistic statistics and non-trivial affine terms."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).to(dtype)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    model.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32, generator=g).to(dtype))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model.eval()


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# every BN of these models follows a conv whose output nothing else reads, except WRN's
# pre-activation BNs (on residual sums or the stem output): its bn1s and the final bn1
FOLD_MODELS = ["resnet20", "wrn_16_2", "vgg8", "mobilenetv2", "shufflenetv2", "shufflenetv1",
               "resnet8x4"]


@pytest.mark.parametrize("name", FOLD_MODELS)
def test_fold_batchnorm_keeps_outputs_and_features(name):
    model = _trained_like(name)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = _features(model, x)
    n_bn = _count_bn(model)
    folded = fold_batchnorm(model)
    expected_left = (sum(1 for n, m in model.named_modules()
                         if isinstance(m, nn.BatchNorm2d) and n.endswith("bn1"))
                     if name.startswith("wrn") else 0)
    assert _count_bn(folded) == expected_left
    assert len(folded.folded_pairs) == n_bn - expected_left > 0
    assert not folded.training
    with torch.no_grad():
        after = _features(folded, x)
        again = _features(model, x)
    assert _count_bn(model) == n_bn  # the original is untouched
    assert len(after) == len(before)
    for a, b, c in zip(before, after, again):
        assert torch.equal(a, c)
        scale = max(1.0, float(a.abs().max()))
        assert float((a - b).abs().max()) <= 1e-5 * scale


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "mobilenetv2"])
def test_fold_batchnorm_exact_in_float64(name):
    model = _trained_like(name, torch.float64)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    folded = fold_batchnorm(model)
    with torch.no_grad():
        for a, b in zip(_features(model, x), _features(folded, x)):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


class _SharedConvOutput(nn.Module):
    """conv1 -> bn1 where conv1's output is also added back: must not be folded.
    conv2 -> bn2 with bn2 applied twice: must not be folded. conv3 -> bn3: foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv3, self.bn3 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        c = self.conv1(x)
        y = self.bn1(c) + c
        y = self.bn2(self.bn2(self.conv2(y)))
        return self.bn3(self.conv3(y)).mean((2, 3))


def test_fold_skips_conv_outputs_read_elsewhere():
    torch.manual_seed(0)
    model = _SharedConvOutput()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    model.eval()
    assert find_conv_bn_pairs(model) == [("conv3", "bn3")]
    folded = fold_batchnorm(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)
    assert isinstance(folded.bn3, nn.Identity) and isinstance(folded.bn1, nn.BatchNorm2d)


# ----------------------------------------------------------------------------- teacher cache
def _tiny_dataset(n: int = 24, classes: int = 10) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % classes, [str(i) for i in range(classes)], "tiny")


def _kd(teacher=None):
    from mcmi.methods import KD

    torch.manual_seed(0)
    teacher = teacher if teacher is not None else _trained_like("resnet8")
    return KD(create_model("resnet8", num_classes=10), teacher)


def _loader(ds, **kw):
    return TensorLoader(ds, 8, shuffle=True, augment=RandomCropFlip((0.5,) * 3, (0.25,) * 3),
                        seed=5, **kw)


def test_cached_logits_equal_live_teacher_on_replayed_views():
    ds = _tiny_dataset()
    method = _kd()
    loader = with_cached_teacher(_loader(ds, return_params=True), method, num_views=3)
    assert isinstance(loader, CachedTeacherLoader)
    assert loader.teacher_logits.shape == (len(ds) * 3, 10)
    assert not torch.isnan(loader.teacher_logits).any()
    t = method.teacher.eval()
    seen_views = set()
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            with torch.no_grad():
                live = t(batch["image"])
            torch.testing.assert_close(batch["teacher_logits"], live, rtol=1e-5, atol=1e-5)
            # the image is exactly one of the pooled views of that data-set row
            idx = batch["index"]
            views = [loader.transform.apply(ds.get_images(idx),
                                            loader.pool.select(loader.pool.rows(idx, torch.full_like(idx, v))))
                     for v in range(3)]
            match = torch.stack([(v == batch["image"]).flatten(1).all(1) for v in views], 1)
            assert bool(match.any(1).all())
            seen_views.update((int(i), int(match[j].int().argmax())) for j, i in enumerate(idx))
    assert len(seen_views) > len(ds)  # images change views across epochs


def test_cached_loader_is_deterministic_and_resumes_mid_epoch():
    ds = _tiny_dataset()
    method = _kd()
    a = with_cached_teacher(_loader(ds), method, num_views=4)
    assert a._logits is None  # computed on first use only (a finished run never pays for it)
    logits = a.teacher_logits
    b = CachedTeacherLoader(ds, 8, pool=a.pool, teacher_logits=logits, shuffle=True,
                            augment=a.transform, seed=5)
    a.set_epoch(1)
    b.set_epoch(1)
    first = list(a)
    it = iter(b)
    next(it)
    state = b.state_dict()
    c = CachedTeacherLoader(ds, 8, pool=a.pool, teacher_logits=logits, shuffle=True,
                            augment=a.transform, seed=5)
    c.load_state_dict(state)
    rest = list(c)
    assert len(rest) == len(first) - 1
    for x, y in zip(first[1:], rest):
        assert torch.equal(x["image"], y["image"])
        assert torch.equal(x["teacher_logits"], y["teacher_logits"])


def test_precompute_covers_requested_rows_and_cache_bytes():
    ds = _tiny_dataset(6)
    tf = RandomCropFlip((0.5,) * 3, (0.25,) * 3)
    pool = sample_view_pool(tf, len(ds), (32, 32), 2, seed=0)
    assert isinstance(pool.params, CropFlipParams) and len(pool.params) == 12
    model = _trained_like("resnet8")
    out = precompute_teacher_logits(model, ds, tf, pool, batch_size=5, rows=torch.tensor([0, 1, 7]))
    assert out.shape == (12, 10)
    assert not torch.isnan(out[[0, 1, 7]]).any() and torch.isnan(out[[2, 3]]).all()
    assert cache_bytes(50_000, 4, 100) == 80_000_000


def test_feature_based_methods_keep_live_teacher():
    from mcmi.methods.crd import CRD

    ds = _tiny_dataset()
    torch.manual_seed(0)
    crd = CRD(create_model("resnet8", num_classes=10), _trained_like("resnet8"), num_data=len(ds),
              num_negatives=4)
    loader = _loader(ds)
    assert crd.teacher_signal == "features"
    assert with_cached_teacher(loader, crd, num_views=2) is loader
    assert with_cached_teacher(loader, _kd(), num_views=0) is loader
    # a feature method ignores teacher logits handed to it
    batch = next(iter(loader))
    fake = {**batch, "teacher_logits": torch.zeros(8, 10)}
    torch.testing.assert_close(crd.teacher_logits(fake), crd.teacher(batch["image"]))


def test_kd_training_with_cache_and_folded_teacher_end_to_end(tmp_path, monkeypatch):
    """run_training with train.teacher_cache_views: the teacher runs only to fill the cache."""
    import mcmi.data.teacher_cache as tc
    from mcmi.engine import TrainConfig
    from mcmi.experiments.train import DataSpec, ModelSpec, RunConfig, run_training
    from mcmi.methods import KD

    calls = {"precompute": 0, "live": 0}
    real_pre, real_fwd = tc.precompute_teacher_logits, KD.teacher_forward

    def pre(*a, **k):
        calls["precompute"] += 1
        return real_pre(*a, **k)

    def fwd(self, x):
        calls["live"] += 1
        return real_fwd(self, x)

    monkeypatch.setattr(tc, "precompute_teacher_logits", pre)
    monkeypatch.setattr(KD, "teacher_forward", fwd)
    cfg = RunConfig(
        model=ModelSpec("resnet8"), method="kd", teacher=ModelSpec("resnet8"),
        data=DataSpec(name="cifar100-partial", batch_size=8, eval_batch_size=16,
                      train_subset=24, test_subset=16),
        train=TrainConfig(epochs=2, lr=0.01, teacher_cache_views=2, progress=False),
        device="cpu", out=str(tmp_path / "run"))
    summary = run_training(cfg, resume=False)
    assert calls == {"precompute": 1, "live": 0}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["train_loss_kd"] > 0 for r in rows)
    assert summary is not None


def test_compile_option_compiles_the_step(tmp_path, monkeypatch):
    from mcmi.engine import TrainConfig, Trainer
    from mcmi.methods import MLL

    real_compile = torch.compile
    compiled = []

    def fake_compile(module, **kw):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", fake_compile)
    torch.manual_seed(0)
    batches = [{"image": torch.randn(8, 30), "label": torch.randint(0, 10, (8,)),
                "index": torch.arange(8)} for _ in range(3)]
    method = MLL(create_model("mlp", num_classes=10))
    cfg = TrainConfig(epochs=1, lr=0.01, compile=True, progress=False)
    trainer = Trainer(method, batches, None, cfg, tmp_path / "c", 10)
    summary = trainer.fit()
    assert compiled == [method]
    assert summary is not None and trainer.global_step == 3


# ----------------------------------------------------------------------------- benchmark
def _bench():
    spec = importlib.util.spec_from_file_location("bench_kd", ROOT / "benchmarks" / "bench_kd.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_kd"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_reference_pipeline_matches_batched_augmentation():
    """The benchmark's per-sample Pillow pipeline and mcmi's batched one make the same images
    from the same crop offsets and flips (they do the same work)."""
    bench = _bench()
    ds = _tiny_dataset(6)
    hwc = ds.images.permute(0, 2, 3, 1).numpy()
    ref = bench.RefImages(hwc, ds.labels.numpy())
    params = CropFlipParams(torch.tensor([0, 8, 4, 3, 1, 7]), torch.tensor([8, 0, 4, 5, 2, 6]),
                            torch.tensor([False, True, False, True, True, False]))
    ours = RandomCropFlip(bench.MEAN, bench.STD).apply(ds.images, params)
    for i in range(6):
        theirs = ref.transform(hwc[i], int(params.top[i]), int(params.left[i]), bool(params.flip[i]))
        torch.testing.assert_close(ours[i], theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bench_kd_quick_writes_tables(tmp_path):
    bench = _bench()
    out, js = tmp_path / "kd.md", tmp_path / "kd.json"
    bench.main(["--quick", "--threads", "1", "--out", str(out), "--json", str(js)])
    text = out.read_text()
    for needle in ("resnet56 -> resnet20 KD", "resnet56 -> resnet20 CRD", "wrn_40_2 -> wrn_16_2 KD",
                   "resnet32x4 -> shufflenetv2 KD", "teacher BN folded", "channels_last",
                   "cached teacher logits", "torch.compile (eager)", "Cost of the CMI term",
                   "model-math limit", "Machine:", "Command:"):
        assert needle in text, needle
    res = json.loads(js.read_text())
    for key in ("kd:resnet56>resnet20:ours", "kd:resnet56>resnet20:ref",
                "crd:resnet56>resnet20:ours", "kd:resnet32x4>shufflenetv2:ref"):
        assert res["pairs"][key]["ips"] > 0
    assert res["memory"]["kd:resnet56>resnet20:ours"]["peak_bytes"] > 0
    assert res["compile"]["compiled"]["ips"] > 0
