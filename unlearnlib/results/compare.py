"""Comparisons with the run's reference (the method that trains from scratch), found by the ``reference`` column."""

from __future__ import annotations

import pandas as pd

from ..claims import (
    select,
)
from .run import reference_of


def diff_to_retrain(metrics: pd.DataFrame, method: str, metric: str, model: str, dataset: str,
                    kind: str) -> pd.Series:
    """Per (seed, scenario): method - retrain, each against the same seed's retrain (pairs both have)."""
    a = select(metrics, method, metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    b = select(metrics, reference_of(metrics), metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    both = a.index.intersection(b.index)
    return a.loc[both] - b.loc[both]


def gap_to_retrain(metrics: pd.DataFrame, method: str, metric: str, model: str, dataset: str,
                   kind: str) -> pd.Series:
    """Per seed: the mean over the scenarios of |method - retrain| (the same seed's original and retrain)."""
    return diff_to_retrain(metrics, method, metric, model, dataset, kind).abs().groupby(level="seed").mean()


def retrain_floor(metrics: pd.DataFrame, metric: str, model: str, dataset: str, kind: str) -> pd.Series:
    """Retrain vs retrain: per pair of seeds, the mean over the scenarios of |retrain_s - retrain_s'|."""
    r = select(metrics, reference_of(metrics), metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    seeds = sorted(set(r.index.get_level_values("seed")))
    out = {}
    for i, s in enumerate(seeds):
        for t in seeds[i + 1:]:
            a, b = r.xs(s, level="seed"), r.xs(t, level="seed")
            both = a.index.intersection(b.index)
            out[f"{s}-{t}"] = float((a.loc[both] - b.loc[both]).abs().mean())
    return pd.Series(out, dtype=float)
