"""The synthetic Gaussian study of paper Appendix A.6 / Table 5, the whole grid at once.

Per (delta, seed): an MLL teacher, its MCMI fine-tune, and four students trained on the targets of
eq. 20 (ground-truth P*, MCMI teacher, MLL teacher, one-hot). All models of a phase train together
as one stack (:mod:`mcmi.engine.stacked_mlp`), in three phases:

A. MLL teachers + ground-truth students + one-hot students (all independent of any teacher);
B. MCMI fine-tuning of the teachers (centroids of eq. 13 over the training set, then frozen);
C. students of the MLL and the MCMI teachers.

Every phase checkpoints its stack atomically; a rerun resumes at the last finished phase epoch.
"""
from __future__ import annotations

import json
import logging
import math
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from mcmi.data.synthetic import GaussianTask, make_gaussian_task
from mcmi.engine.stacked_mlp import (
    StackedJobs,
    StackedMLP,
    mlp_train_flops_per_sample,
    train_stacked,
)
from mcmi.io import write_json
from mcmi.metrics.cmi import CMIState

log = logging.getLogger(__name__)

TARGETS = ("ground_truth", "mcmi", "mll", "one_hot")


@dataclass
class GaussianStudyConfig:
    """Defaults: the paper's text (A.6). ``noise_is: variance`` with ``noise: 6`` and the 5% training
    split is the code of Ren et al. (2021); see configs/experiments/gaussian_table5_ren.yaml."""

    deltas: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0, 4.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    n: int = 100_000
    num_classes: int = 10
    dim: int = 30
    noise: float = 4.0
    noise_is: str = "std"
    split: list[float] | None = None
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    lr: float = 5e-4
    batch_size: int = 32
    epochs: int = 100
    finetune_epochs: int = 20
    finetune_lr: float = 1e-4  # one fifth of the teacher's lr, as in the paper's A.8.1
    finetune_schedule: str = "cosine"
    lam: float = 0.15
    checkpoint_every: int = 5  # epochs
    threads: int = 0  # 0: torch's default

    def __post_init__(self) -> None:
        if not self.deltas or not self.seeds:
            raise ValueError("deltas and seeds must be non-empty")
        if self.noise_is not in ("std", "variance"):
            raise ValueError(f"noise_is must be 'std' or 'variance', got {self.noise_is!r}")
        if self.finetune_schedule not in ("constant", "cosine"):
            raise ValueError(f"finetune_schedule must be 'constant' or 'cosine', got {self.finetune_schedule!r}")


def _gen(seed: int, delta: float, role: str) -> torch.Generator:
    """Independent stream per (seed, delta, role): the same model gets the same stream in any grid."""
    key = zlib.crc32(f"{seed}|{delta}|{role}".encode())
    return torch.Generator().manual_seed(key)


def _pdist(target: torch.Tensor, post: torch.Tensor) -> dict[str, float]:
    diff = (target.double() - post.double())
    return {"fro": float(diff.norm()), "mean": float(diff.norm(dim=1).mean())}


def _teacher_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    # from logits: log-probabilities of a confident wrong answer stay finite where softmax
    # underflows to 0 in float32 (which would make the LL -inf)
    st = CMIState.empty(logits.shape[1])
    st.update_logits(logits, labels)
    return {"accuracy": st.accuracy(), "cmi": st.cmi(), "log_likelihood": st.log_likelihood()}


def _probs_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    st = CMIState.empty(probs.shape[1])
    st.update_probs(probs, labels)
    return {"accuracy": st.accuracy(), "cmi": st.cmi(), "log_likelihood": st.log_likelihood()}


class _Phase:
    """One stack trained with checkpoints under ``path``."""

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self.trained = False  # whether this call trained (False: loaded a finished stack)

    def run(self, stack: StackedMLP, jobs: StackedJobs, gens, epochs: int, lr: float, batch: int,
            schedule: str, progress) -> StackedMLP:
        done = self.path.with_suffix(".done.pt")
        if done.exists():
            state = torch.load(done, weights_only=True)
            return StackedMLP(state["weights"], state["biases"])
        self.trained = True
        train_stacked(stack, jobs, epochs, lr, batch, gens, schedule=schedule, progress=progress,
                      checkpoint=self.path, checkpoint_every=self.every)
        from mcmi.io import torch_save

        torch_save(done, {"weights": [w.detach() for w in stack.weights], "biases": [b.detach() for b in stack.biases]})
        return stack


