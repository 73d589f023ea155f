"""mcmi: knowledge distillation with teachers trained to estimate the Bayes conditional
probability distribution by maximizing log-likelihood plus conditional mutual information
(Ye et al., "Bayes Conditional Distribution Estimation for Knowledge Distillation Based on
Conditional Mutual Information", ICLR 2024).

The library's front door, loaded on first use (``import mcmi`` itself imports nothing heavy)::

    import mcmi
    teacher = mcmi.wrap(my_cnn, stages=["layer1", "layer2", "layer3"], classifier="fc")
    print(mcmi.evaluate(teacher, test_loader, num_classes=10).cmi)
    mcmi.list_models(), mcmi.list_methods(), mcmi.create_model("resnet20", num_classes=10)
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

#: public name -> (module, attribute), imported when first read (PEP 562)
_LAZY: dict[str, tuple[str, str]] = {
    "create_model": ("mcmi.models.zoo", "create_model"),
    "list_models": ("mcmi.models.zoo", "list_models"),
    "list_methods": ("mcmi.methods", "list_methods"),
    "evaluate": ("mcmi.metrics.evaluate", "evaluate"),
    "wrap": ("mcmi.models.wrap", "wrap"),
    "load_model": ("mcmi.models.io", "load_model"),
}

__all__ = ["__version__", *_LAZY]  # noqa: PLE0604  (names of _LAZY, kept in step)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(import_module(module), attr)
        globals()[name] = value  # later reads skip this hook
        return value
    raise AttributeError(f"module 'mcmi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
