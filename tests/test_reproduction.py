"""The reproduction verdict (issue 21): identical / within noise / differs, on small hand-made runs, with the
claims and metric groups that differ listed and the environments' differences named."""

from __future__ import annotations

import pandas as pd
import pytest

from unlearnlib.claims import Claim
from unlearnlib.paper import PaperConfig
from unlearnlib.results import Run
from unlearnlib.results import reproduction as rp
from unlearnlib.results.reference import yaml_config
from unlearnlib.schema import from_dict

PAPER = "lightweight_unlearning"
ENV = {"created": "2026-12-05T00:00:00+00:00", "profile": "cpu", "seeds": [1, 2, 3], "device": "cpu",
       "device_name": "x86_64", "cpu_model": "CPU A", "python": "3.11.7", "torch": "2.14.1", "git_commit": "abc",
       "git_dirty": False, "cpu_threads": [2]}
CLAIM = Claim(id="forgets", text="forget accuracy at most 10", source="test", kind="threshold", method="m",
              metric="forget_acc", op="<=", threshold=10.0)
TIME_CLAIM = Claim(id="fast", text="at least 5x faster", source="test", kind="threshold", method="m",
                   metric="speedup_vs_retrain", op=">=", threshold=5.0)


def config(claims=(CLAIM, TIME_CLAIM)) -> PaperConfig:
    cfg = from_dict(PaperConfig, yaml_config(PAPER, "cpu"), PAPER)
    cfg.claims = list(claims)
    return cfg


def make_run(tmp_path, name: str, forget=(2.0, 4.0, 6.0), retain=(90.0, 91.0, 92.0), speedup=(20.0, 21.0, 22.0),
             claims=(CLAIM, TIME_CLAIM), **env) -> Run:
    cfg = config(claims)
    model, dataset = next(iter(cfg.settings.models)), cfg.settings.dataset
    rows = []
    for seed, f, r, s in zip((1, 2, 3), forget, retain, speedup, strict=True):
        for metric, v in (("forget_acc", f), ("retain_acc", r), ("speedup_vs_retrain", s),
                          ("forget_prediction[3]", f / 2), ("unlearn_time_s", 1.0 / s)):
            rows.append({"paper": PAPER, "profile": "cpu", "dataset": dataset, "model": model, "scenario": "class0",
                         "method": "m", "seed": seed, "metric": metric, "value": v, "kind": "class",
                         "reference": False, "run_on": "class"})
    metrics = pd.DataFrame(rows)
    timings = metrics.iloc[:0][["paper", "profile", "dataset", "model", "scenario", "method", "seed", "kind",
                                "reference", "run_on"]]
    path = tmp_path / name / PAPER / "cpu"
    path.mkdir(parents=True)
    return Run(path, cfg, metrics, timings, {**ENV, **env}, registered={"m": ["class"]})


def test_identical_when_every_non_timing_value_is_equal(tmp_path):
    ref = make_run(tmp_path, "ref")
    yours = make_run(tmp_path, "yours", speedup=(30.0, 3.0, 12.0), cpu_model="CPU B", cpu_threads=[1])
    rep = rp.compare(ref, yours)
    assert rep.verdict == rp.IDENTICAL  # the times moved (the speed-up claim too): still identical
    env = dict(zip(rep.environment[""], zip(rep.environment.reference, rep.environment.yours, strict=True),
                   strict=True))
    assert env == {"torch threads": ("2", "1"), "CPU": ("CPU A", "CPU B")}
    assert set(rep.groups["metric group"]) == {"forget_acc", "retain_acc", "forget_prediction"}
    assert (rep.groups["largest difference"] == 0).all()
    assert (rep.groups["where"] == "– (no difference)").all()  # no row is named as the place of a 0 difference


def test_within_noise_when_values_move_inside_the_intervals(tmp_path):
    ref = make_run(tmp_path, "ref")
    yours = make_run(tmp_path, "yours", forget=(2.5, 4.0, 6.5), speedup=(1.0, 1.0, 1.0))
    rep = rp.compare(ref, yours)
    assert rep.verdict == rp.WITHIN_NOISE  # the time claim fails now, but a time is never judged
    g = rep.groups.set_index("metric group")
    assert g.loc["forget_acc", "largest difference"] == pytest.approx(0.5)
    assert g.loc["forget_prediction", "largest difference"] == pytest.approx(0.25)
    assert g.loc["retain_acc", "largest difference"] == 0
    assert g.loc["retain_acc", "where"] == "– (no difference)"
    assert ", forget_acc, " in g.loc["forget_acc", "where"] and ", seed " in g.loc["forget_acc", "where"]
    assert rep.differing == []


def test_differs_lists_the_claims_and_metric_groups_that_do(tmp_path):
    ref = make_run(tmp_path, "ref")
    yours = make_run(tmp_path, "yours", forget=(30.0, 32.0, 34.0))
    rep = rp.compare(ref, yours)
    assert rep.verdict == rp.DIFFERS
    assert any(d.startswith("forget accuracy at most 10") for d in rep.differing)
    assert "metric group forget_acc" in rep.differing and "metric group forget_prediction" in rep.differing
    assert "metric group retain_acc" not in rep.differing
    html = rp.report_html(rep, ref)
    assert "Verdict: differs" in html and "forget accuracy at most 10" in html


def test_a_run_without_claims_is_judged_on_every_metric(tmp_path):
    ref = make_run(tmp_path, "ref", claims=())
    assert rp.compare(ref, make_run(tmp_path, "a", claims=(), retain=(90.2, 91.0, 92.0))).verdict == rp.WITHIN_NOISE
    rep = rp.compare(ref, make_run(tmp_path, "b", claims=(), retain=(50.0, 51.0, 52.0)))
    assert rep.verdict == rp.DIFFERS and any(d.startswith("m: retain_acc") for d in rep.differing)


def test_a_missing_row_is_not_identical(tmp_path):
    ref = make_run(tmp_path, "ref")
    yours = make_run(tmp_path, "yours")
    yours.metrics = yours.metrics[~((yours.metrics.metric == "retain_acc") & (yours.metrics.seed == 3))]
    assert rp.compare(ref, yours).verdict == rp.WITHIN_NOISE


def test_runs_of_other_profiles_are_not_compared(tmp_path):
    ref = make_run(tmp_path, "ref")
    other = make_run(tmp_path, "o")
    other.config.profile = "smoke"
    with pytest.raises(ValueError, match="one paper and profile"):
        rp.compare(ref, other)


def test_metric_groups():
    assert rp.metric_group("forget_prediction_3") == "forget_prediction"
    assert rp.metric_group("forget_prediction[3]") == "forget_prediction"
    assert rp.metric_group("weight_distance_original[layer4.0.conv1]") == "weight_distance_original"
    assert rp.metric_group("mia_svc") == "mia_svc"
