"""Metrics: accuracies, membership-inference attacks, timing. One named metric per variant.

Each registered metric is ``fn(ev: Evaluation, split: Split, cfg: MetricConfig, ctx: ModelContext | None)``
returning a float, or a dict of floats (stored as ``name[key]``, e.g. one per layer). Most read only the logits
the harness gathered once per model (``ev``); those in ``MODEL_METRICS`` also need the models (``ctx``).
Units: accuracies and MIA scores in percent, times in seconds.
"""

from __future__ import annotations

from ..registry import Registry

METRICS = Registry("metric")

from ..attacks import loss_lr_cv_mia, svc_mia_kodge  # noqa: E402
from . import zrf as zrf  # noqa: E402  (registers the ZRF metric)
from .accuracy import class_accuracy, forget_retain_accuracy, true_class_probability  # noqa: E402
from .evaluation import MODEL_METRICS, Evaluation, MetricConfig, ModelContext, compute_metrics, weight_distance  # noqa: E402
from .timing import Timer, speedup  # noqa: E402

__all__ = [
    "METRICS", "Evaluation", "MetricConfig", "compute_metrics", "class_accuracy", "forget_retain_accuracy",
    "true_class_probability", "svc_mia_kodge", "loss_lr_cv_mia", "Timer", "speedup", "MODEL_METRICS", "ModelContext",
    "weight_distance",
]
