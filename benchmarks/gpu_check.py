"""The GPU check, one command (under 8 minutes on one GPU): ``python benchmarks/gpu_check.py``.

Steps (each in its own process with a time limit; a failing step is reported and the others
still run):

1. ``tests``: the ``gpu``-marked tests (``pytest -m gpu``: loaders on CUDA, data resident on the
   device, ...).
2. ``bench_kd``: ``benchmarks/bench_kd.py --device D``: KD, CRD, MCMI and the 3-member cohort
   against the reference loop; AMP bf16 against off; channels_last against NCHW; torch.compile;
   peak memory (``torch.cuda.max_memory_allocated``). Tables in ``OUT/kd_speed_<D>.md``.
3. ``bench_cohort``: ``benchmarks/bench_cohort.py --device D``: 3- and 11-member cohorts against
   their separate runs, and the loader alone (uint8 images resident on the device, augmentation
   batched there) against the training batch rate. Tables in ``OUT/cohort_speed_<D>.md``.
4. ``real_data``: the first steps of one real-data run (resnet20, ``tinyimagenet100-32px``, batch
   64, fp32 with TF32 off, deterministic kernels), from the same seed on the CPU and on D; both
   loss lists are printed side by side with their largest relative difference, and D's losses
   under bf16 autocast for comparison.

``OUT/gpu_check.md`` sums it up (default ``OUT``: ``benchmarks/gpu_check_<D>``). ``--device cpu``
runs every step on the CPU (step 1 then reports the CUDA tests as skipped, step 4 compares the
CPU with itself); ``--quick`` runs every step at a tiny size (a test of this script).

    python benchmarks/gpu_check.py                       # on the GPU machine (device cuda)
    python benchmarks/gpu_check.py --device cpu --quick  # the same steps on a CPU, tiny
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def step(name: str, argv: list[str], timeout: float, log: Path) -> dict[str, Any]:
    """Run ``argv`` with a time limit; its output goes to ``log`` and its tail into the result."""
    print(f"== {name}: {' '.join(argv)} (at most {timeout:.0f} s)", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT,
                           check=False)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        out, rc = out + f"\n(timed out after {timeout:.0f} s)", 124
    log.write_text(out)
    wall = time.perf_counter() - t0
    tail = [ln for ln in out.strip().splitlines() if ln.strip()][-6:]
    print(f"   {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {wall:.0f} s; log {log}", flush=True)
    return {"name": name, "rc": rc, "wall_s": wall, "log": str(log), "tail": tail}


# ----------------------------------------------------------------------------- real data
def first_losses(device: str, steps: int, amp: str, n_train: int, batch: int, data: str) -> list[float]:
    """The losses of the first ``steps`` steps of an MLL resnet20 run on ``data`` from seed 0."""
    import torch

    from mcmi.config import load_config
    from mcmi.experiments.train import RunConfig, build_trainer

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 on both sides: comparable losses
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(RunConfig, None, [
            f"data.name={data}", f"data.train_subset={n_train}", "data.subset_mode=stratified", "data.test_subset=64",
            f"data.batch_size={batch}",
            "data.device_resident=true", "model.name=resnet20", "method=mll", f"device={device}",
            f"train.amp=\"{amp}\"", "train.deterministic=true", "train.progress=false", "train.channels_last=true",
            "train.epochs=1", f"out={out}"])
        trainer = build_trainer(cfg, torch.device(device))
        trainer.begin(False)
        sums, _, _ = trainer._begin_epoch(0)
        losses = []
        for i, batch_ in zip(range(steps), trainer._epoch_iterator(0, 0)):
            total, n = sums.total, sums.n
            trainer._train_step(0, i, trainer._to_device(batch_), sums)
            losses.append((sums.total - total) / (sums.n - n))
        if hasattr(trainer, "close"):
            trainer.close("finished")
    return losses


def real_data_main(args: argparse.Namespace) -> int:
    """Step 4 in its own process: prints a JSON line ``RESULT {...}``."""
    import torch

    torch.set_num_threads(args.threads)
    kw = {"steps": args.real_steps, "n_train": args.real_images, "batch": args.real_batch, "data": args.real_data}
    cpu = first_losses("cpu", amp="off", **kw)
    dev = first_losses(args.device, amp="off", **kw)
    bf16 = first_losses(args.device, amp="bf16", **kw) if args.device != "cpu" else None
    rel = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(cpu, dev)]
    print("step  cpu fp32      device fp32   rel. diff" + ("   device bf16" if bf16 else ""))
    for i, (a, b, r) in enumerate(zip(cpu, dev, rel)):
        print(f"{i:4d}  {a:.6f}  {b:.6f}  {r:.2e}" + (f"  {bf16[i]:.6f}" if bf16 else ""))
    res = {"cpu": cpu, "device": dev, "device_bf16": bf16, "max_rel_diff": max(rel), "first_rel_diff": rel[0]}
    print("RESULT " + json.dumps(res), flush=True)
    ok = rel[0] < 1e-3 and max(rel) < 5e-2  # the same start; float differences grow step by step
    return 0 if ok else 1


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the CPU-side steps")
    ap.add_argument("--out-dir", default=None, help="default: benchmarks/gpu_check_<device>")
    ap.add_argument("--quick", action="store_true", help="every step at a tiny size (tests of this script)")
    ap.add_argument("--skip", default="", help="steps to leave out, e.g. bench_cohort,tests")
    ap.add_argument("--real-data", default="tinyimagenet100-32px")
    ap.add_argument("--real-steps", type=int, default=8)
    ap.add_argument("--real-images", type=int, default=1024)
    ap.add_argument("--real-batch", type=int, default=64)
    ap.add_argument("--_real-data", dest="real_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.real_steps, args.real_images, args.real_batch = 3, 32, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.real_child:
        return real_data_main(args)
    dev = args.device.replace(":", "")
    out = Path(args.out_dir or BENCH / f"gpu_check_{dev}")
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    t0 = time.perf_counter()
    common = ["--device", args.device, "--threads", str(args.threads)]
    if args.quick:
        kd = [*common, "--quick", "--no-memory"]
        co = [*common, "--quick", "--no-memory"]
    else:  # sized for one GPU: about 3 min and 1.5 min
        kd = [*common, "--steps", "20", "--warmup", "5", "--repeats", "3", "--compile-timeout", "150"]
        co = [*common, "--steps", "10", "--warmup", "3", "--repeats", "3", "--no-memory"]
    plan = [
        ("tests", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"], 120),
        ("bench_kd", [py, str(BENCH / "bench_kd.py"), *kd, "--out", str(out / f"kd_speed_{dev}.md"),
                      "--json", str(out / f"kd_speed_{dev}.json")], 240),
        ("bench_cohort", [py, str(BENCH / "bench_cohort.py"), *co, "--out", str(out / f"cohort_speed_{dev}.md"),
                          "--json", str(out / f"cohort_speed_{dev}.json")], 150),
        ("real_data", [py, str(Path(__file__).resolve()), "--_real-data", "--device", args.device, "--threads",
                       str(args.threads), "--real-data", args.real_data, "--real-steps", str(args.real_steps),
                       "--real-images", str(args.real_images), "--real-batch", str(args.real_batch)], 90),
    ]
    results = [step(name, argv_, limit, out / f"{name}.log") for name, argv_, limit in plan if name not in skip]
    lines = [f"# GPU check on {args.device}", "", (f"Command: `python benchmarks/gpu_check.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`  "),
             f"Total wall time: {time.perf_counter() - t0:.0f} s.", "",
             "| step | result | wall (s) | log |", "|---|---|---|---|"]
    for r in results:
        result = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        lines.append(f"| {r['name']} | {result} | {r['wall_s']:.0f} | `{r['log']}` |")
    for r in results:
        lines += ["", f"## {r['name']}", "", "```", *r["tail"], "```"]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
