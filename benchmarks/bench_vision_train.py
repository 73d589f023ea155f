"""Benchmark: training throughput (images/s) of CIFAR-size models with the mcmi trainer's step.

For each model and option set, runs the real path (TensorLoader batches with batched crop+flip
from uint8 tensors -> MLL method -> SGD step) for a fixed number of steps after a warm-up, all
in one process, one after another. Writes ``benchmarks/vision_train.md``.

    python benchmarks/bench_vision_train.py [--models resnet20,resnet56,wrn_40_2,resnet32x4] [--steps 20]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from mcmi.data import ImageDataset, TensorLoader
from mcmi.io import write_text
from mcmi.methods import MLL
from mcmi.models import create_model
from mcmi.reports.tables import markdown_table

OPTIONS = {
    "NCHW fp32 (baseline)": dict(channels_last=False, amp=None),
    "channels_last": dict(channels_last=True, amp=None),
    "channels_last + bf16 autocast": dict(channels_last=True, amp=torch.bfloat16),
}


def synthetic_dataset(n: int = 4096, classes: int = 100) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return ImageDataset(images, labels, [str(i) for i in range(classes)], "bench")


def throughput(model_name: str, ds: ImageDataset, steps: int, batch: int, channels_last: bool, amp) -> float:
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=100)
    method = MLL(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loader = TensorLoader(ds, batch, shuffle=True, augment=True, channels_last=channels_last,
                          stats=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    it = iter(loader)

    def step():
        nonlocal it
        try:
            batch_ = next(it)
        except StopIteration:
            it = iter(loader)
            batch_ = next(it)
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss = method(batch_).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20,resnet56,wrn_40_2,resnet32x4")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).with_name("vision_train.md")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = synthetic_dataset()
    rows = []
    for name in args.models.split(","):
        base = None
        for label, opt in OPTIONS.items():
            ips = throughput(name, ds, args.steps, args.batch, **opt)
            base = base or ips
            rows.append([name, label, f"{ips:.0f}", f"{ips / base:.2f}x"])
            print(rows[-1], flush=True)
    text = "\n".join([
        "# Training throughput of CIFAR-size models (MLL step, batch %d, 32 px, 100 classes)" % args.batch,
        "",
        f"Command: `python benchmarks/bench_vision_train.py --models {args.models} --steps {args.steps} --threads {args.threads}`",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads; "
        "in-memory uint8 data, batched crop+flip, full SGD step (forward, backward, update). "
        "Options are measured one after another in the same process; compare ratios within a model.",
        "",
        markdown_table(["model", "options", "images/s", "vs baseline"], rows),
        "",
    ])
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
