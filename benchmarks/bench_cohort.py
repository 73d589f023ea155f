"""Benchmark: a cohort of students (one teacher forward per batch) against their separate runs.

Rows, each measured in interleaved rounds (cohort, separate, cohort, separate, ...):

- a 3-member cohort (KD, DKD, AT) against the three separate runs, and an 11-member cohort
  (every Table 1 method: KD, AT, PKT, SP, CC, RKD, VID, CRD, DKD, ReviewKD, HSAKD) against its
  separate runs; resnet56 -> resnet20 on 32 px images of 100 classes, batch 64. A cohort is
  :class:`mcmi.engine.cohort.CohortTrainer` with its :class:`~mcmi.engine.cohort.SharedTeacher`
  (one loader, one teacher pass per batch, every member's own ``Trainer`` step); a separate
  run is one ``Trainer`` with its own loader and teacher, the steps of ``mcmi distill``.
  Images/s per student: the images each student trains on per second of the whole set's wall
  time (cohort: ``steps * batch / t_cohort``; separate runs one after another:
  ``steps * batch / sum(t_m)``); their ratio is the cohort's speed-up;
- the loader alone (batches gathered, cropped, flipped, normalized) against the cohort's batch
  rate: the share of a batch's time the data path takes;
- peak memory of each case in a fresh process (CPU: ``VmHWM``; CUDA: ``max_memory_allocated``):
  the cohort's process against one separate run and the sum of the separate runs.

Writes ``benchmarks/cohort_speed.md`` and ``benchmarks/cohort_speed.json``. The teacher has fixed
random weights with calibrated batch-norm statistics (as ``bench_kd.py``); timings do not depend
on what the weights are.

    python benchmarks/bench_cohort.py                   # CPU, 2 threads
    python benchmarks/bench_cohort.py --device cuda     # on a GPU (bf16 autocast, data on the GPU)
    python benchmarks/bench_cohort.py --quick --out /tmp/c.md --json /tmp/c.json   # smoke test
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mcmi.data import ImageDataset, TensorLoader, load_dataset
from mcmi.data.transforms import RandomCropFlip
from mcmi.engine import TrainConfig, Trainer
from mcmi.engine.cohort import CohortTrainer, SharedTeacher
from mcmi.experiments.train import RunConfig, build_method
from mcmi.io import write_json, write_text
from mcmi.models import create_model
from mcmi.models.fold import fold_batchnorm

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_common.py, cohort_report.py
from _common import cpu_model, run_result_child  # noqa: E402
from cohort_report import SETS, render  # noqa: E402  (the tables, also from a saved json)

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
NUM_CLASSES = 100
PAIR = ("resnet56", "resnet20")


# ----------------------------------------------------------------------------- building blocks
def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def make_teacher(dataset: ImageDataset, device: torch.device, channels_last: bool) -> nn.Module:
    """resnet56 with fixed random weights, batch norm calibrated on two real batches, then folded."""
    torch.manual_seed(0)
    model = create_model(PAIR[0], num_classes=NUM_CLASSES)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    loader = TensorLoader(dataset, 64, shuffle=True, augment=False, stats=(MEAN, STD), seed=123)
    model.train()
    with torch.no_grad():
        for batch in itertools.islice(iter(loader), 2):
            model(batch["image"].cpu())
    model = fold_batchnorm(model.eval().requires_grad_(False), tuple(dataset.image_shape))
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def make_method(name: str, teacher: nn.Module, num_data: int, args: argparse.Namespace) -> nn.Module:
    """A registered distiller on a fresh resnet20, built as a run builds it (context arguments)."""
    torch.manual_seed(1)
    student = create_model(PAIR[1], num_classes=NUM_CLASSES)
    method_args: dict[str, Any] = {}
    if name == "crd":
        method_args["num_negatives"] = args.crd_negatives
    if name == "hsakd":  # the teacher's auxiliary heads: random, as the teacher's weights are
        from mcmi.methods.hsakd import HEADS_PREFIX, build_aux_heads

        heads = build_aux_heads(teacher, (3, 32, 32))
        method_args["teacher_heads"] = {HEADS_PREFIX + k: v for k, v in heads.state_dict().items()}
    cfg = RunConfig(method=name, method_args=method_args)
    return build_method(cfg, student, teacher, {"num_data": num_data, "image_shape": (3, 32, 32)})


class Limited:
    """A loader view yielding the first ``n`` batches of each epoch (``state_dict`` etc. passed on)."""

    def __init__(self, loader: TensorLoader) -> None:
        self.loader, self.n = loader, 1

    def __len__(self) -> int:
        return self.n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


class Bench:
    """Settings and data of one benchmark process."""

    def __init__(self, args: argparse.Namespace, train: ImageDataset | None = None, amp: str | None = None) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.amp = amp or ("auto" if self.device.type == "cuda" else "off")
        self.tmp = tempfile.mkdtemp(prefix="bench_cohort_")
        if train is not None:  # bench_kd.py's data
            self.train = train
        elif args.data == "random":
            g = torch.Generator().manual_seed(0)
            imgs = torch.randint(0, 256, (args.n_train, 3, 32, 32), dtype=torch.uint8, generator=g)
            self.train = ImageDataset(imgs, torch.arange(args.n_train) % NUM_CLASSES,
                                      [str(i) for i in range(NUM_CLASSES)], "random")
        else:
            self.train = load_dataset(args.data, "train")
            if args.n_train and args.n_train < len(self.train):
                self.train = self.train.subset(torch.arange(args.n_train))
        # the data path of a GPU run with data.device_resident: uint8 images held on the device
        self.ours = self.train.to(self.device) if self.device.type == "cuda" else self.train

    def loader(self) -> Limited:
        return Limited(TensorLoader(self.ours, self.args.batch, shuffle=True,
                                    augment=RandomCropFlip(MEAN, STD, padding=4), seed=0, drop_last=True,
                                    device=self.device, channels_last=True))

    def trainer(self, method: nn.Module, loader: Limited) -> Trainer:
        cfg = TrainConfig(epochs=10**9, schedule="constant", lr=0.05, channels_last=True, amp=self.amp,
                          progress=False)
        return Trainer(method, loader, None, cfg, tempfile.mkdtemp(dir=self.tmp), NUM_CLASSES, self.device)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class Runner:
    def __init__(self, run: Callable[[int], None], batch: int, **info: Any) -> None:
        self.run, self.batch, self.info = run, batch, info


def separate_runner(b: Bench, methods: tuple[str, ...]) -> Runner:
    """The separate runs of ``methods``, one after another: each its own loader, teacher, trainer."""
    runs = []
    for name in methods:
        loader = b.loader()
        method = make_method(name, make_teacher(b.train, b.device, True), len(b.train), b.args)
        method.prepare(loader)  # CRD: the labels of its negatives
        runs.append((name, loader, b.trainer(method, loader)))
    epoch = itertools.count()
    per: dict[str, float] = {name: 0.0 for name in methods}

    def run(n: int) -> None:
        e = next(epoch)
        for name, loader, trainer in runs:
            t0 = time.perf_counter()
            loader.n = n
            trainer._train_epoch(e)
            b.sync()
            per[name] += time.perf_counter() - t0

    return Runner(run, b.args.batch, member_seconds=per)


def cohort_runner(b: Bench, methods: tuple[str, ...]) -> Runner:
    """The cohort of ``methods``: one loader, one shared teacher, a trainer per member."""
    loader = b.loader()
    shared = SharedTeacher(make_teacher(b.train, b.device, True))
    members = []
    for name in methods:
        method = make_method(name, shared.module, len(b.train), b.args)
        method.prepare(loader)
        members.append((name, b.trainer(method, loader)))
    shared.clear()
    cohort = CohortTrainer(members, shared)
    epoch = itertools.count()
    info: dict[str, Any] = {"teacher": shared}

    def run(n: int) -> None:
        loader.n = n
        cohort.train_steps(next(epoch))

    return Runner(run, b.args.batch, **info)


def loader_runner(b: Bench) -> Runner:
    """The loader alone: batches gathered, augmented and normalized on the device, nothing trained."""
    loader = b.loader()
    epoch = itertools.count()

    def run(n: int) -> None:
        loader.n = n
        loader.set_epoch(next(epoch))
        for batch in loader:
            batch["image"].sum()  # touch it (and wait for it on CUDA)

    return Runner(run, b.args.batch)


def build(b: Bench, case: str) -> Runner:
    kind, _, which = case.partition(":")
    if kind == "loader":
        return loader_runner(b)
    if kind == "sep" and which in SETS:
        return separate_runner(b, SETS[which])
    if kind == "sep":
        return separate_runner(b, (which,))
    return cohort_runner(b, SETS[which])


# ----------------------------------------------------------------------------- timing
def interleaved(b: Bench, runners: dict[str, Runner], steps: int | None = None) -> dict[str, dict[str, Any]]:
    a = b.args
    steps = steps or a.steps
    for r in runners.values():
        r.run(a.warmup)
    for r in runners.values():
        if "member_seconds" in r.info:
            r.info["member_seconds"].update({k: 0.0 for k in r.info["member_seconds"]})
        if "teacher" in r.info:
            r.info["teacher"].forwards = r.info["teacher"].reused = 0
    rounds: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(a.repeats):
        for k, r in runners.items():
            b.sync()
            t0 = time.perf_counter()
            r.run(steps)
            b.sync()
            rounds[k].append(steps * r.batch / (time.perf_counter() - t0))
    out = {}
    for k, v in rounds.items():
        info = dict(runners[k].info)
        res: dict[str, Any] = {"ips": statistics.median(v), "rounds": v, "steps": steps}
        if "member_seconds" in info:
            images = steps * a.repeats * runners[k].batch
            res["member_ips"] = {m: images / s for m, s in info["member_seconds"].items() if s}
        if "teacher" in info:
            t = info["teacher"]
            batches = steps * a.repeats
            res["teacher_passes_per_batch"] = t.forwards / batches
            res["teacher_reused_per_batch"] = t.reused / batches
        out[k] = res
        print(f"  {k}: {res['ips']:.1f} images/s per student (rounds {', '.join(f'{x:.1f}' for x in v)})",
              flush=True)
    return out


def run_child(args: argparse.Namespace, case: str, timeout: float = 600) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--_memory-case", case]
    for k in ("device", "batch", "data", "n_train", "crd_negatives"):
        argv += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    argv += ["--threads", str(args.memory_threads)]
    return run_result_child(argv, timeout)


def memory_child(b: Bench, case: str) -> dict[str, Any]:
    if b.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(b.device)
    if case != "floor":
        r = build(b, case)
        r.run(1)  # the first step allocates what the run holds: activations, optimizer state
        r.run(1)
        b.sync()
    return {"peak_bytes": peak_memory_bytes(b.device)}


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (cpu 4, cuda 20)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (cpu 2, cuda 5)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default="tinyimagenet100-32px", help="a 32 px, 100-class data set, or 'random'")
    ap.add_argument("--n-train", type=int, default=0, help="training images (0: all; random: 10000)")
    ap.add_argument("--crd-negatives", type=int, default=16384)
    ap.add_argument("--sets", default="3,11", help="cohort sizes to measure (3, 11)")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--memory-threads", type=int, default=1, help="torch threads of the memory processes")
    ap.add_argument("--steps-11", type=int, default=None, help="timed steps per round of the 11-member rows "
                    "(default: half of --steps, at least 1: one step trains 11 students)")
    ap.add_argument("--quick", action="store_true", help="smoke test: batch 4, 1 step, 1 round, random data")
    ap.add_argument("--out", default=str(Path(__file__).with_name("cohort_speed.md")))
    ap.add_argument("--json", default=str(Path(__file__).with_name("cohort_speed.json")))
    ap.add_argument("--_memory-case", dest="memory_case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.quick:
        args.batch, args.repeats, args.data = 4, 1, "random"
        args.n_train = args.n_train or 128
        args.crd_negatives = min(args.crd_negatives, 32)
        args.steps = args.steps or 1
        args.warmup = args.warmup if args.warmup is not None else 1
    if args.data == "random" and not args.n_train:
        args.n_train = 10_000
    args.steps = args.steps or (20 if cuda else 4)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    b = Bench(args)
    if args.memory_case:
        print("RESULT " + json.dumps(memory_child(b, args.memory_case)), flush=True)
        return {}
    t_start = time.perf_counter()
    dev = b.device
    res: dict[str, Any] = {
        "command": "python benchmarks/bench_cohort.py" + (" " + " ".join(argv if argv is not None
                                                                          else sys.argv[1:])).rstrip(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"},
        "data": f"{args.data} ({len(b.train)} training images, 32 px, {NUM_CLASSES} classes)",
        "args": vars(args), "load": {"before": os.getloadavg()[0]}, "rows": {},
    }
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]

    def save(final: bool = False) -> str:  # after every group and memory case: a cut-off run keeps its rows
        res["load"]["after"] = os.getloadavg()[0]
        res["wall_s"] = time.perf_counter() - t_start
        res["complete"] = final
        text = render(res)
        write_text(args.out, text)
        write_json(args.json, res)
        return text

    for key in sets:
        print(f"group: cohort of {len(SETS[key])} vs separate runs", flush=True)
        runners = {f"cohort:{key}": build(b, f"cohort:{key}"), f"sep:{key}": build(b, f"sep:{key}")}
        if key == sets[0]:
            runners["loader"] = build(b, "loader")
        steps = (args.steps_11 or max(1, args.steps // 2)) if key == "11" else args.steps
        load0 = os.getloadavg()[0]
        res["rows"].update(interleaved(b, runners, steps))
        res["load"][f"group {key}"] = [load0, os.getloadavg()[0]]
        for row in res["rows"].values():
            row.pop("teacher", None)
        del runners
        gc.collect()
        save()
    if args.memory:
        cases = ["floor"] + [f"cohort:{k}" for k in sets] + [f"sep:{m}" for m in dict.fromkeys(
            mt for k in sets for mt in SETS[k])]
        if args.quick:
            cases = cases[:3]
        res["memory"] = {}
        for case in cases:
            res["memory"][case] = run_child(args, case)
            print(f"memory: {case}: {res['memory'][case]}", flush=True)
            save()
    text = save(final=True)
    print(text)
    return res



if __name__ == "__main__":
    main()
