"""Benchmark: training many small MLPs (paper Table 5 study) one at a time vs stacked.

Measures in one run, on this machine: the sgemm peak (2048^3 matmul), one 30-128-128-10 MLP
trained eagerly with autograd + Adam (batch 32), and stacks of M models trained by
:func:`mcmi.engine.stacked_mlp.train_stacked`. Writes ``benchmarks/stacked_mlp.md``.

    python benchmarks/bench_stacked_mlp.py [--threads 2] [--steps 600]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mcmi.engine.stacked_mlp import (
    StackedJobs,
    StackedMLP,
    mlp_train_flops_per_sample,
    train_stacked,
)
from mcmi.io import write_text
from mcmi.models.mlp import MLP
from mcmi.reports.tables import markdown_table

DIMS = (30, 128, 128, 10)
B = 32


def matmul_peak(seconds: float = 2.0) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return n * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


def eager_one_model(steps: int) -> float:
    model = MLP(30, 10, (128, 128))
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    x, y = torch.randn(steps, B, 30), torch.randint(0, 10, (steps, B))
    for i in range(20):
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = F.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def stacked(m: int, steps: int, lam: float = 0.0) -> float:
    n = steps * B
    x = torch.randn(1, n, 30)
    y = torch.randint(0, 10, (m, n))
    jobs = StackedJobs(x, torch.zeros(m, dtype=torch.long), F.one_hot(y, 10).float(), torch.full((m,), lam),
                       labels=y, log_centroids=torch.log_softmax(torch.randn(m, 10, 10), -1))
    gens = [torch.Generator().manual_seed(i) for i in range(m)]
    model = StackedMLP.init(m, DIMS, gens)
    train_stacked(model, StackedJobs(x[:, : 20 * B], jobs.data_id, jobs.targets[:, : 20 * B], jobs.lam,
                                     jobs.labels[:, : 20 * B], jobs.log_centroids), 1, 5e-4, B, gens)
    t0 = time.perf_counter()
    train_stacked(model, jobs, 1, 5e-4, B, gens)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", default=str(Path(__file__).with_name("stacked_mlp.md")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flops_step = mlp_train_flops_per_sample(DIMS) * B
    peak = matmul_peak()
    rows = []
    t1 = eager_one_model(args.steps)
    rows.append(["1 model, eager autograd + Adam", 1, f"{t1 * 1e3:.3f}", f"{t1 * 1e6:.0f}", f"{flops_step / t1 / 1e9:.1f}",
                 f"{flops_step / t1 / 1e9 / peak:.0%}", "1.0x"])
    for m, lam in ((20, 0.0), (40, 0.0), (60, 0.0), (20, 0.15)):
        t = stacked(m, args.steps, lam)
        per_model = t / m
        label = f"stack of {m}, hand-written backward + fused Adam" + (" (MCMI loss)" if lam else "")
        rows.append([label, m, f"{t * 1e3:.3f}", f"{per_model * 1e6:.0f}", f"{m * flops_step / t / 1e9:.1f}",
                     f"{m * flops_step / t / 1e9 / peak:.0%}", f"{t1 / per_model:.1f}x"])
    grid_model_steps = (60 * 100 + 20 * 20 + 40 * 100) * 2813  # Table 5 grid: phases A, B, C at 90k training points
    best = min(float(r[3]) for r in rows[1:4]) * 1e-6
    text = "\n".join([
        "# Stacked MLP training (synthetic Gaussian study)",
        "",
        f"Command: `python benchmarks/bench_stacked_mlp.py --threads {args.threads} --steps {args.steps}`",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads. "
        f"Measured matmul peak (2048^3 sgemm): **{peak:.1f} GFLOP/s**.",
        f"Model math per training step of one model (batch {B}, {'-'.join(map(str, DIMS))}): {flops_step / 1e6:.2f} MFLOP "
        "(forward, weight gradients, input gradients of layers 2-3).",
        "",
        markdown_table(["way", "models", "ms/step", "µs per model-step", "GFLOP/s", "of peak", "speed-up per model"], rows),
        "",
        f"The full Table 5 grid at the paper's size is {grid_model_steps / 1e6:.1f} M model-steps (phase A: 60 models x 100 "
        "epochs, B: 20 x 20, C: 40 x 100, 2,813 steps an epoch): "
        f"{grid_model_steps * t1 / 60:.0f} min one model at a time at the eager rate above, "
        f"{grid_model_steps * best / 60:.0f} min at the best stacked rate.",
        "",
    ])
    write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
