"""CMI, log-likelihood and accuracy (paper eq. 5, 12, 13), top-5 accuracy and expected calibration
error, batch and streaming forms."""
from mcmi.metrics.calibration import (
    CalibrationState,
    expected_calibration_error,
    topk_accuracy,
)
from mcmi.metrics.cmi import (
    CMIState,
    class_centroids,
    empirical_cmi,
    log_likelihood,
    per_class_cmi,
    per_sample_kl_to_centroid,
)
from mcmi.metrics.evaluate import (
    EvalResult,
    accuracy_on_classes,
    confusion_matrix,
    evaluate,
    per_class_accuracy,
)

__all__ = [
    "CMIState",
    "CalibrationState",
    "EvalResult",
    "accuracy_on_classes",
    "class_centroids",
    "confusion_matrix",
    "empirical_cmi",
    "evaluate",
    "expected_calibration_error",
    "log_likelihood",
    "per_class_accuracy",
    "per_class_cmi",
    "per_sample_kl_to_centroid",
    "topk_accuracy",
]
