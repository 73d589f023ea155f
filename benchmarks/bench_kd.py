"""Benchmark: distillation speed of mcmi against the reference loop of the paper's codebases.

One command measures, in one run on one machine, side by side:

- training throughput (images/s) of resnet56 -> resnet20 KD and CRD, wrn_40_2 -> wrn_16_2 KD and
  resnet32x4 -> shufflenetv2 KD (32 px images, 100 classes): mcmi's path (in-memory uint8 data,
  batched crop + flip in :class:`~mcmi.data.TensorLoader`, the :class:`~mcmi.engine.Trainer`'s
  own training-step code, frozen teacher with batch norm folded, channels_last, AMP on CUDA)
  against a REFERENCE LOOP written here the way RepDistiller/mdistiller-style code does the same
  work: a per-sample Pillow pipeline (pad 4 + random crop, flip, to-tensor, normalize) in a
  ``torch.utils.data.Dataset`` with a standard ``DataLoader``, an eager NCHW fp32 loop (teacher
  forward under ``no_grad``, student forward/backward, SGD step, per-step loss and top-1/top-5
  bookkeeping), and for CRD a per-sample draw of the negatives in the data set plus an
  ``index_select`` of them from the full memory bank and the momentum update, every step;
- speed options of mcmi, each on vs off in the same rounds (resnet56 -> resnet20 KD): teacher
  batch-norm folding, channels_last, cached teacher logits (K views per image), torch.compile
  (in a subprocess with a time limit), AMP (CUDA only);
- the cost of MCMI: a teacher fine-tuning step with the CMI term vs a plain cross-entropy step,
  and an evaluation pass computing accuracy, LL and CMI vs one computing accuracy only;
- the model-math limit of resnet56 -> resnet20 KD: one student training step alone plus one
  teacher forward alone on a fixed preloaded batch (no data work), and mcmi as a fraction of it;
- peak memory of every training case, each in a fresh subprocess (CPU: ``VmHWM`` of the process;
  CUDA: ``torch.cuda.max_memory_allocated``).

Timing: each case is built and warmed up, then the cases of a group run in interleaved rounds
(ours, ref, ours, ref, ...) of ``--steps`` steps; the median round is reported, with the range.
Writes ``benchmarks/kd_speed.md`` and ``benchmarks/kd_speed.json`` (atomically).

    python benchmarks/bench_kd.py                      # CPU, the full run
    python benchmarks/bench_kd.py --device cuda        # the same on a GPU (AMP on)
    python benchmarks/bench_kd.py --quick --out /tmp/kd.md --json /tmp/kd.json   # smoke test
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mcmi.data import ImageDataset, TensorLoader, load_dataset
from mcmi.data.teacher_cache import cache_bytes, with_cached_teacher
from mcmi.data.transforms import Normalize, RandomCropFlip
from mcmi.engine import TrainConfig, Trainer
from mcmi.io import write_json, write_text
from mcmi.methods import KD, MCMI, MLL
from mcmi.methods.crd import CRD
from mcmi.metrics import evaluate
from mcmi.models import create_model
from mcmi.models.fold import fold_batchnorm
from mcmi.reports.tables import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import cpu_model, run_result_child  # noqa: E402

MEAN = (0.5071, 0.4865, 0.4409)  # CIFAR-100 statistics, as the reference codebases hard-code them
STD = (0.2673, 0.2564, 0.2762)
NUM_CLASSES = 100
PAIRS = [  # (method, teacher, student)
    ("kd", "resnet56", "resnet20"),
    ("crd", "resnet56", "resnet20"),
    ("kd", "wrn_40_2", "wrn_16_2"),
    ("kd", "resnet32x4", "shufflenetv2"),
]
HEAD = ("resnet56", "resnet20")  # the pair of the option rows and the model-math limit
COHORT = "kd+dkd+at"  # the cohort row: these students of HEAD's teacher, one teacher pass per batch


# ----------------------------------------------------------------------------- machine and data

def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process so far: CUDA allocator peak, or the resident-set high-water
    mark (``VmHWM`` of /proc/self/status; ``ru_maxrss`` where that is missing)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class Context:
    """Settings, device and the data of one benchmark process (loaded once)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.amp = "auto" if self.device.type == "cuda" else "off"
        self.tmp = tempfile.mkdtemp(prefix="bench_kd_")
        t0 = time.perf_counter()
        if args.data == "random":
            g = torch.Generator().manual_seed(0)
            n, m = args.n_train, args.n_test
            imgs = torch.randint(0, 256, (n + m, 3, 32, 32), dtype=torch.uint8, generator=g)
            labels = torch.arange(n + m) % NUM_CLASSES
            names = [str(i) for i in range(NUM_CLASSES)]
            self.train = ImageDataset(imgs[:n], labels[:n], names, "random")
            self.test = ImageDataset(imgs[n:], labels[n:], names, "random")
        else:
            self.train = load_dataset(args.data, "train")
            self.test = load_dataset(args.data, "test")
            if args.n_train and args.n_train < len(self.train):
                self.train = self.train.subset(torch.arange(args.n_train))
        if self.train.num_classes != NUM_CLASSES or self.train.image_shape != (3, 32, 32):
            raise SystemExit(f"{args.data}: need 32 px images of {NUM_CLASSES} classes")
        self.load_s = time.perf_counter() - t0
        # The reference reads the same pixels as HWC numpy arrays (a strided view: no copy).
        self.ref_images = self.train.images.permute(0, 2, 3, 1).numpy()
        self.ref_labels = self.train.labels.numpy()
        self._on_device: dict[str, ImageDataset] = {}

    def _ours(self, split: str) -> ImageDataset:
        # mcmi on CUDA holds the uint8 set on the GPU (ImageDataset.to), its documented fast
        # path; copied when an mcmi case first needs it, so reference cases do not hold it
        ds = self.train if split == "train" else self.test
        if self.device.type != "cuda":
            return ds
        if split not in self._on_device:
            self._on_device[split] = ds.to(self.device)
        return self._on_device[split]

    @property
    def ours_train(self) -> ImageDataset:
        return self._ours("train")

    @property
    def ours_test(self) -> ImageDataset:
        return self._ours("test")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------- models
