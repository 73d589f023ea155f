"""Benchmark: training throughput (images/s) of CIFAR-size models with the mcmi trainer's step.

For each model and option set, runs the real path (TensorLoader batches with batched crop+flip
from uint8 tensors -> MLL method -> SGD step) for a fixed number of steps after a warm-up, all
in one process. Option sets of a model are measured in interleaved rounds (a, b, c, a, b, c, ...)
and the median of the rounds is reported, so drift of a shared machine hits every option alike.
Writes ``benchmarks/vision_train.md``.

    python benchmarks/bench_vision_train.py [--models resnet20,resnet56,wrn_40_2,resnet32x4] [--steps 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from mcmi.data import ImageDataset, TensorLoader
from mcmi.io import write_text
from mcmi.methods import MLL
from mcmi.models import create_model
from mcmi.reports.tables import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py
from _common import cpu_model  # noqa: E402

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


def make_stepper(model_name: str, ds: ImageDataset, batch: int, channels_last: bool, amp):
    """A warmed-up closure running one full training step of ``model_name`` with these options."""
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
    return step


def timed(step, steps: int, batch: int) -> float:
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
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds per option; the median is reported")
    ap.add_argument("--out", default=str(Path(__file__).with_name("vision_train.md")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = synthetic_dataset()
    rows = []
    for name in args.models.split(","):
        steppers = {label: make_stepper(name, ds, args.batch, **opt) for label, opt in OPTIONS.items()}
        rounds: dict[str, list[float]] = {label: [] for label in OPTIONS}
        for _ in range(args.repeats):
            for label, step in steppers.items():
                rounds[label].append(timed(step, args.steps, args.batch))
        base = statistics.median(rounds[next(iter(OPTIONS))])
        for label, values in rounds.items():
            ips = statistics.median(values)
            rows.append([name, label, f"{ips:.0f}", f"{min(values):.0f}-{max(values):.0f}", f"{ips / base:.2f}x"])
            print(rows[-1], flush=True)
    text = "\n".join([
        "# Training throughput of CIFAR-size models (MLL step, batch %d, 32 px, 100 classes)" % args.batch,
        "",
        f"Command: `python benchmarks/bench_vision_train.py --models {args.models} --steps {args.steps} "
        f"--threads {args.threads} --repeats {args.repeats}`",
        f"Machine: {cpu_model()} ({torch.get_num_threads()} of {os.cpu_count()} cores used), torch {torch.__version__}, {args.threads} threads; "
        "in-memory uint8 data, batched crop+flip, full SGD step (forward, backward, update). "
        f"Each figure is the median of {args.repeats} interleaved rounds of {args.steps} steps (range beside it); "
        "compare ratios within a model.",
        "",
        markdown_table(["model", "options", "images/s", "range", "vs baseline"], rows),
        "",
    ])
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
