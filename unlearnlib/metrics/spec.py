"""The metric registry: every metric is one named function with a :class:`MetricSpec` that says what it needs, how
it is labelled and how it is read.

The harness asks the spec, never the metric's name: which logits to gather (``aug_logits``, ``trigger_logits``),
whether a method cell needs the retrained model (``retrain``), whether the models and image batches are handed
over (``models``, ``images``) and whether the metric is computed for the original too (``on_original``). The
reading side takes the label and whether a gap to retrain means anything (``gap_to_retrain``) from it. Adding a
metric is one decorated function::

    @register_metric("my_metric", label="my metric (%)", needs={"models", "retrain"}, on_original=False)
    def my_metric(ev, split, cfg, ctx) -> float: ...

(lm-evaluation-harness declares ``higher_is_better`` and ``aggregation`` on each metric the same way.)
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal

from ..registry import Registry

# what a metric reads besides the plain logits of the evaluated model (ev.test_logits, ev.train_logits):
# models: the models themselves (ctx.model, ctx.original: weight distances, relearning, probes);
# retrain: the retrained model of the same scenario (ctx.retrain; the method cell then depends on the retrain cell);
# aug_logits: the train images' logits through the training augmentation (ev.train_aug_logits);
# trigger_logits: triggered copies of the non-target test images (ev.trigger_logits, backdoor scenarios);
# images: batches of test and training images at dataset indices (ctx.test_images, ctx.train_images)
Need = Literal["models", "retrain", "aug_logits", "trigger_logits", "images"]
NEEDS: tuple[str, ...] = typing.get_args(Need)
Unit = Literal["%", "s", "x", "epochs", ""]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[..., float | dict[str, float]]  # fn(ev: Evaluation, split: Split, cfg: MetricConfig, ctx)
    label: str  # how tables and figures name it
    unit: Unit = "%"
    needs: frozenset[str] = frozenset()  # of NEEDS
    on_original: bool = True  # computed in the original's evaluation cell too (a distance to itself is not)
    gap_to_retrain: bool = True  # its difference to retrain's value is a forgetting gap (times and distances: not)
    summary: str = ""  # the first line of the function's docstring

    def __call__(self, ev: Any, split: Any, cfg: Any, ctx: Any) -> float | dict[str, float]:
        return self.fn(ev, split, cfg, ctx)


METRICS = Registry("metric")


def register_metric(name: str, *, label: str, unit: Unit = "%", needs: Iterable[str] = (), on_original: bool = True,
                    gap_to_retrain: bool = True) -> Callable[[Callable], Callable]:
    """Register the decorated ``fn(ev, split, cfg, ctx)`` as metric ``name`` (the function is returned unchanged)."""
    need = frozenset(needs)
    bad = sorted(need - set(NEEDS))
    if bad:
        raise ValueError(f"metric {name!r}: unknown needs {bad}; valid: {', '.join(NEEDS)}")
    if "retrain" in need or "images" in need:
        need |= {"models"}  # the retrained model and the images come with the models' context

    def add(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        METRICS.register(name, MetricSpec(name, fn, label, unit, need, on_original, gap_to_retrain,
                                          doc[0] if doc else ""))
        return fn

    return add


def metric_spec(name: str) -> MetricSpec:
    """The spec of a registered metric; an unknown name raises the registry's error listing the valid ones."""
    return METRICS.get(name)


def metrics_needing(need: str, names: Iterable[str] | None = None) -> set[str]:
    """The metrics (of ``names``, default: every registered one) that need ``need``."""
    if need not in NEEDS:
        raise ValueError(f"unknown need {need!r}; valid: {', '.join(NEEDS)}")
    return {n for n in (METRICS.names() if names is None else names) if need in METRICS.get(n).needs}


def any_needs(names: Iterable[str], need: str) -> bool:
    """Whether any of the metrics ``names`` needs ``need``."""
    return bool(metrics_needing(need, names))


# rows the harness writes itself beside the registered metrics (not computed from logits, not selectable in a
# YAML's ``metrics:``): the method's time, its speed-up over the reference, whether its stopping rule ended it
HARNESS_ROWS = {s.name: s for s in (
    MetricSpec("unlearn_time_s", None, "time (s)", "s", on_original=False, gap_to_retrain=False),
    MetricSpec("speedup_vs_retrain", None, "speed-up vs retrain (x)", "x", on_original=False, gap_to_retrain=False),
    MetricSpec("stopped_by_rule", None, "ended by its stopping rule (% of calls)", on_original=False),
    # the budget of the call (unlearnlib.harness.budget measures it; methods do not count): optimiser steps over the
    # model's parameters, over other tensors only, passes over the forget and retain sets (samples drawn / set
    # size), the share of parameter and of floating-point buffer elements that differ from the original
    MetricSpec("budget_steps", None, "optimiser steps", "", on_original=False, gap_to_retrain=False),
    MetricSpec("budget_other_steps", None, "optimiser steps on other tensors", "", on_original=False,
               gap_to_retrain=False),
    MetricSpec("budget_forget_passes", None, "passes over the forget set (x)", "x", on_original=False,
               gap_to_retrain=False),
    MetricSpec("budget_retain_passes", None, "passes over the retain set (x)", "x", on_original=False,
               gap_to_retrain=False),
    MetricSpec("budget_changed_pct", None, "weights changed (%)", on_original=False, gap_to_retrain=False),
    MetricSpec("budget_buffers_changed_pct", None, "buffers changed (%)", on_original=False, gap_to_retrain=False),
    # the steps the same options take in the method's paper's setting (its declared sizes), for the text
    MetricSpec("budget_paper_steps", None, "optimiser steps in its paper's setting", "", on_original=False,
               gap_to_retrain=False),
)}
BUDGET_METRICS = tuple(k for k in HARNESS_ROWS if k.startswith("budget_"))


def describe(name: str) -> MetricSpec | None:
    """The spec of a row's metric name: a registered metric, a harness row, or None (e.g. ``forget_prediction[3]``,
    one value of a metric that gives several)."""
    return METRICS.get(name) if name in METRICS else HARNESS_ROWS.get(name)


def metric_label(name: str) -> str:
    """How tables and figures name a metric (its spec's label; else the name itself)."""
    spec = describe(name)
    return spec.label if spec is not None else name


def has_gap_to_retrain(name: str) -> bool:
    """Whether a difference to the reference's value of this metric is a forgetting gap (times, speed-ups and
    weight distances: no)."""
    spec = describe(name)
    return spec is None or spec.gap_to_retrain


def model_metrics() -> set[str]:
    """The metrics that need the models themselves (a :class:`ModelContext`)."""
    return metrics_needing("models")