def build_teacher(name: str, ctx: Context) -> nn.Module:
    """A teacher with fixed random weights and batch-norm statistics calibrated on real batches
    (two train-mode forwards), so activations have realistic scales; eval mode, no gradients."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    loader = TensorLoader(ctx.train, max(2, min(ctx.args.batch, len(ctx.train))), shuffle=True, augment=False,
                          stats=(MEAN, STD), seed=123)
    model.train()
    with torch.no_grad():
        for batch in itertools.islice(iter(loader), 2):
            model(batch["image"])
    model.eval().requires_grad_(False)
    return model.to(ctx.device)


def build_student(name: str, ctx: Context) -> nn.Module:
    torch.manual_seed(1)
    return create_model(name, num_classes=NUM_CLASSES).to(ctx.device)


# ----------------------------------------------------------------------------- runners
class Runner:
    """``run(n)`` does ``n`` training steps (or evaluation batches) of ``batch`` images."""

    def __init__(self, run: Callable[[int], None], batch: int, **info: Any) -> None:
        self.run, self.batch, self.info = run, batch, dict(info)


class StepLimited:
    """A loader view yielding the first ``n`` batches of each epoch of ``loader``."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.n = loader, 1

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name: str) -> Any:  # dataset, indices, state_dict, ... of the loader
        return getattr(self.loader, name)

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


def ours_loader(ctx: Context, dataset: ImageDataset, channels_last: bool) -> TensorLoader:
    return TensorLoader(dataset, ctx.args.batch, shuffle=True,
                        augment=RandomCropFlip(MEAN, STD, padding=4), seed=0, drop_last=True,
                        device=ctx.device, channels_last=channels_last)


def trainer_runner(ctx: Context, method: nn.Module, loader: Any, *, channels_last: bool = True,
                   amp: str | None = None, compile_backend: str | None = None,
                   **info: Any) -> Runner:
    """mcmi's training step: the Trainer's own epoch loop over ``n`` batches per call."""
    cfg = TrainConfig(epochs=10**9, schedule="constant", lr=0.05, channels_last=channels_last,
                      amp=ctx.amp if amp is None else amp, progress=False)
    limited = StepLimited(loader)
    trainer = Trainer(method, limited, None, cfg, tempfile.mkdtemp(dir=ctx.tmp), NUM_CLASSES,
                      ctx.device)
    if compile_backend:
        trainer._forward_module = torch.compile(trainer.method, backend=compile_backend)
    epoch = itertools.count()

    def run(n: int) -> None:
        limited.n = n
        trainer._train_epoch(next(epoch))

    return Runner(run, ctx.args.batch, **info)


