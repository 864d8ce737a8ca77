"""Metrics: accuracies, membership-inference attacks, timing. One named metric per variant.

Each registered metric is ``fn(ev: Evaluation, split: Split, cfg: MetricConfig, ctx: ModelContext | None)``
returning a float, or a dict of floats (stored as ``name[key]``, e.g. one per layer), with a :class:`MetricSpec`
(:mod:`unlearnlib.metrics.spec`): its label, unit and what it needs. Most read only the logits the harness
gathered once per model (``ev``); those that need ``models`` (:func:`model_metrics`) also get the models (``ctx``).
Units: accuracies and MIA scores in percent, times in seconds.
"""

from __future__ import annotations

from ..attacks import loss_lr_cv_mia, svc_mia_kodge
from . import zrf as zrf  # registers the ZRF metric
from .accuracy import class_accuracy, forget_retain_accuracy, true_class_probability
from .evaluation import Evaluation, MetricConfig, ModelContext, compute_metrics, weight_distance
from .spec import (
    METRICS,
    NEEDS,
    MetricSpec,
    any_needs,
    metric_label,
    metric_spec,
    metrics_needing,
    model_metrics,
    register_metric,
)
from .timing import Timer, speedup

__all__ = [
    "METRICS", "MetricSpec", "NEEDS", "register_metric", "metric_spec", "metric_label", "metrics_needing",
    "any_needs", "model_metrics", "Evaluation", "MetricConfig", "compute_metrics", "class_accuracy",
    "forget_retain_accuracy", "true_class_probability", "svc_mia_kodge", "loss_lr_cv_mia", "Timer", "speedup",
    "ModelContext", "weight_distance",
]
