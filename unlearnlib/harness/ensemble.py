"""Per-example forgetting scores of a run's ensemble, computed from the logits its cells stored.

The ensemble (``settings.ensemble``) has, on one forget scenario: N originals each unlearned once by every method
(*marginal*), the first original unlearned N times with other method seeds (*conditional*), N retrains (the
oracle) and N more retrains of other seeds (the *floor*: what two samples of the same distribution score at this
N). From the stored logits: the logit-scaled confidence of every forget image, a retain sample and the test pool
under every model, then the NeurIPS-2023 forgetting quality F (and its final score), U-LiRA and KLOM
(:mod:`unlearnlib.metrics.forgetting`), each beside the retrain-vs-retrain value of the same N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..methods import method_spec
from ..metrics import forgetting as fq
from .cells import evaluation_from
from .plan import ENSEMBLE, Cell, RunPlan
from .store import Store

RETAIN_SAMPLE = 500  # retain images scored (seeded choice); the test pool is the validation group

ENSEMBLE_COLUMNS = ["method", "variant", "metric", "value", "n_models", "n_examples"]


def _groups(plan: RunPlan) -> dict[tuple[str, str], list[Cell]]:
    """(method, variant) -> cells; variant: marginal | conditional for methods, oracle | floor for retrain."""
    out: dict[tuple[str, str], list[Cell]] = {}
    for c in plan.cells:
        if c.part != ENSEMBLE or c.kind != "method":
            continue
        retrain = method_spec(c.method).trains_from_scratch
        variant = ("floor" if c.method_seed is not None else "oracle") if retrain else (
            "conditional" if c.method_seed is not None else "marginal")
        out.setdefault((c.method, variant), []).append(c)
    return out


def _phi(store: Store, cells: list[Cell], idx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per group of examples (forget, retain, test): (N models, n examples) logit-scaled confidences."""
    per: dict[str, list[np.ndarray]] = {g: [] for g in idx}
    for c in cells:
        ev = evaluation_from(store.load_logits(c.key))
        for g, rows in idx.items():
            logits, labels = ev.test(rows) if g == "test" else ev.train(rows)
            per[g].append(fq.logit_confidence(logits.numpy(), labels.numpy()))
    return {g: np.stack(v) for g, v in per.items()}


def _acc(store: Store, cells: list[Cell], metric: str) -> np.ndarray:
    out = []
    for c in cells:
        rec = store.load_record(c.key) or {}
        out += [r["value"] for r in rec.get("rows", []) if r["metric"] == metric]
    return np.asarray(out, dtype=float)


def ensemble_scores(plan: RunPlan, store: Store) -> pd.DataFrame:
    """F (marginal, conditional, floor) and its final score, U-LiRA and KLOM per method of the ensemble."""
    e = plan.cfg.settings.ensemble
    if not e.n or ENSEMBLE not in plan.parts:
        return pd.DataFrame(columns=ENSEMBLE_COLUMNS)
    part = plan.parts[ENSEMBLE]
    split = part.splits[e.scenario]
    rng = np.random.default_rng(e.seed)
    retain = np.sort(rng.permutation(split.retain_train)[:RETAIN_SAMPLE])
    test = part.test_pool if split.kind != "class" else np.sort(np.concatenate([split.forget_test,
                                                                                split.retain_test]))
    idx = {"forget": split.forget_train, "retain": retain, "test": test}
    groups = _groups(plan)
    oracle_key = next(k for k in groups if k[1] == "oracle")
    oracle = _phi(store, groups[oracle_key], idx)
    floor = _phi(store, groups[(oracle_key[0], "floor")], idx)
    ra_r, ta_r = _acc(store, groups[oracle_key], "retain_acc"), _acc(store, groups[oracle_key], "test_acc")
    rows = []

    def add(method, variant, metric, value, n):
        rows.append({"method": method, "variant": variant, "metric": metric, "value": float(value), "n_models": n,
                     "n_examples": len(idx["forget"]) if "klom" not in metric else None})

    n = e.n
    add("retrain vs retrain", "floor", "F", fq.forgetting_quality_floor(oracle["forget"], floor["forget"]), n)
    for k, v in fq.ulira(floor["forget"], oracle["forget"]).items():
        add("retrain vs retrain", "floor", f"ulira_{k}", v, n)
    for g in idx:
        for stat, v in fq.summarize(fq.klom_floor(oracle[g], floor[g])).items():
            add("retrain vs retrain", "floor", f"klom_{g}_{stat}", v, n)
    for (method, variant), cells in groups.items():
        if variant in ("oracle", "floor"):
            continue
        phi = _phi(store, cells, idx)
        f = fq.forget_score(phi["forget"], oracle["forget"])
        add(method, variant, "F", f, len(cells))
        ra_u, ta_u = _acc(store, cells, "retain_acc"), _acc(store, cells, "test_acc")
        add(method, variant, "score", fq.neurips_score(f, ra_u, ra_r, ta_u, ta_r), len(cells))
        if variant != "marginal":
            continue
        for k, v in fq.ulira(phi["forget"], oracle["forget"]).items():
            add(method, variant, f"ulira_{k}", v, len(cells))
        for g in idx:
            for stat, v in fq.summarize(fq.klom(phi[g], oracle[g])).items():
                add(method, variant, f"klom_{g}_{stat}", v, len(cells))
    return pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS)
