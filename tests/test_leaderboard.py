"""The benchmark chapter: known answers for the leaderboard's gaps, floors and speed-ups, the generated sentences'
rules, the Pareto front, the methods' declared scenario kinds, and the benchmark config."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from unlearnlib.claims import t_interval
from unlearnlib.config import SCENARIO_KINDS, load_paper, runs_on
from unlearnlib.methods import METHODS
from unlearnlib.results import Run, paper_status
from unlearnlib.results import leaderboard as lb

matplotlib.use("Agg")

SEEDS = [0, 1, 2]


def frame(values: dict[tuple[str, str, str], list[float]], dataset: str = "fashion_mnist") -> pd.DataFrame:
    """(method, scenario, metric) -> one value per seed."""
    return pd.DataFrame([dict(paper="benchmark", profile="cpu", dataset=dataset, model="resnet18", scenario=sc,
                              method=m, seed=s, metric=k, value=float(v))
                         for (m, sc, k), vals in values.items() for s, v in zip(SEEDS, vals, strict=True)])


@pytest.fixture
def run():
    m = frame({
        ("original", "class7", "forget_acc"): [95, 96, 94], ("original", "class7", "test_acc"): [85, 85, 85],
        ("original", "class7", "probe_forget_acc"): [90, 90, 90],
        ("retrain", "class7", "forget_acc"): [0, 1, 0], ("retrain", "class7", "test_acc"): [76, 77, 78],
        ("retrain", "class7", "probe_forget_acc"): [60, 62, 64],
        ("retrain", "class7", "unlearn_time_s"): [10, 12, 11], ("retrain", "class7", "retain_acc"): [90, 91, 92],
        ("lau", "class7", "retain_acc"): [90, 91, 92], ("scrub", "class7", "retain_acc"): [70, 72, 71],
        # at retrain's level, keeps test accuracy, probe near the original's: a head-only edit
        ("lau", "class7", "forget_acc"): [0, 1, 0], ("lau", "class7", "test_acc"): [77, 77, 77],
        ("lau", "class7", "probe_forget_acc"): [89, 88, 90], ("lau", "class7", "unlearn_time_s"): [0.1, 0.2, 0.1],
        # forgets too little, loses utility
        ("scrub", "class7", "forget_acc"): [40, 50, 45], ("scrub", "class7", "test_acc"): [60, 62, 61],
        ("scrub", "class7", "probe_forget_acc"): [70, 70, 70], ("scrub", "class7", "unlearn_time_s"): [5, 5, 5],
        ("unsir", "class7", "forget_acc"): [0, 0, 0], ("unsir", "class7", "test_acc"): [70, 71, 72],
        ("unsir", "class7", "unlearn_time_s"): [2, 2, 2],
        ("original", "random10pct", "forget_acc"): [100, 100, 100],
        ("retrain", "random10pct", "forget_acc"): [85, 86, 87], ("retrain", "random10pct", "test_acc"): [84, 85, 86],
        ("retrain", "random10pct", "unlearn_time_s"): [10, 10, 10],
        # far below retrain's forget accuracy: over-forgets
        ("lau", "random10pct", "forget_acc"): [20, 30, 25], ("lau", "random10pct", "test_acc"): [84, 85, 86],
        ("lau", "random10pct", "unlearn_time_s"): [1, 1, 1],
    })
    # what the harness writes beside each row (issue 23): the kinds each method runs on in the run (unsir: class
    # forgetting only, as it registered; the others every kind, though these rows have some only)
    m["run_on"] = ["class" if x == "unsir" else "class random backdoor" for x in m.method]
    return Run(Path("nowhere"), load_paper("benchmark", "cpu"), m, pd.DataFrame(), {})


def test_signed_gaps_intervals_floor_and_speedup_are_known_answers(run):
    df = lb.leaderboard_frame(run, "class").set_index("method")
    gaps = [77 - 76, 77 - 77, 77 - 78]
    mean, lo, hi = t_interval(gaps)
    assert df.loc["lau", "test_acc_gap"] == pytest.approx(mean) and df.loc["lau", "test_acc_lo"] == pytest.approx(lo)
    assert df.loc["lau", "test_acc_hi"] == pytest.approx(hi)
    assert df.loc["lau", "test_acc_abs"] == pytest.approx(np.mean(np.abs(gaps)))
    # retrain vs retrain: |76-77|, |76-78|, |77-78|
    assert df.loc["lau", "test_acc_floor"] == pytest.approx(np.mean([1, 2, 1]))
    assert df.loc["scrub", "forget_acc_gap"] == pytest.approx(np.mean([40, 49, 45]))
    assert df.loc["lau", "time_s"] == pytest.approx(0.1) and df.loc["lau", "speedup"] == pytest.approx(11 / 0.1)
    assert df.loc["lau", "probe_forget_acc_retrain"] == pytest.approx(62)
    assert df.loc["lau", "probe_original"] == pytest.approx(90)
    assert df.loc["retrain", "forget_acc_gap"] == 0


def test_the_rules_of_the_generated_text(run):
    df = lb.leaderboard_frame(run, "class").set_index("method")
    lau, scrub = lb.classify(df.loc["lau"], "class"), lb.classify(df.loc["scrub"], "class")
    assert lau["at_level"] and lau["head_only"] and lau["utility_kept"] and not lau["under"]
    assert scrub["under"] and scrub["utility_loss"] and not scrub["at_level"] and not scrub["head_only"]
    rnd = lb.leaderboard_frame(run, "random").set_index("method")
    assert lb.classify(rnd.loc["lau"], "random")["over"]
    assert "none; the closest is `lau` (Δ -61.0 [" in lb.scenario_summary(run, "random").data
    text = lb.scenario_summary(run, "class").data
    assert "`lau`" in text.split("forget in the head only")[1] and "`scrub`" in text.split("forget too little")[1]
    assert "`scrub`" in text.split("lose retain samples acc")[1]  # a class's utility: the retain accuracy
    assert "fastest of these is `lau`" in text


def test_a_method_defined_for_classes_only_is_a_row_with_a_note(run):
    df = lb.leaderboard_frame(run, "random").set_index("method")
    assert not df.loc["unsir", "supported"] and "class forgetting only" in df.loc["unsir", "note"]
    shown = lb.leaderboard_display(run, "random").set_index("method")
    assert "class forgetting only" in " ".join(shown.loc["unsir"].astype(str))
    caption = lb.leaderboard_table(run, "random").caption
    assert "unsir is defined for class forgetting only" in caption
    assert "Not run here (defined for other kinds of forgetting): `unsir`" in lb.scenario_summary(run, "random").data


def test_unknown_or_absent_kinds_fail_with_the_valid_ones(run):
    with pytest.raises(ValueError, match="valid: class, random, backdoor"):
        lb.leaderboard_frame(run, "klass")
    with pytest.raises(ValueError, match="no backdoor scenario; its kinds: class, random"):
        lb.leaderboard_frame(run, "backdoor")


def test_pareto_front():
    pts = [("a", 0.0, 5.0), ("b", 1.0, 1.0), ("c", 2.0, 2.0), ("d", 3.0, 0.0), ("e", math.nan, 0.0)]
    assert lb.pareto_front(pts) == ["a", "b", "d"]  # c is dominated by b; e has no position


def test_figures_draw_one_panel_per_dataset(run):
    fig = lb.plot_pareto(run, "class")
    assert len(fig.axes) == 1 and "lau" in [t.get_text() for t in fig.legends[0].get_texts()]
    fig = lb.plot_ranking(run, "class")
    assert len(fig.axes) == 2  # the forget axis and the utility axis (a class: retain accuracy)
    assert "retain samples acc" in fig.axes[1].get_title()


def test_ensemble_scores_join_the_row_of_their_scenario(run):
    run.ensemble = pd.DataFrame([
        {"method": "retrain vs retrain", "variant": "floor", "metric": "F", "value": 0.15, "n_models": 16},
        {"method": "lau", "variant": "marginal", "metric": "F", "value": 0.01, "n_models": 16},
        {"method": "lau", "variant": "marginal", "metric": "ulira_accuracy", "value": 0.99, "n_models": 16},
        {"method": "lau", "variant": "conditional", "metric": "F", "value": 0.0, "n_models": 16}])
    run.config.settings.ensemble.dataset = "fashion_mnist"
    run.config.settings.ensemble.scenario = "class7"
    df = lb.leaderboard_frame(run, "class").set_index("method")
    assert df.loc["lau", "F"] == 0.01 and df.loc["lau", "F_floor"] == 0.15  # marginal, not conditional
    assert df.loc["lau", "ulira_accuracy"] == 0.99
    shown = lb.leaderboard_display(run, "class").set_index("method")
    assert shown.loc["retrain vs retrain (floor)", "F marginal"] == "0.150"
    assert "F" not in lb.leaderboard_frame(run, "random").columns  # the ensemble is on the class scenario only


def test_the_benchmark_runs_every_registered_method_with_its_defaults():
    for profile in ("paper", "cpu", "smoke"):
        cfg = load_paper("benchmark", profile)
        assert set(cfg.settings.methods) == set(METHODS.names())
        assert {sc.kind for sc in cfg.settings.split.all_scenarios()} == set(SCENARIO_KINDS)
        assert not cfg.claims and len(cfg.settings.seeds) >= (1 if profile == "smoke" else 3)
    cpu = load_paper("benchmark", "cpu")
    assert all(not opts for opts in cpu.settings.methods.values())  # defaults: no option anywhere
    assert cpu.datasets == ["fashion_mnist", "digits"] and cpu.settings.ensemble.n >= 16


def test_declared_scenario_kinds():
    for name in METHODS:
        assert set(METHODS.get(name).scenarios) <= set(SCENARIO_KINDS), name
    cfg = load_paper("benchmark", "cpu")
    assert not runs_on(cfg.settings, "unsir", "random") and runs_on(cfg.settings, "unsir", "class")
    assert runs_on(cfg.settings, "lau", "backdoor")


def test_the_front_page_row_of_a_paper_without_claims(run, monkeypatch):
    import unlearnlib.results.page as results_mod

    monkeypatch.setattr(results_mod, "latest_runs", lambda paper: [run])
    row = paper_status(load_paper("benchmark", "paper"))
    assert row["claims"].startswith("no claims: a leaderboard of 4 methods on 2 scenarios × 1 dataset")


def test_the_plan_leaves_unsupported_kinds_out_and_can_skip_the_conditional_runs(fmnist_system_dir, monkeypatch,
                                                                               tmp_path):
    import shutil

    import yaml

    import unlearnlib.config as config_mod
    from unlearnlib.harness.plan import build_plan

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    plan = build_plan("benchmark", "smoke", device="cpu")
    by = {(c.method, c.scenario) for c in plan.cells if c.kind == "method" and c.part != "ensemble"}
    assert ("unsir", "class7") in by and ("lau", "backdoor10pct") in by
    assert not {m for m, sc in by if not sc.startswith("class")} & {"unsir", "unsir_impair", "deep_unlearning"}
    conditional = [c for c in plan.cells if c.part == "ensemble" and c.method == "lau" and c.method_seed is not None]
    assert len(conditional) == 4
    papers = tmp_path / "papers"
    shutil.copytree(config_mod.PAPERS_DIR, papers)
    raw = yaml.safe_load((papers / "benchmark.yaml").read_text())
    raw["profiles"]["smoke"]["ensemble"]["conditional"] = False
    (papers / "benchmark.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setattr(config_mod, "PAPERS_DIR", papers)
    plan = build_plan("benchmark", "smoke", device="cpu")
    ens = [c for c in plan.cells if c.part == "ensemble" and c.kind == "method"]
    assert not [c for c in ens if c.method != "retrain" and c.method_seed is not None]
    assert len([c for c in ens if c.method == "lau"]) == 4  # the marginal runs stay


def test_deviation_texts_are_escaped_so_placeholders_show():
    from unlearnlib.results import deviations_table

    html = deviations_table(load_paper("benchmark", "cpu")).to_html()
    assert "methods.&lt;name&gt;" in html and "methods.<name>" not in html


def test_a_wide_leaderboard_is_split_into_tables_that_fit_the_page():
    from unlearnlib.results.reference import has_run, load_reference, reference_dir

    if not has_run(reference_dir("benchmark", "cpu")):
        pytest.skip("no committed benchmark cpu reference run")
    run = load_reference("benchmark", "cpu")
    for kind in ("class", "random", "backdoor"):
        t = lb.leaderboard_table(run, kind)
        parts = [s.data for s in t.stylers]
        assert len(parts) >= 2 and all(len(p.columns) <= 10 for p in parts)
        assert all(list(p.columns[:2]) == ["dataset", "method"] and len(p) == len(parts[0]) for p in parts)
        assert t.caption.startswith("Leaderboard") and t.stylers[1].caption.startswith("Continued")
    cols = [list(s.data.columns) for s in lb.leaderboard_table(run, "class").stylers]
    assert any({"F marginal", "U-LiRA acc", "KLOM forget"} <= set(c) for c in cols)  # kept together
