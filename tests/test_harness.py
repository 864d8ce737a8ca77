"""run_paper end to end on the smoke profile (real Fashion-MNIST; skipped without it), the checkpoint
cache, atomic results, and claim verdicts (on the run, and on hand-built numbers)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unlearnlib.config import Claim, load_paper
from unlearnlib.harness import METRIC_COLUMNS, run_paper
from unlearnlib.methods import METHODS
from unlearnlib.results import FAILS, HOLDS, NOT_COMPARABLE, Run, claims_frame, evaluate_claim, results_frame

PAPER = "deep_unlearning"
FILES = ("config.resolved.yaml", "env.json", "splits.npz", "metrics.csv", "timings.csv", "traces.csv")


@contextlib.contextmanager
def roots(**env):
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, str(v))
        yield


def scenario_tags(cfg) -> set[str]:
    return {"class" + "+".join(str(c) for c in sorted(sc.classes)) for sc in cfg.settings.split.all_scenarios()}


def _run_quietly(**kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run = run_paper(PAPER, "smoke", device="cpu", progress=False, **kw)
    return run, out.getvalue()


@pytest.fixture(scope="module")
def smoke_runs(fmnist_system_dir, tmp_path_factory, make_roots):
    """The smoke profile run twice with one cache: the first run trains and caches the originals and
    retrain; the second (retrain and deep_unlearning only, into another results root) loads them."""
    base = tmp_path_factory.mktemp("harness")
    env = make_roots(base)
    env["UNLEARNLIB_SYSTEM_DATA"] = str(fmnist_system_dir)
    second_results = base / "results2"
    with roots(**env):
        first, log1 = _run_quietly()
        ckpts = Path(env["UNLEARNLIB_CACHE"]) / "checkpoints"
        mtimes = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}
    with roots(**{**env, "UNLEARNLIB_RESULTS": second_results}):
        second, log2 = _run_quietly(methods=["retrain", "deep_unlearning"])
    return {"env": env, "first": first, "second": second, "log1": log1, "log2": log2, "mtimes": mtimes,
            "ckpts": ckpts, "base": base}


def test_results_dir_contents(smoke_runs):
    run = smoke_runs["first"]
    results = Path(smoke_runs["env"]["UNLEARNLIB_RESULTS"])
    assert run.path == results / PAPER / "smoke"
    assert sorted(p.name for p in (results / PAPER).iterdir()) == ["smoke"]  # no scratch dirs left
    for f in FILES:
        assert (run.path / f).is_file(), f
    cfg = yaml.safe_load((run.path / "config.resolved.yaml").read_text())
    assert cfg["profile"] == "smoke" and cfg["settings"]["dataset"] == "fashion_mnist"
    s = load_paper(PAPER, "smoke").settings
    assert cfg["settings"]["seeds"] == s.seeds
    du = s.methods["deep_unlearning"]
    assert cfg["resolved_methods"]["deep_unlearning"]["n_samples"] == du.get("n_samples", 900)
    assert cfg["resolved_methods"]["retrain"]["epochs"] == s.train.epochs  # retrain inherits the recipe
    env = json.loads((run.path / "env.json").read_text())
    for key in ("torch", "numpy", "python", "device", "seeds", "created", "data"):
        assert key in env, key
    assert env["device"] == "cpu" and env["data"]["dataset"] == "fashion_mnist"
    # the run really used the real data set (60000/10000 images) through the smoke pools
    assert env["data"]["train images"] == 60000 and env["data"]["test pool"] == s.test_subset


def test_metrics_csv_long_form(smoke_runs):
    run = smoke_runs["first"]
    m = pd.read_csv(run.path / "metrics.csv")
    assert list(m.columns) == METRIC_COLUMNS
    cfg = load_paper(PAPER, "smoke")
    assert set(m.paper) == {PAPER} and set(m.profile) == {"smoke"} and set(m.dataset) == {"fashion_mnist"}
    assert set(m.model) == set(cfg.settings.models)
    assert set(m.scenario) == scenario_tags(cfg)
    assert set(m.method) == {"original", *cfg.settings.methods}
    assert set(m.seed) == set(cfg.settings.seeds)
    for metric in cfg.settings.metrics.metrics:  # a dict-valued metric gives metric[key] rows
        assert metric in set(m.metric) or m.metric.str.startswith(metric + "[").any(), metric
    assert {"unlearn_time_s", "speedup_vs_retrain"} <= set(m.metric)
    # one row per (model, scenario, method, metric)
    assert not m.duplicated(["model", "scenario", "method", "seed", "metric"]).any()
    acc = m[m.metric.isin(["test_forget_acc", "test_retain_acc"])].value
    assert acc.between(0, 100).all()
    # speed-up = retrain time / method time, row by row
    t = m[m.metric == "unlearn_time_s"].set_index(["model", "scenario", "method"]).value
    s = m[m.metric == "speedup_vs_retrain"].set_index(["model", "scenario", "method"]).value
    for (model, scen, meth), v in s.items():
        assert v == pytest.approx(t[(model, scen, "retrain")] / t[(model, scen, meth)])


def test_timings_and_splits(smoke_runs):
    run = smoke_runs["first"]
    t = pd.read_csv(run.path / "timings.csv")
    for col in ("model", "scenario", "method", "seconds", "cached", "device", "threads"):
        assert col in t.columns
    assert (t.seconds > 0).all()
    s = load_paper(PAPER, "smoke").settings
    orig = t[t.method == "original"]
    assert len(orig) == len(s.models) and set(orig.scenario) == {"all"}  # one per model, shared by scenarios
    assert not orig.cached.any()  # the first run trained them
    assert not t[t.method == "retrain"].cached.any()
    with np.load(run.path / "splits.npz") as z:
        pool = z["pool/train"]
        assert len(pool) == s.train_subset and len(z["pool/test"]) == s.test_subset
        for sc in s.split.all_scenarios():
            tag = "class" + "+".join(str(c) for c in sorted(sc.classes))
            f, r = z[f"{tag}/forget_train"], z[f"{tag}/retain_train"]
            assert z[f"{tag}/forget_classes"].tolist() == sorted(sc.classes)
            assert len(np.intersect1d(f, r)) == 0
            assert np.array_equal(np.union1d(f, r), pool)
            assert len(f) == len(sc.classes) * s.train_subset // 10  # class-stratified pool, 10 classes


def test_second_run_reuses_every_cell_of_the_first(smoke_runs):
    first, second = smoke_runs["first"], smoke_runs["second"]
    t2 = second.timings
    n = len(first.config.settings.models) * len(first.config.settings.split.all_scenarios())
    assert len(t2[t2.method == "retrain"]) == n and len(t2[t2.method == "deep_unlearning"]) == n
    assert t2.cached.all()  # every time comes from the first run
    log2 = smoke_runs["log2"]
    assert log2.count("reused from the cell store") == len(second.config.settings.models) * (1 + 3 * n // len(
        first.config.settings.models))  # per model: its original; per scenario: evaluation, retrain, the method
    assert "training the original" not in log2 and "0 cells computed" in log2
    # nothing was re-trained: the checkpoints were not rewritten, and the stored times are reused
    assert {p.name: p.stat().st_mtime_ns for p in smoke_runs["ckpts"].iterdir()} == smoke_runs["mtimes"]
    t1 = first.timings
    for meth in ("original", "retrain", "deep_unlearning"):
        a = t1[t1.method == meth].sort_values(["model", "scenario"]).seconds.to_numpy()
        b = t2[t2.method == meth].sort_values(["model", "scenario"]).seconds.to_numpy()
        np.testing.assert_array_equal(a, b)
    # the same rows for the methods both runs have
    keys = ["model", "scenario", "method", "metric"]
    for meth in ("original", "retrain", "deep_unlearning"):
        m1 = first.metrics[first.metrics.method == meth].sort_values(keys).reset_index(drop=True)
        m2 = second.metrics[second.metrics.method == meth].sort_values(keys).reset_index(drop=True)
        assert len(m1) > 0 and m1[keys].equals(m2[keys])
        np.testing.assert_array_equal(m1.value.to_numpy(), m2.value.to_numpy())


def test_run_load_round_trip(smoke_runs):
    run = smoke_runs["first"]
    again = Run.load(run.path)
    assert again.config.profile == "smoke" and again.config.id == PAPER
    pd.testing.assert_frame_equal(again.metrics, run.metrics)
    assert run.mean("original", "test_forget_acc") == pytest.approx(
        run.metrics[(run.metrics.method == "original") & (run.metrics.metric == "test_forget_acc")].value.mean())


def test_claims_frame_verdicts(smoke_runs):
    run = smoke_runs["first"]
    c = claims_frame(run)
    cfg = load_paper(PAPER, "smoke")
    assert len(c) == len(cfg.claims) * len(cfg.settings.models)
    assert set(c.verdict) <= {HOLDS, FAILS, NOT_COMPARABLE}
    assert set(c.id) == {cl.id for cl in cfg.claims}
    # every decided verdict agrees with its own number
    for _, row in c.iterrows():
        if row.verdict != NOT_COMPARABLE:
            assert not math.isnan(row.ours)


def test_failed_run_leaves_no_partial_results(smoke_runs, monkeypatch, tmp_path):
    """A method raising mid-run: no new results dir, no scratch dir, an existing complete run untouched."""
    spec = METHODS.get("deep_unlearning")

    def boom(*a, **kw):
        raise RuntimeError("method failed on purpose")

    monkeypatch.setitem(METHODS._items, "deep_unlearning", dataclasses.replace(spec, fn=boom))
    env = dict(smoke_runs["env"])
    # (1) an empty results root stays without results
    empty = tmp_path / "results_empty"
    with roots(**{**env, "UNLEARNLIB_RESULTS": empty}):
        with pytest.raises(RuntimeError, match="on purpose"):
            _run_quietly(methods=["retrain", "deep_unlearning"])
    leftovers = sorted(str(p.relative_to(empty)) for p in empty.rglob("*")) if empty.exists() else []
    assert leftovers in ([], [PAPER]), leftovers  # at most the (empty) paper folder
    assert not (empty / PAPER / "smoke").exists()
    # (2) a previous complete run in the same root is left exactly as it was
    prev = tmp_path / "results_prev"
    shutil.copytree(Path(env["UNLEARNLIB_RESULTS"]), prev)
    before = {p.relative_to(prev): p.read_bytes() for p in prev.rglob("*") if p.is_file()}
    with roots(**{**env, "UNLEARNLIB_RESULTS": prev}):
        with pytest.raises(RuntimeError, match="on purpose"):
            _run_quietly(methods=["retrain", "deep_unlearning"])
    after = {p.relative_to(prev): p.read_bytes() for p in prev.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (prev / PAPER).iterdir()) == ["smoke"]


# ----------------------------------------------------------------------------------------------
# evaluate_claim arithmetic on hand-built numbers (no run needed)


@pytest.fixture
def hand_run():
    cfg = load_paper(PAPER, "smoke")
    values = {  # (method, metric) -> values over scenarios, for model resnet18
        ("deep_unlearning", "test_forget_acc"): [0.5, 1.5],  # mean 1.0
        ("original", "test_retain_acc"): [90.0, 92.0],  # mean 91.0
        ("deep_unlearning", "test_retain_acc"): [89.0, 88.0],  # mean 88.5
        ("neggrad_plus", "test_retain_acc"): [87.0, 87.0],  # mean 87.0
        ("retrain", "mia_svc"): [100.0, 100.0],
        ("deep_unlearning", "mia_svc"): [95.0, 80.0],  # mean 87.5
        ("deep_unlearning", "unlearn_time_s"): [2.0, 4.0],  # mean 3.0
        ("retrain", "unlearn_time_s"): [100.0, 100.0],
        ("finetune", "unlearn_time_s"): [10.0, 12.0],
        ("neggrad", "unlearn_time_s"): [5.0, 5.0],  # the fastest baseline: 5.0
    }
    rows = []
    for (method, metric), vals in values.items():
        for scen, v in zip(("class0", "class7"), vals, strict=True):
            rows.append(dict(paper=PAPER, profile="smoke", dataset="fashion_mnist", model="resnet18", scenario=scen,
                             method=method, seed=42, metric=metric, value=v))
            # another model with different numbers must not leak into resnet18's verdicts
            rows.append(dict(rows[-1], model="vgg11_bn", value=v + 1000))
    return Run(Path("nowhere"), cfg, pd.DataFrame(rows, columns=METRIC_COLUMNS), pd.DataFrame(), {})


def _claim(**kw) -> Claim:
    base = dict(id="c", text="t", source="s", kind="threshold", method="deep_unlearning", metric="test_forget_acc",
                op="<")
    return Claim(**{**base, **kw})


def test_threshold_claim(hand_run):
    r = evaluate_claim(hand_run, _claim(threshold=1.0), "resnet18")
    assert r["ours"] == pytest.approx(1.0) and r["verdict"] == FAILS  # 1.0 < 1.0 is false
    assert evaluate_claim(hand_run, _claim(threshold=1.0, op="<="), "resnet18")["verdict"] == HOLDS
    assert evaluate_claim(hand_run, _claim(threshold=1.01), "resnet18")["verdict"] == HOLDS
    assert evaluate_claim(hand_run, _claim(threshold=1.01), "vgg11_bn")["verdict"] == FAILS  # 1001


@pytest.mark.parametrize("transform,expected", [("drop", 2.5), ("diff", -2.5), ("abs_diff", 2.5)])
def test_vs_method_transforms(hand_run, transform, expected):
    c = _claim(kind="vs_method", reference="original", metric="test_retain_acc", transform=transform, op="<=",
               threshold=2.0)
    r = evaluate_claim(hand_run, c, "resnet18")
    assert r["ours"] == pytest.approx(expected)
    assert r["verdict"] == (HOLDS if expected <= 2.0 else FAILS)
    c3 = dataclasses.replace(c, threshold=3.0)
    assert evaluate_claim(hand_run, c3, "resnet18")["verdict"] == HOLDS


def test_vs_method_diff_and_abs_diff_against_other_references(hand_run):
    c = _claim(kind="vs_method", reference="neggrad_plus", metric="test_retain_acc", transform="diff", op=">",
               threshold=0.0)
    r = evaluate_claim(hand_run, c, "resnet18")
    assert r["ours"] == pytest.approx(1.5) and r["verdict"] == HOLDS  # 88.5 - 87.0
    c = _claim(kind="vs_method", reference="retrain", metric="mia_svc", transform="abs_diff", op="<=",
               threshold=10.0)
    r = evaluate_claim(hand_run, c, "resnet18")
    assert r["ours"] == pytest.approx(12.5) and r["verdict"] == FAILS  # |87.5 - 100|


def test_vs_best_claim(hand_run):
    c = _claim(kind="vs_best", metric="unlearn_time_s", references=["retrain", "finetune", "neggrad", "neggrad_plus"],
               op="<")
    r = evaluate_claim(hand_run, c, "resnet18")
    assert r["ours"] == pytest.approx(3.0)
    assert "neggrad" in r["target"] and "5" in r["target"]  # the best (fastest) baseline, neggrad_plus absent
    assert r["verdict"] == HOLDS  # 3.0 < 5.0
    slow = hand_run.metrics.copy()
    slow.loc[(slow.method == "deep_unlearning") & (slow.metric == "unlearn_time_s"), "value"] = 6.0
    r = evaluate_claim(dataclasses.replace(hand_run, metrics=slow), c, "resnet18")
    assert r["verdict"] == FAILS  # 6.0 < 5.0 is false, though it beats retrain and finetune
    # with ">" the best baseline is the largest value
    c_max = dataclasses.replace(c, op=">")
    r = evaluate_claim(hand_run, c_max, "resnet18")
    assert "retrain" in r["target"] and r["verdict"] == FAILS  # 3.0 > 100 is false


def test_not_comparable_cases(hand_run):
    # the claim is not checked on this profile
    r = evaluate_claim(hand_run, _claim(threshold=5.0, profiles=["paper"]), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "paper" in r["target"]
    # a metric the run does not have
    r = evaluate_claim(hand_run, _claim(metric="mia_svc_augmented", threshold=5.0), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "missing" in r["target"]
    # a reference method not in the run
    r = evaluate_claim(hand_run, _claim(kind="vs_method", reference="scrub", metric="test_retain_acc",
                                        transform="diff", threshold=0.0), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE
    # vs_best with no baseline present
    r = evaluate_claim(hand_run, _claim(kind="vs_best", metric="test_forget_acc", references=["scrub"]), "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "no baseline" in r["target"]


def test_precondition_makes_a_claim_not_comparable_until_it_is_met(hand_run):
    # original test_retain_acc is 91.0 (resnet18): a floor of 95 is not met, 90 is
    c = _claim(threshold=1.01, requires_metric="test_retain_acc", requires_threshold=95.0)
    r = evaluate_claim(hand_run, c, "resnet18")
    assert r["verdict"] == NOT_COMPARABLE and "precondition not met" in r["target"] and "91" in r["target"]
    c = dataclasses.replace(c, requires_threshold=90.0)
    assert evaluate_claim(hand_run, c, "resnet18")["verdict"] == HOLDS  # the claim itself: 1.0 < 1.01
    # a precondition on a metric the run lacks is not met either
    c = dataclasses.replace(c, requires_metric="asr")
    assert evaluate_claim(hand_run, c, "resnet18")["verdict"] == NOT_COMPARABLE


def test_claims_frame_on_hand_built_run(hand_run):
    c = claims_frame(hand_run).set_index(["id", "model"])
    assert c.loc[("forget_below_1pct", "resnet18"), "verdict"] == FAILS  # 1.0 < 1 is false
    assert c.loc[("retain_drop_small", "resnet18"), "verdict"] == FAILS  # drop 2.5 > 2
    assert c.loc[("retain_drop_small", "resnet18"), "ours"] == pytest.approx(2.5)
    assert c.loc[("faster_than_baselines", "resnet18"), "verdict"] == HOLDS
    assert c.loc[("better_retain_than_neggrad_plus", "resnet18"), "verdict"] == HOLDS
    assert c.loc[("mia_close_to_retrain", "resnet18"), "verdict"] == FAILS
    assert set(c.verdict) <= {HOLDS, FAILS, NOT_COMPARABLE}


def test_results_frame_puts_ours_next_to_the_paper(hand_run):
    df = results_frame(hand_run).set_index(["model", "method"])
    f = "ACC_f test (%)"
    assert df.loc[("resnet18", "deep_unlearning"), f"ours: {f}"] == "1.00 ± 0.71"  # mean/std of 0.5, 1.5
    exp = next(e for e in hand_run.config.expected if e.model == "resnet18")
    paper = exp.rows["deep_unlearning"]["test_forget_acc"]
    assert df.loc[("resnet18", "deep_unlearning"), f"paper: {f}"].startswith(f"{paper[0]:.2f}")
    assert df.loc[("resnet18", "finetune"), f"ours: {f}"] == "–"  # not in this hand-built run
    # pending methods are listed, never with numbers of ours
    for method in hand_run.config.pending:
        assert set(df.loc[("resnet18", method), [c for c in df.columns if c.startswith("ours: ")]]) == {"pending"}
    # a model without the paper's numbers reads n/a in the paper columns; no 'paper' column is added
    assert "paper" not in df.columns
    assert set(df.loc[("vgg11_bn", "deep_unlearning"), [c for c in df.columns if c.startswith("paper: ")]]) == {"n/a"}
    # a paper without any confirmed numbers gets one 'not available' column
    bare = dataclasses.replace(hand_run, config=dataclasses.replace(hand_run.config, expected=[]))
    assert set(results_frame(bare)["paper"]) == {"not available"}