def run_gaussian_study(cfg: GaussianStudyConfig, out_dir: str | Path,
                       progress_factory: Callable[[str, int], Callable[[int, int], None]] | None = None) -> dict:
    """Run the grid, write ``results.json`` into ``out_dir`` and return it."""
    out = Path(out_dir)
    ck = out / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    resumed = any(ck.glob("phase_*.pt"))  # timings below then cover only this invocation
    keys = [(d, s) for d in cfg.deltas for s in cfg.seeds]
    tasks: dict[tuple[float, int], GaussianTask] = {
        k: make_gaussian_task(k[0], k[1], cfg.n, cfg.num_classes, cfg.dim, cfg.noise, cfg.noise_is,
                              tuple(cfg.split) if cfg.split else None)
        for k in keys
    }
    c = cfg.num_classes
    train = {k: t.split("train") for k, t in tasks.items()}
    n_train = min(x.shape[0] for x, _, _ in train.values())
    x_all = torch.stack([train[k][0][:n_train] for k in keys])  # (K, N, dim)
    y_all = torch.stack([train[k][1][:n_train] for k in keys])
    post_all = torch.stack([train[k][2][:n_train] for k in keys])
    onehot_all = F.one_hot(y_all, c).float()
    kidx = torch.arange(len(keys))
    dims = (cfg.dim, *cfg.hidden, c)
    prog = progress_factory or (lambda name, total: None)
    timings: dict[str, float] = {}
    model_steps = 0
    samples = 0
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)

    # Phase A: MLL teachers, ground-truth students, one-hot students.
    roles_a = ["teacher_mll", "student_ground_truth", "student_one_hot"]
    gens_a = [_gen(s, d, r) for r in roles_a for (d, s) in keys]
    init_a = [_gen(s, d, r + "/init") for r in roles_a for (d, s) in keys]
    jobs_a = StackedJobs(
        x=x_all, data_id=kidx.repeat(3),
        targets=torch.cat([onehot_all, post_all, onehot_all]),
        lam=torch.zeros(3 * len(keys)),
    )
    t0 = time.perf_counter()
    phases = [_Phase(ck / f"phase_{x}.pt", cfg.checkpoint_every) for x in "abc"]
    stack_a = phases[0].run(
        StackedMLP.init(len(gens_a), dims, init_a), jobs_a, gens_a, cfg.epochs, cfg.lr, cfg.batch_size,
        "constant", prog("A: MLL teachers + GT/one-hot students", cfg.epochs))
    timings["phase_a"] = time.perf_counter() - t0
    model_steps += len(gens_a) * cfg.epochs * steps_per_epoch
    samples += len(gens_a) * cfg.epochs * n_train
    n_keys = len(keys)
    teachers = stack_a.select(range(n_keys))

    # Phase B: MCMI fine-tuning with centroids computed once (eq. 13) and held fixed.
    p_mll_train = teachers.predict_proba(x_all)
    centroids = torch.stack([
        torch.zeros(c, c).index_add_(0, y_all[i], p_mll_train[i]) / torch.bincount(y_all[i], minlength=c).clamp_min(1)[:, None]
        for i in range(n_keys)
    ])
    gens_b = [_gen(s, d, "teacher_mcmi") for (d, s) in keys]
    jobs_b = StackedJobs(x=x_all, data_id=kidx, targets=onehot_all, lam=torch.full((n_keys,), cfg.lam),
                         labels=y_all, log_centroids=centroids.clamp_min(1e-30).log())
    t0 = time.perf_counter()
    mcmi = phases[1].run(
        teachers.select(range(n_keys)), jobs_b, gens_b, cfg.finetune_epochs, cfg.finetune_lr, cfg.batch_size,
        cfg.finetune_schedule, prog("B: MCMI fine-tuning", cfg.finetune_epochs))
    timings["phase_b"] = time.perf_counter() - t0
    model_steps += n_keys * cfg.finetune_epochs * steps_per_epoch
    samples += n_keys * cfg.finetune_epochs * n_train
    p_mcmi_train = mcmi.predict_proba(x_all)

    # Phase C: students of the MCMI and MLL teachers (teacher outputs computed once: no augmentation).
    roles_c = ["student_mcmi", "student_mll"]
    gens_c = [_gen(s, d, r) for r in roles_c for (d, s) in keys]
    init_c = [_gen(s, d, r + "/init") for r in roles_c for (d, s) in keys]
    jobs_c = StackedJobs(x=x_all, data_id=kidx.repeat(2), targets=torch.cat([p_mcmi_train, p_mll_train]),
                         lam=torch.zeros(2 * n_keys))
    t0 = time.perf_counter()
    stack_c = phases[2].run(
        StackedMLP.init(len(gens_c), dims, init_c), jobs_c, gens_c, cfg.epochs, cfg.lr, cfg.batch_size,
        "constant", prog("C: students of MCMI and MLL teachers", cfg.epochs))
    timings["phase_c"] = time.perf_counter() - t0
    model_steps += len(gens_c) * cfg.epochs * steps_per_epoch
    samples += len(gens_c) * cfg.epochs * n_train

    # Evaluation on the held-out test split (and Pdist on train, the targets students saw).
    students = {
        "ground_truth": stack_a.select(range(n_keys, 2 * n_keys)),
        "one_hot": stack_a.select(range(2 * n_keys, 3 * n_keys)),
        "mcmi": stack_c.select(range(n_keys)),
        "mll": stack_c.select(range(n_keys, 2 * n_keys)),
    }
    test = {k: t.split("test") for k, t in tasks.items()}
    n_test = min(x.shape[0] for x, _, _ in test.values())
    xt = torch.stack([test[k][0][:n_test] for k in keys])
    yt = torch.stack([test[k][1][:n_test] for k in keys])
    pt = torch.stack([test[k][2][:n_test] for k in keys])
    logits_test = {"mll": teachers.predict_logits(xt), "mcmi": mcmi.predict_logits(xt)}
    logits_train = {"mll": teachers.predict_logits(x_all), "mcmi": mcmi.predict_logits(x_all)}
    teacher_test = {k: v.softmax(-1) for k, v in logits_test.items()}
    teacher_train = {"mll": p_mll_train, "mcmi": p_mcmi_train}
    student_acc = {name: (st.predict_proba(xt).argmax(-1) == yt).double().mean(1) for name, st in students.items()}

    runs = []
    for i, (d, s) in enumerate(keys):
        targets_test = {"ground_truth": pt[i], "one_hot": F.one_hot(yt[i], c).float(),
                        "mcmi": teacher_test["mcmi"][i], "mll": teacher_test["mll"][i]}
        targets_train = {"ground_truth": post_all[i], "one_hot": onehot_all[i],
                         "mcmi": teacher_train["mcmi"][i], "mll": teacher_train["mll"][i]}
        row = {
            "delta": d, "seed": s, "n_train": n_train, "n_test": n_test,
            "bayes_accuracy": tasks[(d, s)].bayes_accuracy("test"),
            # the BCPD's own CMI and LL: where a teacher stands against the target it estimates
            "bayes": {"test": _probs_metrics(pt[i], yt[i]), "train": _probs_metrics(post_all[i], y_all[i])},
            "teachers": {t: {"test": _teacher_metrics(logits_test[t][i], yt[i]),
                             "train": _teacher_metrics(logits_train[t][i], y_all[i])} for t in ("mll", "mcmi")},
            "targets": {
                name: {"student_accuracy": float(student_acc[name][i]),
                       "pdist_test": _pdist(targets_test[name], pt[i]),
                       "pdist_train": _pdist(targets_train[name], post_all[i])}
                for name in TARGETS
            },
        }
        runs.append(row)
    wall = time.perf_counter() - t_start
    flops = samples * mlp_train_flops_per_sample(dims)
    train_time = sum(timings.values())
    timing = {**timings, "wall_s": wall, "model_steps": model_steps, "train_flops": flops,
              "train_gflops_per_s": flops / train_time / 1e9 if train_time > 0 else None,
              "threads": torch.get_num_threads(), "resumed": resumed}
    previous = out / "results.json"
    if not any(p.trained for p in phases) and previous.exists():
        # nothing was trained: this call re-evaluated finished stacks, so the timing that
        # describes them is the one of the call that trained them
        old = json.loads(previous.read_text()).get("timing")
        if old:
            timing = {**old, "re_evaluated": True}
    result = {"config": asdict(cfg), "runs": runs, "timing": timing}
    write_json(out / "results.json", result)
    return result
