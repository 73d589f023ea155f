"""Train many independent small MLPs at once, as stacked weights and batched matmuls.

A 30-128-128-10 MLP at batch 32 keeps a CPU core mostly idle in an eager loop (about 6 GFLOP/s
here, see ``benchmarks/``). Stacking M models turns every layer into one ``bmm`` over M problems,
and writing the backward pass by hand (three layers, ReLU, softmax head) removes the autograd
bookkeeping; the optimizer is torch's fused Adam over the stacked tensors, which is elementwise
and therefore identical to M separate Adam instances.

Each model m is fully independent: its own initialization (``nn.Linear``'s default distribution,
from its own generator), its own data order (a permutation per epoch from its own generator),
its own targets and loss. A stack of one model reproduces a plain ``nn.Module`` trained with
autograd and ``torch.optim.Adam`` on the same batches (see the tests).

Loss of model m on a batch (all terms batch means):

    soft-target cross-entropy  - lam_m * KL(P_x || Q_m^{y_x})

which is eq. 20 when ``lam_m = 0`` (targets: one-hot, P*, or a teacher's outputs) and the MCMI
objective of eq. 14 when the targets are one-hot and ``lam_m > 0`` with frozen centroids Q_m.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from mcmi.io import torch_save
from mcmi.models.mlp import MLP


def _linear_init(shape_in_out: tuple[int, int], m: int, gens: Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
    """nn.Linear's default init (uniform in +-1/sqrt(fan_in) for weight and bias), per model."""
    fan_in, fan_out = shape_in_out
    bound = 1.0 / math.sqrt(fan_in)
    w = torch.empty(m, fan_in, fan_out)
    b = torch.empty(m, fan_out)
    for i, g in enumerate(gens):
        # drawn as (out, in) like nn.Linear, stored transposed for x @ W
        w[i] = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).T
        b[i] = torch.empty(fan_out).uniform_(-bound, bound, generator=g)
    return w, b


