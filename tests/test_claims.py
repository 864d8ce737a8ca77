"""Verdicts with intervals on hand-built numbers: t-intervals over seeds, paired comparisons, inconclusive when the
interval contains the threshold, medians for times, and the results table's gaps to retrain and noise floor."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unlearnlib.claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    NOT_COMPARABLE,
    PIPELINE_ONLY,
    evaluate_claim,
    per_seed,
    t_interval,
    verdict,
)
from unlearnlib.config import Claim, load_paper
from unlearnlib.harness import METRIC_COLUMNS
from unlearnlib.results import Run, claims_frame, gap_to_retrain, results_frame, results_table, retrain_floor

PAPER = "deep_unlearning"
SEEDS = (1, 2, 3)
SCENARIOS = ("class0", "class7")


def frame(values: dict, model: str = "resnet18", dataset: str = "fashion_mnist") -> pd.DataFrame:
    """values: (method, metric) -> per seed, per scenario."""
    rows = []
    for (method, metric), per in values.items():
        for seed, vals in zip(SEEDS, per, strict=True):
            for scen, v in zip(SCENARIOS, vals, strict=True):
                rows.append(dict(paper=PAPER, profile="cpu", dataset=dataset, model=model, scenario=scen,
                                 method=method, seed=seed, metric=metric, value=v))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def claim(**kw) -> Claim:
    base = dict(id="c", text="t", source="s", kind="threshold", method="deep_unlearning", metric="test_forget_acc",
                op="<", threshold=1.0)
    return Claim(**{**base, **kw})


def test_t_interval_known_answer():
    mean, lo, hi = t_interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd 1
    assert mean == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert half == pytest.approx(2.4841, abs=1e-4)
    m1, lo1, hi1 = t_interval([5.0])
    assert m1 == 5.0 and math.isnan(lo1) and math.isnan(hi1)
    assert math.isnan(t_interval([])[0])


@pytest.mark.parametrize("lo,hi,op,t,expect", [
    (0.1, 0.5, "<", 1.0, HOLDS), (1.5, 2.0, "<", 1.0, FAILS), (0.5, 1.5, "<", 1.0, INCONCLUSIVE),
    (1.0, 2.0, "<", 1.0, FAILS), (0.0, 1.0, "<=", 1.0, HOLDS), (0.0, 1.0, "<", 1.0, INCONCLUSIVE),
    (2.0, 3.0, ">", 1.0, HOLDS), (0.0, 0.5, ">", 1.0, FAILS), (0.5, 1.5, ">=", 1.0, INCONCLUSIVE),
    (math.nan, math.nan, "<", 1.0, INCONCLUSIVE),
])
def test_verdict_from_an_interval(lo, hi, op, t, expect):
    assert verdict(lo, hi, op, t) == expect


def test_threshold_claim_holds_fails_or_is_inconclusive_by_its_interval():
    m = frame({("deep_unlearning", "test_forget_acc"): [[0.1, 0.3], [0.2, 0.4], [0.3, 0.5]]})
    r = evaluate_claim(m, "cpu", claim(threshold=1.0), "resnet18")
    assert r["estimate"] == pytest.approx(0.3) and r["seeds"] == 3 and r["scenarios"] == 2
    assert r["ci_high"] < 1.0 and r["verdict"] == HOLDS
    # a noisy estimate whose interval contains the threshold: inconclusive, not "fails" or "holds"
    m = frame({("deep_unlearning", "test_forget_acc"): [[0.0, 0.0], [0.5, 0.5], [2.5, 2.5]]})
    r = evaluate_claim(m, "cpu", claim(threshold=1.0), "resnet18")
    assert r["estimate"] == pytest.approx(1.0) and r["ci_low"] < 1.0 < r["ci_high"]
    assert r["verdict"] == INCONCLUSIVE
    m = frame({("deep_unlearning", "test_forget_acc"): [[5.0, 6.0], [5.5, 6.5], [6.0, 7.0]]})
    assert evaluate_claim(m, "cpu", claim(threshold=1.0), "resnet18")["verdict"] == FAILS


def test_one_seed_gives_no_interval_and_no_verdict():
    m = frame({("deep_unlearning", "test_forget_acc"): [[0.1, 0.3], [0.2, 0.4], [0.3, 0.5]]})
    r = evaluate_claim(m[m.seed == 1], "cpu", claim(), "resnet18")
    assert r["verdict"] == INCONCLUSIVE and "one seed" in r["target"] and r["seeds"] == 1


def test_vs_method_is_paired_by_seed():
    # the method is always 1 point below the original, though both vary a lot across seeds
    m = frame({("original", "test_retain_acc"): [[90, 92], [80, 82], [70, 72]],
               ("deep_unlearning", "test_retain_acc"): [[89, 91], [79, 81], [69, 71]]})
    c = claim(kind="vs_method", reference="original", metric="test_retain_acc", transform="drop", op="<=",
              threshold=2.0)
    r = evaluate_claim(m, "cpu", c, "resnet18")
    assert r["estimate"] == pytest.approx(1.0) and r["ci_low"] == pytest.approx(1.0) and r["verdict"] == HOLDS
    r = evaluate_claim(m, "cpu", dataclasses.replace(c, transform="abs_diff", op=">", threshold=0.5), "resnet18")
    assert r["verdict"] == HOLDS and "|deep_unlearning - original|" in r["target"]


def test_vs_best_compares_with_the_best_baseline_per_seed():
    m = frame({("deep_unlearning", "unlearn_time_s"): [[2, 4], [3, 3], [2, 2]],
               ("neggrad", "unlearn_time_s"): [[5, 5], [6, 6], [5, 7]],
               ("finetune", "unlearn_time_s"): [[10, 12], [11, 11], [9, 9]]})
    c = claim(kind="vs_best", metric="unlearn_time_s", references=["finetune", "neggrad", "scrub"], threshold=None)
    r = evaluate_claim(m, "cpu", c, "resnet18")
    assert "neggrad" in r["target"] and r["verdict"] == HOLDS
    assert r["estimate"] == pytest.approx(np.mean([3 - 5, 3 - 6, 2 - 6]))  # medians over the two scenarios


def test_timing_claims_pool_scenarios_by_the_median():
    # one slow call (171 s against 7 s, another job was running) must not decide the seed's time
    per = [[7, 7, 171], [7, 8, 7], [6, 7, 7]]
    rows = [dict(paper=PAPER, profile="cpu", dataset="d", model="m", scenario=f"class{i}", method="x", seed=s,
                 metric="unlearn_time_s", value=v) for s, vals in zip(SEEDS, per, strict=True)
            for i, v in enumerate(vals)]
    assert per_seed(pd.DataFrame(rows), "x", "unlearn_time_s").tolist() == [7, 7, 7]


def test_profile_gates():
    m = frame({("deep_unlearning", "test_forget_acc"): [[0.1, 0.3], [0.2, 0.4], [0.3, 0.5]]})
    assert evaluate_claim(m, "smoke", claim(), "resnet18")["verdict"] == PIPELINE_ONLY
    r = evaluate_claim(m, "cpu", claim(profiles=["paper"]), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "paper" in r["target"]
    r = evaluate_claim(m, "cpu", claim(metric="mia_svc"), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "missing" in r["target"]
    r = evaluate_claim(m, "cpu", claim(kind="vs_best", references=["scrub"]), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "no baseline" in r["target"]
    # a precondition on a number the run lacks, or one that is not met
    r = evaluate_claim(m, "cpu", claim(requires_metric="asr", requires_threshold=50.0), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "precondition not met" in r["target"]


@pytest.fixture
def hand_run():
    cfg = load_paper(PAPER, "cpu")
    m = frame({("original", "test_forget_acc"): [[90, 92], [91, 93], [89, 91]],
               ("retrain", "test_forget_acc"): [[0, 0], [0, 1], [1, 0]],
               ("deep_unlearning", "test_forget_acc"): [[2, 4], [3, 3], [4, 2]],
               ("original", "test_retain_acc"): [[80, 80], [80, 80], [80, 80]],
               ("retrain", "test_retain_acc"): [[81, 79], [80, 80], [79, 81]],
               ("deep_unlearning", "test_retain_acc"): [[70, 72], [71, 71], [72, 70]]})
    return Run(Path("nowhere"), cfg, m, pd.DataFrame(), {})


def test_gap_to_retrain_and_the_retrain_noise_floor(hand_run):
    m = hand_run.metrics
    gap = gap_to_retrain(m, "deep_unlearning", "test_forget_acc", "resnet18", "fashion_mnist", "class")
    assert gap.to_dict() == {1: 3.0, 2: 2.5, 3: 2.5}  # (|2-0| + |4-0|)/2, (|3-0| + |3-1|)/2, (|4-1| + |2-0|)/2
    floor = retrain_floor(m, "test_forget_acc", "resnet18", "fashion_mnist", "class")
    assert floor.to_dict() == {"1-2": 0.5, "1-3": 0.5, "2-3": 1.0}


def test_results_frame_shows_intervals_gaps_and_the_floor(hand_run):
    df = results_frame(hand_run, metrics=["test_forget_acc", "test_retain_acc"])
    vgg = df[(df.model == "vgg11_bn") & (df.method == "deep_unlearning")]
    assert vgg["ours: ACC_f test (%)"].tolist() == ["–"]  # no numbers for that model here
    df = df[df.model == "resnet18"].set_index(["scenarios", "method"])
    f = "ACC_f test (%)"
    assert df.loc[("class (2)", "deep_unlearning"), f"ours: {f}"] == "3.00 ± 0.00"
    g = t_interval([3.0, 2.5, 2.5])
    assert df.loc[("class (2)", "deep_unlearning"), f"|Δ retrain|: {f}"] == f"{g[0]:.2f} ± {g[0] - g[1]:.2f}"
    assert df.loc[("class (2)", "retrain vs retrain (floor)"), f"|Δ retrain|: {f}"] == f"{np.mean([0.5, 0.5, 1]):.2f}"
    assert df.loc[("class (2)", "retrain"), f"|Δ retrain|: {f}"] == "0"


def test_results_table_stacks_each_gap_under_its_value(hand_run):
    from unlearnlib.results.tables import _stacked

    df = _stacked(results_frame(hand_run, metrics=["test_forget_acc"]))
    f = "ACC_f test (%)"
    assert f in df.columns and not any(c.startswith(("ours: ", "|Δ retrain|: ")) for c in df.columns)
    df = df[df.model == "resnet18"].set_index(["scenarios", "method"])
    g = t_interval([3.0, 2.5, 2.5])
    assert df.loc[("class (2)", "deep_unlearning"), f] == (
        f'3.00 ± 0.00<br><span class="ul-gap">Δ {g[0]:.2f} ± {g[0] - g[1]:.2f}</span>')
    assert df.loc[("class (2)", "retrain vs retrain (floor)"), f] == '<span class="ul-gap">Δ 0.67</span>'
    assert df.loc[("class (2)", "original"), f].startswith("91.00 ± ")


def test_results_frame_never_pools_scenario_kinds(hand_run):
    m = hand_run.metrics.drop(columns=["kind", "reference", "run_on"])  # hand-made rows: the run derives them
    rnd = m[m.scenario == "class7"].assign(scenario="random10pct", value=50.0)
    rnd["method"] = rnd.method.replace({"deep_unlearning": "neggrad"})  # deep_unlearning forgets classes only
    both = pd.concat([m, rnd, m[m.method == "deep_unlearning"].assign(method="neggrad")], ignore_index=True)
    run = dataclasses.replace(hand_run, metrics=both, registered=None)
    df = results_frame(run, metrics=["test_forget_acc"])
    assert list(dict.fromkeys(df.scenarios)) == ["class (2)", "random (1)"]
    row = df[(df.scenarios == "random (1)") & (df.method == "neggrad") & (df.model == "resnet18")].iloc[0]
    assert row["ours: ACC_f test (%)"] == "50.00 ± 0.00"  # not mixed with the class scenarios' 3.00


def test_a_method_left_out_of_a_scenario_kind_has_no_row_there_and_the_caption_says_so(hand_run):
    m = hand_run.metrics.drop(columns=["kind", "reference", "run_on"])  # hand-made rows: the run derives them
    rnd = m[m.scenario == "class7"].assign(scenario="random10pct")
    rnd["method"] = rnd.method.replace({"deep_unlearning": "neggrad"})
    settings = dataclasses.replace(hand_run.config.settings, method_scenarios={"neggrad": ["random"]})
    run = dataclasses.replace(hand_run, metrics=pd.concat([m, rnd], ignore_index=True), registered=None,
                              config=dataclasses.replace(hand_run.config, settings=settings))
    df = results_frame(run, metrics=["test_forget_acc"])
    assert set(df[df.method == "neggrad"].scenarios) == {"random (1)"}  # left out of class: method_scenarios
    assert set(df[df.method == "deep_unlearning"].scenarios) == {"class (2)"}  # it registered class forgetting only
    assert set(df[df.method == "retrain"].scenarios) == {"class (2)", "random (1)"}
    caption = results_table(run).caption
    assert "neggrad runs on random scenarios only (`method_scenarios`)" in caption
    assert "deep_unlearning is defined for class forgetting only (as it registered): not run on random" in caption


def test_claims_frame_lists_every_claim_model_and_dataset(hand_run):
    c = claims_frame(hand_run)
    assert len(c) == len(hand_run.config.claims) * len(hand_run.config.settings.models)
    row = c[(c.id == "forget_below_1pct") & (c.model == "resnet18")].iloc[0]
    assert row.estimate == pytest.approx(3.0) and row.verdict == FAILS and row.seeds == 3


def test_trace_figure_has_one_panel_per_dataset(hand_run):
    import matplotlib

    matplotlib.use("Agg")
    from unlearnlib.results import plot_traces

    rows = [{"dataset": ds, "model": "resnet18", "scenario": "class7", "method": "versatile", "seed": s,
             "name": "stop_statistic", "step": k, "value": v + k} for ds, v in (("fashion_mnist", 0.0), ("digits", 9.0))
            for s in (1, 2) for k in range(3)]
    run = dataclasses.replace(hand_run, traces=pd.DataFrame(rows))
    fig = plot_traces(run, "versatile", "stop")
    assert [a.get_title() for a in fig.axes] == ["stop_statistic · digits", "stop_statistic · fashion_mnist"]
    ys = [sorted({round(y, 6) for line in a.get_lines() for y in line.get_ydata()}) for a in fig.axes]
    assert ys[0][:3] == [9.0, 10.0, 11.0] and ys[1][:3] == [0.0, 1.0, 2.0]  # never averaged across datasets
