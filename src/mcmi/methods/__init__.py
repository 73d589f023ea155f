"""Training objectives on one interface: ``method(batch) -> StepOutput(logits, losses)``."""
from mcmi.methods import at, cc, crd, dkd, fitnet, hsakd, kd, mcmi, mll, pkt, reviewkd, rkd, sp, vid  # noqa: F401  (registers)  # noqa: F401  (registers)  # noqa: F401  (registers)
from mcmi.methods.base import METHODS, Distiller, Method, StepOutput, register_method
from mcmi.methods.kd import KD, SoftTarget
from mcmi.methods.mcmi import MCMI
from mcmi.methods.mll import MLL


def list_methods() -> list[str]:
    """Names of every registered method (teacher objectives and distillers), sorted."""
    return METHODS.names()


__all__ = ["KD", "MCMI", "METHODS", "MLL", "Distiller", "Method", "SoftTarget", "StepOutput",
           "list_methods", "register_method"]
