"""Batch-norm folding for frozen (eval-mode) models: ``fold_batchnorm(model)``.

In eval mode a ``BatchNorm2d`` is a fixed per-channel affine map
``y = (x - mean) / sqrt(var + eps) * gamma + beta``. When its input is the output of a
``Conv2d`` and nothing else reads that output, the map can be moved into the convolution:
``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` per output
channel, and the batch norm becomes an identity. The folded model computes the same function
(up to float rounding: the folding itself is done in float64) with one pass over each activation
fewer, which is what a frozen teacher in distillation spends most of its time on.

Which convolution feeds which batch norm is found by running the model once, not from module
names or registration order: the zoo's models call their layers from hand-written forward code
(e.g. the pre-activation blocks of WRN apply a BN to a residual sum, which cannot be folded).
A pair is folded only if, in one eval-mode ``forward_features`` call,

- the BN's input tensor *is* the conv's output tensor (forward hooks),
- each of the two modules runs exactly once,
- no other operation reads the conv's output (one consumer in the autograd graph) and it is not
  itself one of the returned features.

Every other batch norm is left as it is. The result is an eval-only copy: its folded layers have
no batch statistics, so training mode would not reproduce the original's training behaviour.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["find_conv_bn_pairs", "fold_batchnorm"]


def _tensors(obj: Any) -> Iterator[Tensor]:
    """Every tensor in a (nested) forward output: tensors, lists/tuples/dicts, dataclasses."""
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name))


def _consumer_counts(outputs: list[Tensor]) -> dict[Any, int]:
    """For every autograd node reachable from ``outputs``, how many edges point at it."""
    counts: dict[Any, int] = {}
    seen: set[int] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for nxt, _ in node.next_functions:
            if nxt is None:
                continue
            counts[nxt] = counts.get(nxt, 0) + 1
            stack.append(nxt)
    return counts


def _run(model: nn.Module, x: Tensor) -> Any:
    forward = getattr(model, "forward_features", None)
    return forward(x) if callable(forward) else model(x)


def find_conv_bn_pairs(
    model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)
) -> list[tuple[str, str]]:
    """Names ``(conv, bn)`` of the Conv2d -> BatchNorm2d pairs of ``model`` that can be folded
    (see the module docstring), found by one eval-mode forward of a batch of 2 random images."""
    names = {id(m): n for n, m in model.named_modules()}
    conv_out: dict[int, tuple[nn.Module, Tensor]] = {}  # id(output) -> (conv, output)
    bn_in: list[tuple[nn.Module, Tensor]] = []
    calls: dict[int, int] = {}

    def on_conv(mod: nn.Module, args: Any, out: Any) -> None:
        calls[id(mod)] = calls.get(id(mod), 0) + 1
        if isinstance(out, Tensor):
            conv_out[id(out)] = (mod, out)  # keeps the tensor alive: ids stay unique

    def on_bn(mod: nn.Module, args: Any) -> None:
        calls[id(mod)] = calls.get(id(mod), 0) + 1
        if args and isinstance(args[0], Tensor):
            bn_in.append((mod, args[0]))

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(on_bn))
    was_training = model.training
    model.eval()
    try:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, *image_shape, generator=g).to(dev, dtype).requires_grad_(True)
        with torch.enable_grad():
            out = _run(model, x)
            outputs = list(_tensors(out))
            counts = _consumer_counts(outputs)
            returned = {id(t) for t in outputs}
            pairs = []
            for bn, t in bn_in:
                hit = conv_out.get(id(t))
                if hit is None or hit[1] is not t:
                    continue
                conv = hit[0]
                if calls.get(id(conv)) != 1 or calls.get(id(bn)) != 1:
                    continue
                if id(t) in returned or t.grad_fn is None or counts.get(t.grad_fn, 0) != 1:
                    continue
                if bn.running_mean is None or bn.running_var is None:
                    continue  # no running statistics: eval mode still uses batch statistics
                if bn.num_features != conv.out_channels:
                    continue
                pairs.append((names[id(conv)], names[id(bn)]))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return pairs


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    w = conv.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(mean)
    dtype, grad = conv.weight.dtype, conv.weight.requires_grad
    conv.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=grad)
    conv.bias = nn.Parameter(((bias - mean) * scale + beta).to(dtype), requires_grad=grad)


def _replace(model: nn.Module, target: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if child is target:
                setattr(parent, name, new)


def fold_batchnorm(model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> nn.Module:
    """An eval-mode copy of ``model`` with every foldable batch norm folded into the
    convolution before it and replaced by ``nn.Identity`` (see the module docstring).

    ``model`` itself is not changed. Outputs (``forward`` and every tensor of
    ``forward_features``) equal the original's in eval mode up to float rounding. The copy's
    ``folded_pairs`` attribute lists the ``(conv, bn)`` names that were folded. ``image_shape``
    is the shape of one input image for the probing forward pass.
    """
    folded = copy.deepcopy(model)
    pairs = find_conv_bn_pairs(folded, image_shape)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        _fold_into(conv, bn)
        _replace(folded, bn, nn.Identity())
    folded.eval()
    folded.folded_pairs = pairs  # plain attribute (not a module or parameter)
    return folded
