"""run_paper end to end on the smoke profile (real Fashion-MNIST; skipped without it), the checkpoint
cache, atomic results, and claim verdicts (on the run, and on hand-built numbers)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import env_vars

from unlearnlib.claims import NOT_COMPARABLE, PIPELINE_ONLY
from unlearnlib.config import load_paper
from unlearnlib.harness import METRIC_COLUMNS, run_paper
from unlearnlib.methods import METHODS
from unlearnlib.results import Run, claims_frame

PAPER = "deep_unlearning"
FILES = ("config.resolved.yaml", "env.json", "splits.npz", "metrics.csv", "timings.csv", "traces.csv", "cells.csv")


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
    with env_vars(**env):
        first, log1 = _run_quietly()
        ckpts = Path(env["UNLEARNLIB_CACHE"]) / "checkpoints"
        mtimes = {p.name: p.stat().st_mtime_ns for p in ckpts.iterdir()}
    with env_vars(**{**env, "UNLEARNLIB_RESULTS": second_results}):
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


def test_cells_csv_says_where_the_time_went(smoke_runs):
    first, second = smoke_runs["first"], smoke_runs["second"]
    c = pd.read_csv(first.path / "cells.csv")
    t = first.timings
    assert set(c.kind) == {"original", "evaluate", "method"} and not c.reused.any() and c.cell.is_unique
    assert (c.wall_s > 0).all() and c[c.kind != "method"].call_s.isna().all()
    meth = c[c.kind == "method"]
    assert (meth.call_s > 0).all() and (meth.call_s < meth.wall_s).all()  # the evaluation comes after the calls
    assert set(meth[meth.trains_from_scratch].method) == {"retrain"}
    # a call's total covers every timed repeat (the median times the repeats, at least)
    per = t[t.method != "original"].set_index(["model", "scenario", "method", "seed"])
    for r in meth.itertuples():
        tr = per.loc[(r.model, r.scenario, r.method, r.seed)]
        assert r.call_s >= tr.seconds_min * tr.repeats
    orig = c[c.kind == "original"].set_index("model").wall_s
    assert all(orig[m] >= s for m, s in t[t.method == "original"].set_index("model").seconds.items())
    c2 = pd.read_csv(second.path / "cells.csv")
    assert c2.reused.all()  # the second run computed nothing: it carries the first run's times
    both = c2.merge(c, on="cell", suffixes=("", "_first"))
    assert len(both) == len(c2) and (both.wall_s == both.wall_s_first).all()


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
    m = run.metrics
    sel = m[(m.method == "original") & (m.metric == "test_forget_acc") & (m.model == "resnet18")]
    expected = sel.groupby("seed").value.mean().to_dict()
    assert run.per_seed("original", "test_forget_acc", "resnet18").to_dict() == expected


def test_smoke_claims_are_a_pipeline_check_only(smoke_runs):
    run = smoke_runs["first"]
    c = claims_frame(run)
    cfg = load_paper(PAPER, "smoke")
    assert len(c) == len(cfg.claims) * len(cfg.settings.models)
    assert PIPELINE_ONLY in set(c.verdict) and set(c.verdict) <= {PIPELINE_ONLY, NOT_COMPARABLE}  # no verdicts
    decided = c[c.verdict == PIPELINE_ONLY]
    assert decided.estimate.notna().all()  # the pipeline computed the numbers all the same
    assert set(c.id) == {cl.id for cl in cfg.claims}


def test_failed_run_leaves_no_partial_results(smoke_runs, monkeypatch, tmp_path):
    """A method raising mid-run: no new results dir, no scratch dir, an existing complete run untouched."""
    spec = METHODS.get("deep_unlearning")

    def boom(*a, **kw):
        raise RuntimeError("method failed on purpose")

    monkeypatch.setitem(METHODS._items, "deep_unlearning", dataclasses.replace(spec, fn=boom))
    env = dict(smoke_runs["env"])
    # (1) an empty results root stays without results
    empty = tmp_path / "results_empty"
    with env_vars(**{**env, "UNLEARNLIB_RESULTS": empty}):
        with pytest.raises(RuntimeError, match="on purpose"):
            _run_quietly(methods=["retrain", "deep_unlearning"])
    leftovers = sorted(str(p.relative_to(empty)) for p in empty.rglob("*")) if empty.exists() else []
    assert leftovers in ([], [PAPER]), leftovers  # at most the (empty) paper folder
    assert not (empty / PAPER / "smoke").exists()
    # (2) a previous complete run in the same root is left exactly as it was
    prev = tmp_path / "results_prev"
    shutil.copytree(Path(env["UNLEARNLIB_RESULTS"]), prev)
    before = {p.relative_to(prev): p.read_bytes() for p in prev.rglob("*") if p.is_file()}
    with env_vars(**{**env, "UNLEARNLIB_RESULTS": prev}):
        with pytest.raises(RuntimeError, match="on purpose"):
            _run_quietly(methods=["retrain", "deep_unlearning"])
    after = {p.relative_to(prev): p.read_bytes() for p in prev.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (prev / PAPER).iterdir()) == ["smoke"]
