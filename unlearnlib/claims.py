"""Claim verdicts from a run's numbers and their uncertainty.

A claim is checked per model and dataset on one value per training seed: the metric pooled over the run's
forget scenarios (of the claim's kind) the way the paper pools them — the mean, or for times the median, so one
slow call cannot decide a timing claim. Comparisons with another method are paired by seed. Over the seeds:
the mean and a 95 % t-interval. The verdict:

- *holds*: the whole interval satisfies the claim's comparison;
- *fails*: the whole interval violates it;
- *inconclusive*: the interval contains the threshold (or a single seed gives no interval);
- *not comparable on this profile*: the claim is not checked here, a number it needs is missing, or its
  precondition is not met;
- *pipeline check only*: the ``smoke`` profile gives no verdicts.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from .data.splits import ScenarioKind
from .schema import PROFILES, ConfigError

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
NOT_COMPARABLE, PIPELINE_ONLY = "not comparable on this profile", "pipeline check only"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_COMPARABLE, PIPELINE_ONLY)
TIME_METRICS = ("unlearn_time_s", "speedup_vs_retrain")
LEVEL = 0.95
INTERVAL_NOTE = (f"{LEVEL:.0%} t-interval over training seeds; within a seed the scenarios are pooled as the "
                 f"paper pools them (mean; times: median)")

# ----------------------------------------------------------------------------------------------
# the schema of a claim (a paper YAML's ``claims:``)

Op = Literal["<", "<=", ">", ">="]
OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}  # the one table of comparisons
assert tuple(OPS) == typing.get_args(Op)
TRANSFORMS = {"diff": "{m} - {r}", "drop": "{r} - {m}", "abs_diff": "|{m} - {r}|"}  # vs_method: what is compared


@dataclass
class Claim:
    id: str
    text: str
    source: str
    kind: Literal["threshold", "vs_method", "vs_best"]
    method: str
    metric: str
    op: Op
    threshold: float | None = None
    reference: str | None = None  # vs_method: the method compared with
    references: list[str] = field(default_factory=list)  # vs_best: the methods to beat
    transform: Literal["diff", "drop", "abs_diff"] = "diff"  # vs_method: diff (method - reference) | drop | abs_diff
    profiles: list[str] = field(default_factory=lambda: list(PROFILES))  # where the check is meaningful
    scenario_kind: Literal["", ScenarioKind] = ""  # only scenarios of this kind; "" = all
    # precondition: the claim is only comparable when `requires_method`'s `requires_metric` meets
    # `requires_op requires_threshold` (e.g. the original's ASR >= 50: the backdoor was implanted at all)
    requires_metric: str = ""
    requires_method: str = "original"
    requires_op: Op = ">="
    requires_threshold: float | None = None
    note: str = ""

    def check(self) -> None:
        """The fields a claim of its kind needs (each field's type and choices were checked when it loaded; the
        methods it names are checked against the registry with the paper, ``config.validate_settings``)."""
        if self.kind in ("threshold", "vs_method") and self.threshold is None:
            raise ConfigError(f"threshold: a {self.kind} claim needs a threshold")
        if self.kind == "vs_method" and not self.reference:
            raise ConfigError(f"reference: a vs_method claim needs a reference (and a transform in "
                              f"{', '.join(TRANSFORMS)})")
        if self.requires_metric and self.requires_threshold is None:
            raise ConfigError(f"requires_metric: a precondition needs requires_threshold and requires_op in "
                              f"{', '.join(OPS)}")
        if self.kind == "vs_best" and not self.references:
            raise ConfigError("references: a vs_best claim needs methods to compare with")


# ----------------------------------------------------------------------------------------------
# verdicts


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of a t-interval; low/high are NaN for fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def verdict(low: float, high: float, op: str, threshold: float) -> str:
    """holds / fails / inconclusive from an interval and a comparison with a threshold."""
    if math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    a, b = bool(OPS[op](low, threshold)), bool(OPS[op](high, threshold))
    return HOLDS if a and b else FAILS if not a and not b else INCONCLUSIVE


def select(metrics: pd.DataFrame, method: str, metric: str, model: str | None = None, dataset: str | None = None,
           kind: str = "") -> pd.DataFrame:
    m = metrics
    sel = (m.method == method) & (m.metric == metric)
    if model is not None:
        sel &= m.model == model
    if dataset is not None:
        sel &= m.dataset == dataset
    if kind:
        sel &= m.scenario.str.startswith(kind)
    return m.loc[sel].dropna(subset=["value"])


def per_seed(metrics: pd.DataFrame, method: str, metric: str, model: str | None = None, dataset: str | None = None,
             kind: str = "") -> pd.Series:
    """One value per training seed: the metric pooled over the scenarios (mean; median for times)."""
    g = select(metrics, method, metric, model, dataset, kind).groupby("seed")["value"]
    return g.median() if metric in TIME_METRICS else g.mean()


def _paired(a: pd.Series, b: pd.Series) -> tuple[pd.Series, pd.Series]:
    seeds = a.index.intersection(b.index)
    return a.loc[seeds], b.loc[seeds]


def evaluate_claim(metrics: pd.DataFrame, profile: str, claim: Claim, model: str,
                   dataset: str | None = None) -> dict:
    """The verdict of one claim for one model (and dataset) with its estimate and interval. In the smoke profile
    the estimate is computed (the pipeline made it) but the verdict is "pipeline check only"."""
    out = _evaluate(metrics, profile, claim, model, dataset)
    if profile == "smoke" and out["verdict"] != NOT_COMPARABLE:
        out["verdict"] = PIPELINE_ONLY
    return out


def _evaluate(metrics: pd.DataFrame, profile: str, claim: Claim, model: str, dataset: str | None) -> dict:
    out = {"claim": claim.text, "dataset": dataset, "model": model, "source": claim.source, "estimate": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "seeds": 0, "scenarios": 0, "target": "",
           "verdict": NOT_COMPARABLE}
    if profile not in claim.profiles:
        return {**out, "target": f"checked on: {', '.join(claim.profiles)}"}
    k = claim.scenario_kind
    if claim.requires_metric:
        pre = per_seed(metrics, claim.requires_method, claim.requires_metric, model, dataset, k).mean()
        if math.isnan(pre) or not OPS[claim.requires_op](pre, claim.requires_threshold):
            return {**out, "target": f"precondition not met: {claim.requires_method} {claim.requires_metric} = "
                                     f"{pre:.3g}, needs {claim.requires_op} {claim.requires_threshold:g}"}
    mine = per_seed(metrics, claim.method, claim.metric, model, dataset, k)
    threshold = claim.threshold
    if claim.kind == "threshold":
        d, desc = mine, f"{claim.op} {threshold:g}"
    elif claim.kind == "vs_method":
        a, b = _paired(mine, per_seed(metrics, claim.reference, claim.metric, model, dataset, k))
        d = {"diff": a - b, "drop": b - a, "abs_diff": (a - b).abs()}[claim.transform]
        word = TRANSFORMS[claim.transform].format(m=claim.method, r=claim.reference)
        desc = f"{word} {claim.op} {threshold:g}"
    else:  # vs_best: paired difference to the baseline with the best mean
        refs = {r: per_seed(metrics, r, claim.metric, model, dataset, k) for r in claim.references}
        refs = {r: v for r, v in refs.items() if len(v)}
        if not refs:
            return {**out, "target": "no baseline in this run"}
        pick = min if claim.op in ("<", "<=") else max
        best = pick(refs, key=lambda r: refs[r].mean())
        a, b = _paired(mine, refs[best])
        d, threshold = a - b, 0.0
        desc = f"{claim.method} - best baseline ({best}: {refs[best].mean():.3g}) {claim.op} 0"
    est, lo, hi = t_interval(d.to_numpy())
    n_scen = select(metrics, claim.method, claim.metric, model, dataset, k).scenario.nunique()
    out.update(estimate=est, ci_low=lo, ci_high=hi, seeds=int(d.notna().sum()), scenarios=int(n_scen),
               target=desc)
    if math.isnan(est):
        return {**out, "verdict": NOT_COMPARABLE, "target": desc + " (missing in this run)"}
    if out["seeds"] < 2:
        return {**out, "verdict": INCONCLUSIVE, "target": desc + " (one seed: no interval)"}
    return {**out, "verdict": verdict(lo, hi, claim.op, threshold)}
