"""CMI, log-likelihood and accuracy (paper eq. 5, 12, 13), batch and streaming forms."""
from mcmi.metrics.cmi import (
    CMIState,
    class_centroids,
    empirical_cmi,
    log_likelihood,
    per_class_cmi,
    per_sample_kl_to_centroid,
)
from mcmi.metrics.evaluate import EvalResult, evaluate

__all__ = [
    "CMIState",
    "EvalResult",
    "class_centroids",
    "empirical_cmi",
    "evaluate",
    "log_likelihood",
    "per_class_cmi",
    "per_sample_kl_to_centroid",
]
