"""CMI, log-likelihood and accuracy (paper eq. 5, 12, 13), batch and streaming forms."""
from mcmi.metrics.cmi import (
    CMIState,
    class_centroids,
    empirical_cmi,
    log_likelihood,
    per_class_cmi,
    per_sample_kl_to_centroid,
)
from mcmi.metrics.evaluate import EvalResult, accuracy_on_classes, confusion_matrix, evaluate, per_class_accuracy

__all__ = [
    "CMIState",
    "EvalResult",
    "accuracy_on_classes",
    "class_centroids",
    "confusion_matrix",
    "empirical_cmi",
    "evaluate",
    "log_likelihood",
    "per_class_accuracy",
    "per_class_cmi",
    "per_sample_kl_to_centroid",
]