class StackedMLP:
    """M independent MLPs ``in -> h1 -> h2 -> C`` (ReLU) held as stacked tensors ``(M, fan_in, fan_out)``."""

    def __init__(self, weights: list[Tensor], biases: list[Tensor]) -> None:
        self.weights = [w.detach().clone().contiguous().requires_grad_(True) for w in weights]
        self.biases = [b.detach().clone().contiguous().requires_grad_(True) for b in biases]
        self._cache: list[Tensor] = []

    @classmethod
    def init(cls, m: int, dims: Sequence[int], gens: Sequence[torch.Generator]) -> "StackedMLP":
        if len(gens) != m:
            raise ValueError(f"need one generator per model: {m} models, {len(gens)} generators")
        ws, bs = zip(*(_linear_init((a, b), m, gens) for a, b in zip(dims[:-1], dims[1:])))
        return cls(list(ws), list(bs))

    @classmethod
    def from_modules(cls, models: Sequence[MLP]) -> "StackedMLP":
        layers = lambda mod: [*mod.hidden, mod.classifier]  # noqa: E731
        per_model = [layers(mod) for mod in models]
        ws = [torch.stack([lay[i].weight.detach().T for lay in per_model]) for i in range(len(per_model[0]))]
        bs = [torch.stack([lay[i].bias.detach() for lay in per_model]) for i in range(len(per_model[0]))]
        return cls(ws, bs)

    def to_modules(self) -> list[MLP]:
        dims = [self.weights[0].shape[1]] + [w.shape[2] for w in self.weights]
        out = []
        for i in range(self.num_models):
            mod = MLP(dims[0], dims[-1], tuple(dims[1:-1]))
            for lay, w, b in zip([*mod.hidden, mod.classifier], self.weights, self.biases):
                lay.weight.data.copy_(w[i].T)
                lay.bias.data.copy_(b[i])
            out.append(mod)
        return out

    def select(self, idx: Sequence[int]) -> "StackedMLP":
        """A new stack holding copies of models ``idx`` (e.g. teachers to fine-tune)."""
        i = torch.as_tensor(list(idx))
        return StackedMLP([w[i] for w in self.weights], [b[i] for b in self.biases])

    @property
    def num_models(self) -> int:
        return self.weights[0].shape[0]

    @property
    def params(self) -> list[Tensor]:
        return [*self.weights, *self.biases]

    @torch.no_grad()
    def forward(self, x: Tensor, keep: bool = False) -> Tensor:
        """Logits (M, B, C) for inputs (M, B, in); ``keep`` stores activations for :meth:`backward`."""
        acts = [x]
        h = x
        last = len(self.weights) - 1
        for j, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if j < last:
                h = h.clamp_(min=0.0)
                acts.append(h)
        if keep:
            self._cache = acts
        return h

    @torch.no_grad()
    def backward(self, dlogits: Tensor) -> None:
        """Set ``.grad`` of every stacked parameter from dLoss/dlogits (M, B, C)."""
        acts = self._cache
        g = dlogits
        for j in range(len(self.weights) - 1, -1, -1):
            a, w, b = acts[j], self.weights[j], self.biases[j]
            if w.grad is None:  # gradient buffers are reused: no allocation per step
                w.grad, b.grad = torch.empty_like(w), torch.empty_like(b)
            torch.bmm(a.transpose(1, 2), g, out=w.grad)
            torch.sum(g, 1, out=b.grad)
            if j > 0:
                # ReLU backward as one fused kernel (a is the post-ReLU activation)
                g = torch.ops.aten.threshold_backward(torch.bmm(g, w.transpose(1, 2)), a, 0.0)
        self._cache = []

    @torch.no_grad()
    def predict_logits(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """Logits (M, N, C) for inputs (M, N, in), in chunks to bound memory."""
        return torch.cat([self.forward(x[:, i : i + chunk]) for i in range(0, x.shape[1], chunk)], 1)

    @torch.no_grad()
    def predict_proba(self, x: Tensor, chunk: int = 8192) -> Tensor:
        """Softmax outputs (M, N, C) for inputs (M, N, in), in chunks to bound memory."""
        return self.predict_logits(x, chunk).softmax(-1)


def loss_grad(logits: Tensor, targets: Tensor, lam: Tensor, log_q: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-model loss (M,) and dLoss/dlogits (M, B, C) of ``soft CE - lam * KL(P || Q^y)``.

    ``targets`` (M, B, C) are probabilities; ``log_q`` (M, B, C) the log-centroid of each
    sample's class (or None when every ``lam`` is 0). With P = softmax(z):
    d/dz CE = P - t and d/dz KL(P || Q) = P * (log P - log Q - KL).
    """
    b = logits.shape[1]
    logp = torch.log_softmax(logits, -1)
    p = logp.exp()
    loss = -(targets * logp).sum(-1).mean(1)
    grad = p - targets
    if log_q is not None:
        log_ratio = logp - log_q
        kl = (p * log_ratio).sum(-1, keepdim=True)
        loss = loss - lam * kl.squeeze(-1).mean(1)
        grad = grad - lam[:, None, None] * p * (log_ratio - kl)
    return loss, grad.div_(b)


@dataclass
class StackedJobs:
    """What M models train on: ``x`` (D, N, in) holds D data sets, model m reads ``x[data_id[m]]``.

    ``targets`` (M, N, C): target distribution of every training sample for every model.
    ``labels`` (M, N) and ``log_centroids`` (M, C, C) are needed only where ``lam`` != 0.
    """

    x: Tensor
    data_id: Tensor
    targets: Tensor
    lam: Tensor
    labels: Tensor | None = None
    log_centroids: Tensor | None = None


def train_stacked(
    model: StackedMLP,
    jobs: StackedJobs,
    epochs: int,
    lr: float,
    batch_size: int,
    gens: Sequence[torch.Generator],
    schedule: str = "constant",
    progress: Callable[[int, int], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
) -> Tensor:
    """Adam on every model of ``model`` for ``epochs`` passes; returns the per-model mean loss of the
    last epoch. Batches follow each model's own per-epoch permutation (last batch may be short).

    With ``checkpoint``, the stack, the optimizer and every generator are saved atomically every
    ``checkpoint_every`` epochs, and a call that finds the file resumes after its epoch, giving
    the same result as an uninterrupted run.
    """
    m, n = jobs.targets.shape[:2]
    if model.num_models != m or len(gens) != m:
        raise ValueError(f"{model.num_models} models, {m} target sets and {len(gens)} generators must agree")
    use_cmi = bool((jobs.lam != 0).any())
    if use_cmi and (jobs.labels is None or jobs.log_centroids is None):
        raise ValueError("lam != 0 needs labels and log_centroids")
    opt = torch.optim.Adam(model.params, lr=lr, fused=True)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    rows = torch.arange(m)[:, None]
    last_loss = torch.zeros(m)
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        start = _load_checkpoint(Path(checkpoint), model, opt, gens, epochs)
        if progress is not None:
            progress(start, epochs)
    for epoch in range(start, epochs):
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])
        epoch_loss = torch.zeros(m)
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            if schedule == "cosine":
                opt.param_groups[0]["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            idx = order[:, s * batch_size : (s + 1) * batch_size]
            xb = jobs.x[jobs.data_id[:, None], idx]
            logits = model.forward(xb, keep=True)
            log_q = None
            if use_cmi:
                log_q = jobs.log_centroids[rows, jobs.labels[rows, idx]]
            loss, grad = loss_grad(logits, jobs.targets[rows, idx], jobs.lam, log_q)
            model.backward(grad)
            opt.step()
            epoch_loss += loss
        last_loss = epoch_loss / steps_per_epoch
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
            torch_save(checkpoint, {
                "format": _CKPT_FORMAT, "epoch": epoch + 1, "epochs": epochs, "num_models": m,
                "params": [p.detach() for p in model.params], "optimizer": opt.state_dict(),
                "generators": [g.get_state() for g in gens],
            })
        if progress is not None:
            progress(epoch + 1, epochs)
    return last_loss


_CKPT_FORMAT = "mcmi.stacked_mlp/1"


def _load_checkpoint(path: Path, model: StackedMLP, opt: torch.optim.Optimizer,
                     gens: Sequence[torch.Generator], epochs: int) -> int:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as e:  # truncated or not a torch file
        raise ValueError(f"{path}: unreadable stacked-MLP checkpoint ({e}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != _CKPT_FORMAT:
        raise ValueError(f"{path}: not a stacked-MLP checkpoint")
    if state["num_models"] != model.num_models or state["epochs"] != epochs:
        raise ValueError(
            f"{path}: checkpoint is for {state['num_models']} models x {state['epochs']} epochs, "
            f"this run has {model.num_models} x {epochs}"
        )
    with torch.no_grad():
        for p, saved in zip(model.params, state["params"]):
            p.copy_(saved)
    opt.load_state_dict(state["optimizer"])
    for g, gs in zip(gens, state["generators"]):
        g.set_state(gs)
    return int(state["epoch"])


def mlp_train_flops_per_sample(dims: Sequence[int]) -> int:
    """Multiply-adds x 2 of one training sample: forward, weight gradients, and input gradients of
    every layer but the first (the data need none)."""
    layer = [a * b for a, b in zip(dims[:-1], dims[1:])]
    return 2 * (sum(layer) + sum(layer) + sum(layer[1:]))
