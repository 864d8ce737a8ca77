"""Metric specs (issue 23, part 2): every metric declares its label and what it needs, and the harness and the
reader ask the spec, not the name. The worked example at the bottom adds a metric in this file only."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pandas as pd
import pytest
import yaml

import unlearnlib.config as config_mod
from unlearnlib.metrics import (
    METRICS,
    NEEDS,
    MetricSpec,
    metric_label,
    metric_spec,
    metrics_needing,
    model_metrics,
    register_metric,
)
from unlearnlib.metrics.spec import BUDGET_METRICS, HARNESS_ROWS, has_gap_to_retrain


def test_every_registered_metric_has_a_spec_with_a_label():
    assert len(METRICS) >= 16
    for name in METRICS:
        spec = METRICS.get(name)
        assert isinstance(spec, MetricSpec) and spec.name == name, name
        assert spec.label, name
        assert spec.needs <= set(NEEDS), name
        assert spec.summary, f"{name}: no docstring"
        assert spec.fn.__name__ != "<lambda>", f"{name}: a lambda has no name in a traceback"
    assert not set(HARNESS_ROWS) & set(METRICS)  # the harness's own rows cannot be asked for in a YAML


def test_what_the_harness_reads_from_the_specs():
    assert metrics_needing("retrain") == {"weight_distance_retrain"}
    assert metrics_needing("aug_logits") == {"mia_svc_augmented"}
    assert metrics_needing("trigger_logits") == {"asr"}
    assert model_metrics() == {"weight_distance_original", "weight_distance_retrain", "relearn_epochs",
                               "probe_forget_acc", "zrf"}
    # computed for the original: every metric but the distances to itself, relearning and ZRF
    assert {n for n in METRICS if not metric_spec(n).on_original} == {
        "weight_distance_original", "weight_distance_retrain", "relearn_epochs", "zrf"}
    assert {n for n in [*METRICS, *HARNESS_ROWS] if not has_gap_to_retrain(n)} == {
        "unlearn_time_s", "speedup_vs_retrain", "weight_distance_original", "weight_distance_retrain",
        *BUDGET_METRICS}  # a call's budget (issue 20) is not a forgetting gap
    assert set(BUDGET_METRICS) == {"budget_steps", "budget_other_steps", "budget_forget_passes",
                                   "budget_retain_passes", "budget_changed_pct", "budget_buffers_changed_pct",
                                   "budget_paper_steps"}
    assert metric_label("unlearn_time_s") == "time (s)"
    assert metric_label("forget_prediction[3]") == "forget_prediction[3]"  # one value of several: the name


def test_a_spec_refuses_an_unknown_need():
    with pytest.raises(ValueError, match="unknown needs \\['logits'\\]"):
        register_metric("x", label="x", needs={"logits"})


# ----------------------------------------------------------------------------------------------
# the worked example: a metric that needs the models and the retrained model, defined here and nowhere else.
# Its name does not say "retrain": the harness finds the dependency in its spec, not in its name.


def agreement(ev, split, cfg, ctx) -> float:
    """Share (%) of the forget samples on which the model predicts what the retrained model predicts."""
    from unlearnlib.train import predict_logits

    if ctx is None or ctx.retrain is None:
        return math.nan
    loader = ctx.forget.with_options(shuffle=False, augment=False)
    theirs = predict_logits(ctx.retrain, loader)[0].argmax(1)
    mine = ev.train(np.asarray(loader.indices))[0].argmax(1)
    return 100.0 * float((mine == theirs).float().mean())


@pytest.fixture
def agreement_metric(monkeypatch):
    monkeypatch.setattr(METRICS, "_items", dict(METRICS._items))  # registered for this test only
    register_metric("agrees_with_reference", label="agreement with retrain on forget samples (%)",
                    needs={"models", "retrain"}, on_original=False)(agreement)
    return "agrees_with_reference"


def test_a_metric_defined_in_one_place_is_computed_by_a_smoke_run(agreement_metric, fmnist_system_dir, tmp_path,
                                                                   monkeypatch):
    from unlearnlib.harness import build_plan, run_paper

    raw = yaml.safe_load((config_mod.PAPERS_DIR / "unsir.yaml").read_text())
    smoke = raw["profiles"]["smoke"]
    smoke["metrics"] = {**smoke.get("metrics", {}), "metrics": ["test_acc", agreement_metric]}
    smoke["more_datasets"] = {}
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "unsir.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(config_mod, "PAPERS_DIR", tmp_path / "papers")
    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))

    plan = build_plan("unsir", "smoke", device="cpu", methods=["retrain", "finetune"], threads=1)
    retrains = {c.key for c in plan.cells if c.method == "retrain"}
    finetunes = [c for c in plan.cells if c.method == "finetune"]
    assert finetunes and all(set(c.deps) & retrains for c in finetunes)  # the spec's "retrain" made the dependency

    with contextlib.redirect_stdout(io.StringIO()):
        run = run_paper("unsir", "smoke", device="cpu", methods=["retrain", "finetune"], progress=False, threads=1)
    m = pd.read_csv(run.path / "metrics.csv")
    rows = m[m.metric == agreement_metric]
    assert set(rows.method) == {"retrain", "finetune"}  # not the original's evaluation: on_original=False
    ft = rows[rows.method == "finetune"].value
    assert len(ft) == len(finetunes) and ft.between(0, 100).all()
    assert rows[rows.method == "retrain"].value.isna().all()  # the reference is not compared with itself
    assert metric_label(agreement_metric) == "agreement with retrain on forget samples (%)"
