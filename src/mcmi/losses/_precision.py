"""Loss arithmetic in float32 whatever the autocast context.

The paper-scale recipes train under ``amp: auto`` (bf16 autocast on GPUs). Autocast runs matrix
products in bf16 and element-wise arithmetic in the dtype of its inputs, and bf16 keeps 8 bits of
mantissa: fine for a network's layers, wrong for the losses built on Gram matrices, distances,
similarities and KL divergences. On features of mean 1 and spread 0.1 (nearly collinear, as
pooled ReLU features are), bf16 moves RKD from 0.15 to 0.33, SP by about 30% and PKT by orders of
magnitude (``tests/test_precision.py``).

:func:`fp32_loss` decorates a loss function: every bf16/fp16 tensor argument (also inside lists,
tuples and dicts) is cast to float32 with ``.float()`` and the body runs with autocast disabled
on the arguments' device types. ``.float()`` is differentiable, so gradients reach the bf16
inputs (in bf16). float64 arguments stay float64 (the tests compare with NumPy at 1e-10), and
integer tensors (labels, indices) are left alone. :func:`fp32_context` is the same as a context
manager, for code that is not a function of its tensors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _tensors(obj: Any) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)


def to_fp32(obj: Any) -> Any:
    """``obj`` with every float16/bfloat16 tensor (also in lists, tuples, dicts) cast to float32."""
    if isinstance(obj, Tensor):
        return obj.float() if obj.dtype in _LOW_PRECISION else obj
    if isinstance(obj, list):
        return [to_fp32(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_fp32(v) for v in obj)
    if isinstance(obj, dict):
        return {k: to_fp32(v) for k, v in obj.items()}
    return obj


def _device_types(objs: Iterable[Any]) -> list[str]:
    types = {"cpu"}
    for obj in objs:
        types.update(t.device.type for t in _tensors(obj))
    return sorted(types)


@contextmanager
def fp32_context(*device_types: str) -> Iterator[None]:
    """Disable autocast on ``device_types`` (default: CPU, plus CUDA when present) inside the
    block; tensors made there from float32 tensors stay float32."""
    types = device_types or (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    with ExitStack() as stack:
        for dt in types:
            try:
                stack.enter_context(torch.autocast(device_type=dt, enabled=False))
            except RuntimeError:  # a device type without autocast support (e.g. "meta")
                continue
        yield


def fp32_loss(fn: F) -> F:
    """Decorator: run ``fn`` in float32 under any autocast context (see the module docstring).
    The undecorated function stays reachable as ``fn.__wrapped__``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with fp32_context(*_device_types((args, kwargs))):
            return fn(*to_fp32(args), **to_fp32(kwargs))

    return wrapper  # type: ignore[return-value]