# ---- the reference loop
class RefImages(torch.utils.data.Dataset):
    """Per-sample pipeline of the reference codebases, written out with Pillow and numpy:
    ``RandomCrop(32, padding=4)`` (zero padding), ``RandomHorizontalFlip()``, ``ToTensor()``,
    ``Normalize(mean, std)``. With ``num_negatives`` it also returns the sample's index and CRD's
    contrast indices (the positive, then negatives drawn from the other classes with
    replacement), drawn per sample as the reference's instance-sampling data set does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_negatives: int = 0) -> None:
        from PIL import Image, ImageOps

        self._image, self._ops = Image, ImageOps
        self.images, self.labels = images, labels
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)
        self.num_negatives = num_negatives
        if num_negatives:
            classes = np.unique(labels)
            self.negatives = {int(c): np.nonzero(labels != c)[0] for c in classes}

    def __len__(self) -> int:
        return len(self.labels)

    def transform(self, image: np.ndarray, top: int, left: int, flip: bool) -> Tensor:
        """One image (H, W, 3) uint8 -> normalized (3, H, W) float: pad, crop at (top, left) of
        the padded image, flip if asked, to tensor, normalize."""
        h, w = image.shape[:2]
        img = self._image.fromarray(np.ascontiguousarray(image))
        img = self._ops.expand(img, border=4, fill=0)
        img = img.crop((left, top, left + w, top + h))
        if flip:
            img = img.transpose(self._image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
        x = x.permute(2, 0, 1).contiguous().float().div(255)
        return x.sub_(self.mean).div_(self.std)

    def __getitem__(self, i: int):
        top, left = (int(v) for v in torch.randint(0, 9, (2,)))
        x = self.transform(self.images[i], top, left, torch.rand(1).item() < 0.5)
        target = int(self.labels[i])
        if not self.num_negatives:
            return x, target
        neg = np.random.choice(self.negatives[target], self.num_negatives, replace=True)
        return x, target, i, np.hstack([np.asarray([i]), neg])


def ref_loader(ctx: Context, num_negatives: int = 0) -> torch.utils.data.DataLoader:
    ds = RefImages(ctx.ref_images, ctx.ref_labels, num_negatives)
    workers = ctx.args.ref_workers
    return torch.utils.data.DataLoader(
        ds, batch_size=ctx.args.batch, shuffle=True, num_workers=workers, drop_last=True,
        pin_memory=ctx.device.type == "cuda", persistent_workers=workers > 0)


def kl_div_t(logit_s: Tensor, logit_t: Tensor, t: float = 4.0) -> Tensor:
    p_s = F.log_softmax(logit_s / t, dim=1)
    p_t = F.softmax(logit_t / t, dim=1)
    return F.kl_div(p_s, p_t, reduction="sum") * t**2 / logit_s.shape[0]


def topk_correct(output: Tensor, target: Tensor, ks=(1, 5)) -> list[Tensor]:
    _, pred = output.topk(max(ks), 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / target.shape[0]) for k in ks]


class RefMemory(nn.Module):
    """The reference's CRD memory: two banks, negatives gathered by ``index_select`` every step,
    scores ``exp(<v, m> / T) / Z`` with Z fixed from the first batch, momentum update."""

    def __init__(self, dim: int, n: int, k: int, t: float = 0.07, momentum: float = 0.5) -> None:
        super().__init__()
        self.n, self.k, self.t, self.momentum = n, k, t, momentum
        stdv = 1.0 / (dim / 3) ** 0.5
        self.register_buffer("z", torch.tensor([-1.0, -1.0]))
        self.register_buffer("memory_s", torch.rand(n, dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("memory_t", torch.rand(n, dim).mul_(2 * stdv).add_(-stdv))

    def forward(self, v_s: Tensor, v_t: Tensor, y: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
        b, dim = v_s.shape
        w_s = torch.index_select(self.memory_s, 0, idx.view(-1)).detach().view(b, self.k + 1, dim)
        out_t = torch.exp(torch.bmm(w_s, v_t.view(b, dim, 1)) / self.t)
        w_t = torch.index_select(self.memory_t, 0, idx.view(-1)).detach().view(b, self.k + 1, dim)
        out_s = torch.exp(torch.bmm(w_t, v_s.view(b, dim, 1)) / self.t)
        if self.z[0] < 0:
            self.z[0] = (out_s.mean() * self.n).item()
        if self.z[1] < 0:
            self.z[1] = (out_t.mean() * self.n).item()
        out_s, out_t = out_s / self.z[0], out_t / self.z[1]
        with torch.no_grad():
            for bank, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
                pos = torch.index_select(bank, 0, y.view(-1))
                pos.mul_(self.momentum).add_(torch.mul(v, 1 - self.momentum))
                norm = pos.pow(2).sum(1, keepdim=True).pow(0.5)
                bank.index_copy_(0, y, pos.div(norm))
        return out_s, out_t


def ref_nce(x: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    b, m = x.shape[0], x.shape[1] - 1
    pn = 1.0 / n_data
    p_pos = x.select(1, 0)
    log_d1 = torch.div(p_pos, p_pos.add(m * pn + eps)).log_()
    p_neg = x.narrow(1, 1, m)
    log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + eps)).log_()
    return -(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / b


class RefEmbed(nn.Module):
    def __init__(self, dim_in: int, dim_out: int = 128) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.linear(x.view(x.shape[0], -1))
        return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


def ref_runner(ctx: Context, method: str, teacher: nn.Module, student: nn.Module,
               **info: Any) -> Runner:
    """The reference training loop (eager, NCHW, fp32) for KD or CRD."""
    dev = ctx.device
    n_data = len(ctx.train)
    k = ctx.args.crd_negatives if method == "crd" else 0
    loader = ref_loader(ctx, k)
    trainable: list[nn.Module] = [student]
    if method == "crd":
        embed_s = RefEmbed(student.num_features).to(dev)
        embed_t = RefEmbed(teacher.num_features).to(dev)
        memory = RefMemory(128, n_data, k).to(dev)
        trainable += [embed_s, embed_t]
    params = [p for m in trainable for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    state: dict[str, Any] = {"it": None}

    def step(batch) -> None:
        for m in trainable:
            m.train()
        teacher.eval()
        x, y = batch[0].to(dev, non_blocking=True), batch[1].to(dev, non_blocking=True)
        feat_s = student.forward_features(x)
        with torch.no_grad():
            feat_t = teacher.forward_features(x)
        loss_cls = F.cross_entropy(feat_s.logits, y)
        loss_div = kl_div_t(feat_s.logits, feat_t.logits)
        if method == "crd":
            idx = batch[2].to(dev, non_blocking=True)
            contrast = batch[3].to(dev, non_blocking=True)
            out_s, out_t = memory(embed_s(feat_s.pooled), embed_t(feat_t.pooled), idx, contrast)
            loss_kd = ref_nce(out_s, n_data) + ref_nce(out_t, n_data)
            loss = 1.0 * loss_cls + 0.0 * loss_div + 0.8 * loss_kd
        else:
            loss = 0.1 * loss_cls + 0.9 * loss_div
        acc1, acc5 = topk_correct(feat_s.logits, y)
        state["loss_sum"] = state.get("loss_sum", 0.0) + loss.item() * x.shape[0]
        state["top1"] = state.get("top1", 0.0) + acc1 * x.shape[0]  # meters hold tensors
        opt.zero_grad()
        loss.backward()
        opt.step()

    def run(n: int) -> None:
        for _ in range(n):
            try:
                batch = next(state["it"])
            except (StopIteration, TypeError):
                state["it"] = iter(loader)
                batch = next(state["it"])
            step(batch)

    return Runner(run, ctx.args.batch, **info)


# ----------------------------------------------------------------------------- cases
def case_ours(ctx: Context, method: str, t_name: str, s_name: str, *, fold: bool = True,
              channels_last: bool = True, amp: str | None = None, cache: bool = False,
              compile_backend: str | None = None, crd_negatives: str = "class",
              crd_scoring: str = "auto") -> Runner:
    teacher = build_teacher(t_name, ctx)
    if fold:
        teacher = fold_batchnorm(teacher)
    student = build_student(s_name, ctx)
    info: dict[str, Any] = {}
    if method == "crd":
        m = CRD(student, teacher, num_data=len(ctx.train), num_negatives=ctx.args.crd_negatives,
                negatives=crd_negatives, scoring=crd_scoring)
        loader = ours_loader(ctx, ctx.ours_train, channels_last)
        m.prepare(loader)
    else:
        m = KD(student, teacher)
        if cache:
            n = min(ctx.args.cache_images, len(ctx.train))
            part = ctx.ours_train.subset(torch.arange(n, device=ctx.ours_train.images.device))
            base = ours_loader(ctx, part, channels_last)
            if channels_last:
                m.to(memory_format=torch.channels_last)
            ctx.sync()
            t0 = time.perf_counter()
            loader = with_cached_teacher(base, m, ctx.args.cache_views)
            loader.teacher_logits  # computed on first use: here, inside the timed setup
            ctx.sync()
            dt = time.perf_counter() - t0
            info.update(precompute_s=dt, cached_views=n * ctx.args.cache_views,
                        views_per_s=n * ctx.args.cache_views / dt)
        else:
            loader = ours_loader(ctx, ctx.ours_train, channels_last)
    return trainer_runner(ctx, m, loader, channels_last=channels_last, amp=amp,
                          compile_backend=compile_backend, **info)


def case_ref(ctx: Context, method: str, t_name: str, s_name: str) -> Runner:
    return ref_runner(ctx, method, build_teacher(t_name, ctx), build_student(s_name, ctx))


def case_objective(ctx: Context, kind: str) -> Runner:
    """A resnet56 teacher fine-tuning step: MCMI (CE - lambda * CMI term) or plain CE (MLL)."""
    torch.manual_seed(0)
    model = create_model(HEAD[0], num_classes=NUM_CLASSES).to(ctx.device)
    if kind == "mcmi":
        m = MCMI(model, lam=0.15)
        g = torch.Generator().manual_seed(0)
        m.set_centroids(torch.randn(NUM_CLASSES, NUM_CLASSES, generator=g).softmax(1))
    else:
        m = MLL(model)
    return trainer_runner(ctx, m, ours_loader(ctx, ctx.ours_train, True))


def case_eval(ctx: Context, kind: str) -> Runner:
    """One evaluation batch per step: accuracy + LL + CMI (mcmi.metrics.evaluate) or accuracy."""
    model = build_teacher(HEAD[0], ctx).to(memory_format=torch.channels_last)
    loader = StepLimited(TensorLoader(ctx.ours_test, ctx.args.eval_batch, augment=Normalize(MEAN, STD),
                                      device=ctx.device, channels_last=True))

    def run(n: int) -> None:
        loader.n = min(n, len(loader.loader))
        if kind == "cmi":
            evaluate(model, loader, NUM_CLASSES, ctx.device)
            return
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=ctx.device)
        with torch.no_grad():
            for batch in loader:
                correct += (model(batch["image"]).argmax(1) == batch["label"]).sum()
        int(correct)

    if len(loader.loader) < ctx.args.eval_steps:
        raise SystemExit(f"need {ctx.args.eval_steps} evaluation batches; the test set has "
                         f"{len(loader.loader)}")
    return Runner(run, ctx.args.eval_batch)


def case_math(ctx: Context, kind: str) -> Runner:
    """Model math alone on one fixed preloaded batch: the student's training step or a teacher
    forward (folded/unfolded, channels_last or NCHW)."""
    cl = kind != "teacher-unfolded-nchw"
    fmt = torch.channels_last if cl else torch.contiguous_format
    batch = next(iter(ours_loader(ctx, ctx.ours_train, cl)))
    x, y = batch["image"].contiguous(memory_format=fmt), batch["label"]
    amp = ctx.device.type == "cuda"
    autocast = torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp)
    if kind == "student":
        model = build_student(HEAD[1], ctx).to(memory_format=fmt).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)

        def one() -> None:
            with autocast:
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        teacher = build_teacher(HEAD[0], ctx)
        if kind == "teacher-folded":
            teacher = fold_batchnorm(teacher)
        teacher = teacher.to(memory_format=fmt)

        def one() -> None:
            with torch.no_grad(), autocast:
                teacher(x)

    def run(n: int) -> None:
        for _ in range(n):
            one()

    return Runner(run, ctx.args.batch)


def case_cohort(ctx: Context, methods: str, variant: str) -> Runner:
    """``methods`` (``kd+dkd+at``) of resnet56 -> resnet20 as one cohort (one teacher pass per
    batch, :mod:`mcmi.engine.cohort`) or as separate runs one after another (bench_cohort.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_cohort

    b = bench_cohort.Bench(ctx.args, train=ctx.train, amp=ctx.amp)
    names = tuple(methods.split("+"))
    r = (bench_cohort.cohort_runner if variant == "cohort" else bench_cohort.separate_runner)(b, names)
    return Runner(r.run, r.batch, members=len(names))


def pair_key(method: str, t: str, s: str) -> str:
    return f"{method}:{t}>{s}"


def build_case(ctx: Context, name: str) -> Runner:
    """Runner for a case name ``<group>:<what>[:<variant>]`` (also used by the subprocesses)."""
    parts = name.split(":")
    if parts[0] in ("kd", "crd"):
        t, s = parts[1].split(">")
        variant = parts[2]
        if variant == "ref":
            return case_ref(ctx, parts[0], t, s)
        opts = {
            "ours": {},
            "nofold": {"fold": False},
            "nchw": {"channels_last": False},
            "noamp": {"amp": "off"},
            "bf16": {"amp": "bf16"},
            "cache": {"cache": True},
            "shared": {"crd_negatives": "shared"},
            "gather": {"crd_scoring": "gather"},
        }[variant]
        return case_ours(ctx, parts[0], t, s, **opts)
    if parts[0] == "cohort":
        return case_cohort(ctx, parts[1], parts[2])
    if parts[0] == "objective":
        return case_objective(ctx, parts[1])
    if parts[0] == "eval":
        return case_eval(ctx, parts[1])
    if parts[0] == "math":
        return case_math(ctx, parts[1])
    raise ValueError(f"unknown case {name!r}")


# ----------------------------------------------------------------------------- timing
def timed(ctx: Context, runner: Runner, steps: int) -> float:
    ctx.sync()
    t0 = time.perf_counter()
    runner.run(steps)
    ctx.sync()
    return steps * runner.batch / (time.perf_counter() - t0)


def interleaved(ctx: Context, runners: dict[str, Runner], steps: int | None = None,
                log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Warm every runner up, then ``repeats`` rounds of ``steps`` steps of each in turn."""
    a = ctx.args
    steps = steps or a.steps
    for r in runners.values():
        r.run(a.warmup)
    rounds: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(a.repeats):
        for k, r in runners.items():
            rounds[k].append(timed(ctx, r, steps))
    out = {}
    for k, v in rounds.items():
        out[k] = {"ips": statistics.median(v), "rounds": v, **runners[k].info}
        log(f"  {k}: {out[k]['ips']:.1f} images/s (rounds {', '.join(f'{x:.1f}' for x in v)})")
    return out


def run_group(ctx: Context, names: list[str], steps: int | None = None) -> dict[str, dict[str, Any]]:
    print(f"group: {', '.join(names)}", flush=True)
    runners = {n: build_case(ctx, n) for n in names}
    try:
        return interleaved(ctx, runners, steps)
    finally:
        del runners
        gc.collect()
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- subprocesses
def child_argv(args: argparse.Namespace) -> list[str]:
    keep = ["device", "threads", "batch", "data", "n_train", "n_test", "ref_workers",
            "crd_negatives", "cache_views", "cache_images", "eval_batch", "warmup", "steps",
            "repeats", "compile_backend"]
    argv = [sys.executable, str(Path(__file__).resolve())]
    for k in keep:
        argv += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    return argv


def run_child(args: argparse.Namespace, extra: list[str], timeout: float) -> dict[str, Any]:
    """Run this script in a fresh process; its last ``RESULT {json}`` line, or an error."""
    return run_result_child(child_argv(args) + extra, timeout)


def memory_child(ctx: Context, case: str) -> dict[str, Any]:
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    if case != "floor":
        runner = build_case(ctx, case)
        runner.run(max(1, ctx.args.warmup))
        runner.run(1)
        ctx.sync()
    return {"peak_bytes": peak_memory_bytes(ctx.device)}


def compile_child(ctx: Context) -> dict[str, Any]:
    """torch.compile of mcmi's KD step vs the same step eager, interleaved in this process."""
    t, s = HEAD
    eager = case_ours(ctx, "kd", t, s)
    ctx.sync()
    t0 = time.perf_counter()
    compiled = case_ours(ctx, "kd", t, s, compile_backend=ctx.args.compile_backend)
    for _ in range(3):  # first compile, then the recompile when the epoch number changes
        compiled.run(1)
    ctx.sync()
    compile_s = time.perf_counter() - t0
    res = interleaved(ctx, {"eager": eager, "compiled": compiled}, log=lambda m: None)
    return {"compile_s": compile_s, "eager": res["eager"], "compiled": res["compiled"]}


# ----------------------------------------------------------------------------- report
def fmt_ips(r: dict[str, Any] | None) -> str:
    return "-" if not r else f"{r['ips']:.1f}"


def fmt_range(r: dict[str, Any] | None) -> str:
    return "-" if not r else f"{min(r['rounds']):.0f}-{max(r['rounds']):.0f}"


def fmt_mb(v: Any) -> str:
    if isinstance(v, dict):
        if "peak_bytes" in v:
            return f"{v['peak_bytes'] / 2**20:.0f}"
        return "n/a"
    return "-"


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    return "-" if not a or not b else f"{a['ips'] / b['ips']:.2f}x"


def report(ctx: Context, res: dict[str, Any]) -> str:
    a = ctx.args
    dev = ctx.device
    m = res["machine"]
    mem = res.get("memory", {})
    lines = [
        "# Distillation speed: mcmi vs the reference loop of the paper's codebases",
        "",
        f"Command: `{res['command']}`  ",
        f"Date: {res['date']}  ",
        f"Machine: {m['cpu']} ({m['cpu_count']} logical CPUs), {m['threads']} torch threads, "
        f"torch {m['torch']}, Python {m['python']}, device {m['device']}.  ",
        f"Data: {res['data']}; batch {a.batch}; each figure is the median of {a.repeats} "
        f"interleaved rounds of {a.steps} steps after {a.warmup} warm-up steps (range beside "
        "it). Absolute figures drift between runs on shared machines: compare the ratios, "
        "which are measured side by side in the same rounds.",
        "",
        "**ours**: mcmi's path: uint8 images held in memory, batched pad-4 crop + flip + "
        "normalize in `TensorLoader`, the `Trainer`'s training-step code (autocast, NaN guard, "
        "SGD, running loss/accuracy sums), frozen teacher with batch norm folded into its "
        f"convolutions (`train.fold_teacher_bn`), channels_last{', AMP (bf16 autocast)' if ctx.amp != 'off' else ''}.  ",
        "**ref**: the same work written the way the RepDistiller/mdistiller family does it: a "
        "per-sample Pillow pipeline (pad 4 + random 32 px crop, flip, to-tensor, normalize) in a "
        f"`Dataset` with a standard `DataLoader` ({a.ref_workers} workers), eager NCHW fp32 "
        "steps (teacher forward under `no_grad`, student forward/backward, SGD step, per-step "
        "`loss.item()` and top-1/top-5 meters); CRD: negatives drawn per sample in the data set "
        "(other classes, with replacement) and gathered from the full memory banks with "
        "`index_select` every step, plus the momentum update. Same models, weights, batch size, "
        "optimizer and losses (KD: 0.1 CE + 0.9 KL at T = 4; CRD: CE + 0.8 NCE, "
        f"{a.crd_negatives} negatives).",
        "",
        "## Training throughput (images/s)",
        "",
    ]
    rows = []
    for method, t, s in PAIRS:
        key = pair_key(method, t, s)
        o, r = res["pairs"].get(f"{key}:ours"), res["pairs"].get(f"{key}:ref")
        rows.append([f"{t} -> {s} {method.upper()}", fmt_ips(o), fmt_ips(r), ratio(o, r),
                     fmt_range(o), fmt_range(r), fmt_mb(mem.get(f"{key}:ours")),
                     fmt_mb(mem.get(f"{key}:ref"))])
        ga = res["pairs"].get(f"{key}:gather")
        if ga:
            rows.append([f"{t} -> {s} {method.upper()}, candidates gathered row by row "
                         "(`method_args.scoring=gather`, CRD's way; the default scores the whole "
                         "bank)", fmt_ips(ga), fmt_ips(r), ratio(ga, r), fmt_range(ga),
                         fmt_range(r), fmt_mb(mem.get(f"{key}:gather")), "-"])
        sh = res["pairs"].get(f"{key}:shared")
        if sh:
            rows.append([f"{t} -> {s} {method.upper()}, negatives shared by the batch (opt-in: "
                         "`method_args.negatives=shared`)", fmt_ips(sh), fmt_ips(r), ratio(sh, r),
                         fmt_range(sh), fmt_range(r), "-", "-"])
    mem_unit = "MiB, CUDA allocator peak" if dev.type == "cuda" else "MiB, process VmHWM"
    lines += [markdown_table(["work", "ours", "ref", "ours/ref", "ours range", "ref range",
                              f"ours peak ({mem_unit})", f"ref peak ({mem_unit})"], rows), ""]
    if "floor" in mem:
        lines += [f"Peak memory is measured per case in a fresh process; the process with torch "
                  f"imported and the data loaded, before any model, peaks at "
                  f"{fmt_mb(mem['floor'])} MiB. "
                  + ("DataLoader worker processes are not included. " if a.ref_workers else ""),
                  ""]
    errors = {k: v["error"] for k, v in mem.items() if isinstance(v, dict) and "error" in v}
    if errors:
        lines += ["Memory cases that failed: " + "; ".join(f"{k}: {v}" for k, v in errors.items()), ""]

    # options
    head = pair_key("kd", *HEAD)
    opt = res["options"]
    base = opt.get(f"{head}:ours")
    rows = []

    def add(label: str, on: dict | None, off: dict | None, default: str, note: str) -> None:
        rows.append([label, fmt_ips(on), fmt_ips(off), ratio(on, off), default, note])

    add("teacher BN folded into convs", base, opt.get(f"{head}:nofold"), "on",
        "same outputs (float rounding)")
    add("channels_last", base, opt.get(f"{head}:nchw"), "off (CPU recipes: on)",
        "memory format of images and models")
    if dev.type == "cpu":
        add("bf16 autocast on CPU (`train.amp=bf16`)", opt.get(f"{head}:bf16"), base, "off",
            "changes the numerics of the fp32 recipes")
    else:
        add("AMP (bf16 autocast) vs off", base, opt.get(f"{head}:noamp"), "auto in recipes", "CUDA only")
    c = opt.get(f"{head}:cache")
    if c:
        full = cache_bytes(50_000, a.cache_views, NUM_CLASSES)
        add(f"cached teacher logits, K = {a.cache_views} views", c, base, "off",
            f"{ratio(c, opt.get(f'{head}:ref'))} the reference KD loop in the same rounds; "
            f"precompute {c['views_per_s']:.0f} views/s ({c['cached_views']} views here); "
            f"CIFAR-100 size: {50_000 * a.cache_views} views, {full / 1e6:.0f} MB float32; "
            f"changes the recipe (K augmentations per image)")
    comp = res.get("compile", {})
    if "error" in comp or "skipped" in comp:
        why = comp.get("error") or comp.get("skipped")
        rows.append([f"torch.compile ({a.compile_backend})", "-", "-", "-", "off",
                     f"not measured: {why}"])
    elif comp:
        rows.append([f"torch.compile ({a.compile_backend})", fmt_ips(comp["compiled"]),
                     fmt_ips(comp["eager"]), ratio(comp["compiled"], comp["eager"]), "off",
                     f"compile + first steps {comp['compile_s']:.0f} s; measured in its own "
                     "process against eager"])
    lines += [f"## Speed options ({HEAD[0]} -> {HEAD[1]} KD, on vs off in the same rounds)", "",
              markdown_table(["option", "on (images/s)", "off (images/s)", "on/off", "default",
                              "note"], rows), ""]

    coh = res.get("cohort", {})
    co, sp = coh.get(f"cohort:{COHORT}:cohort"), coh.get(f"cohort:{COHORT}:separate")
    if co and sp:
        names = ", ".join(m.upper() for m in COHORT.split("+"))
        lines += [f"## Cohort ({HEAD[0]} -> {HEAD[1]}: {names} from one teacher pass per batch)", "",
                  markdown_table(["work", "images/s per student", "range"],
                                 [["cohort (`mcmi distill --cohort kd,dkd,at`)", fmt_ips(co), fmt_range(co)],
                                  ["the three separate runs, one after another", fmt_ips(sp), fmt_range(sp)],
                                  ["cohort / separate", ratio(co, sp), ""]]),
                  "", "More rows (11 members, memory, the loader alone): `benchmarks/bench_cohort.py`.", ""]

    # MCMI cost
    ob, ev = res["objective"], res["eval"]
    mc, ce = ob.get("objective:mcmi"), ob.get("objective:ce")
    ecmi, eacc = ev.get("eval:cmi"), ev.get("eval:acc")
    rows = [
        [f"{HEAD[0]} fine-tuning step: MCMI (CE - λ·CMI term) vs plain CE", fmt_ips(mc),
         fmt_ips(ce), f"{(ce['ips'] / mc['ips'] - 1) * 100:+.1f}%" if mc and ce else "-"],
        [f"{HEAD[0]} evaluation: accuracy + LL + CMI vs accuracy only", fmt_ips(ecmi),
         fmt_ips(eacc), f"{(eacc['ips'] / ecmi['ips'] - 1) * 100:+.1f}%" if ecmi and eacc else "-"],
    ]
    lines += ["## Cost of the CMI term", "",
              markdown_table(["work", "with CMI (images/s)", "without (images/s)",
                              "extra time with CMI"], rows), ""]

    # model-math limit
    mt = res["math"]
    st, tf = mt.get("math:student"), mt.get("math:teacher-folded")
    tu, tn = mt.get("math:teacher-unfolded"), mt.get("math:teacher-unfolded-nchw")
    ours = res["pairs"].get(f"{head}:ours")
    rows = [[f"{HEAD[1]} training step alone (fixed batch)", fmt_ips(st)],
            [f"{HEAD[0]} forward alone, BN folded", fmt_ips(tf)],
            [f"{HEAD[0]} forward alone, BN not folded", fmt_ips(tu)],
            [f"{HEAD[0]} forward alone, BN not folded, NCHW", fmt_ips(tn)]]
    if st and tf:
        limit = 1.0 / (1.0 / st["ips"] + 1.0 / tf["ips"])
        rows.append(["model-math limit: 1 / (1/student + 1/teacher folded)", f"{limit:.1f}"])
        if ours:
            rows.append(["ours (KD, from the throughput table)", f"{ours['ips']:.1f} "
                         f"({ours['ips'] / limit:.0%} of the limit)"])
    lines += [f"## Model-math limit of {HEAD[0]} -> {HEAD[1]} KD (no data work; measured in the "
              "same rounds as each other, not as the throughput table)", "",
              markdown_table(["work", "images/s"], rows), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (cpu 4, cuda 30)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (cpu 2, cuda 10)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--data", default="tinyimagenet100-32px",
                    help="a 32 px, 100-class data set name, or 'random' (uint8 noise)")
    ap.add_argument("--n-train", type=int, default=0, help="training images (0: all; random: 10000)")
    ap.add_argument("--n-test", type=int, default=1000, help="test images for random data")
    ap.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers of the reference")
    ap.add_argument("--crd-negatives", type=int, default=16384)
    ap.add_argument("--cache-views", type=int, default=4)
    ap.add_argument("--cache-images", type=int, default=1024,
                    help="images whose views are precomputed for the cached-logits row")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--eval-steps", type=int, default=4, help="evaluation batches per round")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--compile-backend", default=None,
                    help="torch.compile backend (default inductor; eager with --quick)")
    ap.add_argument("--compile-timeout", type=float, default=240)
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: batch 4, 1 step, 1 round, random data, few negatives")
    ap.add_argument("--out", default=str(Path(__file__).with_name("kd_speed.md")))
    ap.add_argument("--json", default=str(Path(__file__).with_name("kd_speed.json")))
    ap.add_argument("--_memory-case", dest="memory_case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_compile-case", dest="compile_case", action="store_true",
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.quick:
        args.batch, args.repeats, args.data = 4, 1, "random"
        args.n_train = args.n_train or 256
        args.n_test = min(args.n_test, 64)
        args.crd_negatives = min(args.crd_negatives, 64)
        args.cache_images = min(args.cache_images, 16)
        args.eval_batch = min(args.eval_batch, 8)
        args.eval_steps = min(args.eval_steps, 2)
        args.steps = args.steps or 1
        args.warmup = args.warmup if args.warmup is not None else 1
        args.compile_backend = args.compile_backend or "eager"
    args.compile_backend = args.compile_backend or "inductor"
    if args.data == "random" and not args.n_train:
        args.n_train = 10_000
    args.steps = args.steps or (30 if cuda else 4)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    ctx = Context(args)
    try:
        if args.memory_case:
            print("RESULT " + json.dumps(memory_child(ctx, args.memory_case)), flush=True)
            return {}
        if args.compile_case:
            print("RESULT " + json.dumps(compile_child(ctx)), flush=True)
            return {}
        return run_all(ctx, argv)
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)


def run_all(ctx: Context, argv: list[str] | None) -> dict[str, Any]:
    args = ctx.args
    t_start = time.perf_counter()
    dev = ctx.device
    res: dict[str, Any] = {
        "command": "python benchmarks/bench_kd.py" + (" " + " ".join(argv if argv is not None
                                                                       else sys.argv[1:])).rstrip(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        },
        "data": (f"{args.data} ({len(ctx.train)} training images, 32 px, 100 classes, "
                 f"loaded in {ctx.load_s:.1f} s)"),
        "args": vars(args),
    }
    head = pair_key("kd", *HEAD)
    variants = ["ours", "ref", "nofold", "nchw", "cache"] + (["noamp"] if dev.type == "cuda" else [])
    if dev.type == "cpu":
        variants.append("bf16")  # train.amp=bf16: the README's CPU speed option
    res["options"] = run_group(ctx, [f"{head}:{v}" for v in variants])
    res["pairs"] = {k: v for k, v in res["options"].items() if k.endswith((":ours", ":ref"))}
    for method, t, s in PAIRS[1:]:
        key = pair_key(method, t, s)
        # CRD: the gathered-row scoring (same scores) and the opt-in batch-shared negatives
        extra = [f"{key}:gather", f"{key}:shared"] if method == "crd" else []
        res["pairs"].update(run_group(ctx, [f"{key}:ours", f"{key}:ref", *extra]))
    res["cohort"] = run_group(ctx, [f"cohort:{COHORT}:cohort", f"cohort:{COHORT}:separate"])
    res["objective"] = run_group(ctx, ["objective:mcmi", "objective:ce"])
    res["eval"] = run_group(ctx, ["eval:cmi", "eval:acc"], steps=args.eval_steps)
    res["math"] = run_group(ctx, ["math:student", "math:teacher-folded", "math:teacher-unfolded",
                                  "math:teacher-unfolded-nchw"])
    del ctx.ref_images
    gc.collect()
    if args.memory:
        cases = ["floor"] + [f"{pair_key(*p)}:{v}" for p in PAIRS for v in ("ours", "ref")]
        cases += [f"{pair_key(*p)}:gather" for p in PAIRS if p[0] == "crd"]
        if args.quick:
            cases = cases[:3]
        res["memory"] = {}
        for case in cases:
            print(f"memory: {case}", flush=True)
            res["memory"][case] = run_child(args, ["--_memory-case", case], timeout=600)
            print(f"  {res['memory'][case]}", flush=True)
    if args.compile:
        print(f"compile ({args.compile_backend}, at most {args.compile_timeout:.0f} s)", flush=True)
        res["compile"] = run_child(args, ["--_compile-case"], timeout=args.compile_timeout)
        print(f"  {res['compile'].get('error', 'done')}", flush=True)
    else:
        res["compile"] = {"skipped": "--no-compile"}
    res["wall_s"] = time.perf_counter() - t_start
    text = report(ctx, res) + f"\nWall time of the benchmark: {res['wall_s']:.0f} s.\n"
    write_text(args.out, text)
    write_json(args.json, res)
    print(text)
    return res


if __name__ == "__main__":
    main()
