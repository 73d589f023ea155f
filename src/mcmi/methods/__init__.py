"""Training objectives on one interface: ``method(batch) -> StepOutput(logits, losses)``.

Every method is a :class:`Method` (teacher objectives: MLL, MCMI, ...) or :class:`Distiller`
(KD, DKD, CRD, ...) subclass registered by name with :func:`register_method`, and describes
itself with class attributes (:class:`~mcmi.methods.base.Method` lists them): ``options`` (the
dataclass of its options: ``KD(student, teacher, temperature=2.0)``, a recipe's ``method_args``),
``display_name``, ``pair_defaults``, ``teacher_prep`` and ``test_options``. Nothing else lists
methods by name: the trainer, the recipe checks (:mod:`mcmi.methods.options`), the reports and
the tests read these attributes.

Where methods come from, all loaded when this package is imported:

- every module of this package (found with ``pkgutil``): adding a method is one file here, plus
  its test;
- plugin modules named in the environment variable ``MCMI_PLUGINS``, comma-separated, each a
  module name importable from ``sys.path`` (``MCMI_PLUGINS=my_methods``) or a path to a ``.py``
  file (``MCMI_PLUGINS=/work/my_kd.py``);
- installed packages' entry points of group ``mcmi.methods``, e.g. in their ``pyproject.toml``::

      [project.entry-points."mcmi.methods"]
      my_kd = "my_package.my_kd"            # a module that registers its methods
      other_kd = "my_package.other:OtherKD"  # or a Method class, registered under "other_kd"

A plugin module registers its methods as the package's own do::

    from dataclasses import dataclass
    from mcmi.methods import Distiller, StepOutput, register_method

    @dataclass
    class MyKDConfig:
        weight: float = 1.0

    @register_method("my_kd")
    class MyKD(Distiller):
        options = MyKDConfig
        display_name = "MyKD"
        teacher_signal = "logits"

        def forward(self, batch, epoch=0):
            logits = self.student(batch["image"])
            ...
            return StepOutput(logits, {"my_kd": self.cfg.weight * loss})

Since loading happens on import and reads the environment, the worker processes of a sweep
(which inherit it) see the same methods. A plugin that fails to import stops the import with a
one-line :class:`~mcmi.methods.plugins.PluginError` naming it.
"""
import importlib
import pkgutil

from mcmi.methods.base import (
    METHODS,
    Distiller,
    Method,
    StepOutput,
    method_class,
    register_method,
    resolve_test_options,
)
from mcmi.methods.kd import KD, SoftTarget
from mcmi.methods.mcmi import MCMI
from mcmi.methods.metadata import FromModels, PairDefault, PairTable, TeacherPrep
from mcmi.methods.mll import MLL
from mcmi.methods.options import method_defaults, method_options
from mcmi.methods.plugins import PluginError, load_plugins


def list_methods() -> list[str]:
    """Names of every registered method (teacher objectives, distillers and plugins), sorted."""
    return METHODS.names()


def display_name(name: str) -> str:
    """What reports print for method ``name``: its class's ``display_name`` (``name`` itself for a
    name that is not registered, e.g. a report's own row label)."""
    return method_class(name).display_name if name in METHODS else name


def teacher_preps() -> dict[str, TeacherPrep]:
    """The ``teacher_prep`` of every registered method that declares one, by method name."""
    return {n: method_class(n).teacher_prep for n in METHODS.names() if method_class(n).teacher_prep is not None}


# Every module of the package registers its methods on import; helpers (base, options, ...)
# register none, and importing them here too is harmless.
for _module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)

# Last, so that a plugin's ``from mcmi.methods import ...`` finds every name above.
load_plugins()

__all__ = ["KD", "MCMI", "METHODS", "MLL", "Distiller", "FromModels", "Method", "PairDefault", "PairTable",
           "PluginError", "SoftTarget", "StepOutput", "TeacherPrep", "display_name", "list_methods",
           "method_class", "method_defaults", "method_options", "register_method", "resolve_test_options",
           "teacher_preps"]
