"""Equal-budget tuning (issue 20, parts 2-3): every method's declared space names real Config fields with valid
values; the tuning block's seeds and validation requests never meet the reported ones (every paper and profile with
a tuning block, and a ConfigError when they would); a 2-trial tuning of the benchmark's smoke profile writes
tuning.csv and tuned.yaml, reports "<method> (tuned)" rows beside the defaults and, run again, trains nothing new."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from unlearnlib.config import (
    PAPERS_DIR,
    ConfigError,
    available_papers,
    load_paper,
    method_config,
    validate_settings,
)
from unlearnlib.methods import METHODS, method_spec
from unlearnlib.paper import TuningConfig
from unlearnlib.schema import from_dict
from unlearnlib.train import TrainConfig

# -- the methods' declared spaces --------------------------------------------------------------------------------


def _space_values(spec):
    """(field, low value, high value) of every declared dimension, as the study would draw them."""
    from unlearnlib.harness.tuning import knob_range

    t = spec.tuning
    out = []
    if t.lr:
        out.append((t.lr, 1e-5, 0.1))
    if t.budget:
        out.append((t.budget, 1, 3))
    for name, knob in t.knobs.items():
        r = knob_range(spec.Config, name, knob)
        out += [(name, c, c) for c in r[1]] if r[0] == "choice" else [(name, r[1], r[2])]
    return out


@pytest.mark.parametrize("name", METHODS.names())
def test_every_declared_knob_is_a_config_field_with_valid_values(name):
    spec = method_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.Config)}
    t = spec.tuning
    if spec.trains_from_scratch:
        assert t.empty, "the reference is never tuned"
        return
    assert not t.empty, f"{name} declares nothing to tune (issue 20: every method with knobs declares them)"
    for f in [t.lr, t.budget, *t.knobs]:
        if f:
            assert f in fields, f"{name}: the declared knob {f!r} is not a field of its Config"
    assert t.budget_unit in ("epochs", "steps", "forget_epochs")
    for knob_name, knob in t.knobs.items():
        if not knob.choices:
            assert knob.low < knob.high, f"{name}.{knob_name}: empty range"
            assert not knob.log or knob.low > 0, f"{name}.{knob_name}: a log range must be positive"
    for f, lo, hi in _space_values(spec):
        for v in (lo, hi):  # both ends make a valid Config (its check() passes)
            cfg = method_config(name, {f: v}, TrainConfig(), where=f"methods.{name}")
            assert getattr(cfg, f) == v


def test_the_budget_cap_is_a_share_of_the_originals_training():
    """Known answers on the cpu profile: 10 epochs of 1200 images at batch 64 (19 batches, 190 steps), share 0.3."""
    from types import SimpleNamespace

    from unlearnlib.harness.tuning import budget_cap

    cfg = load_paper("benchmark", "cpu")
    plan = SimpleNamespace(cfg=cfg, part=lambda ds: SimpleNamespace(train_pool=np.arange(1200)))
    assert budget_cap(plan, "fashion_mnist", "epochs") == 3
    assert budget_cap(plan, "fashion_mnist", "steps") == 57
    assert budget_cap(plan, "fashion_mnist", "forget_epochs", n_forget=120, batch_size=64) == 28  # 2 batches a pass


# -- validation requests and tuning seeds never meet the reported ones --------------------------------------------


def _tuned_profiles():
    out = []
    for paper in available_papers():
        raw = yaml.safe_load((PAPERS_DIR / f"{paper}.yaml").read_text())
        for profile in raw["profiles"]:
            cfg = load_paper(paper, profile)
            if cfg.settings.tuning.trials:
                out.append((paper, profile))
    return out


TUNED = _tuned_profiles()


def test_the_benchmark_tunes_in_cpu_and_smoke():
    assert ("benchmark", "cpu") in TUNED and ("benchmark", "smoke") in TUNED
    assert load_paper("benchmark", "cpu").settings.tuning.trials >= 8
    assert load_paper("benchmark", "smoke").settings.tuning.trials == 2


@pytest.mark.parametrize("paper,profile", TUNED)
def test_tuning_seeds_and_validation_requests_never_meet_the_reported_ones(paper, profile):
    from unlearnlib.harness.plan import validation_settings

    cfg = load_paper(paper, profile)
    t = cfg.settings.tuning
    assert not set(t.seeds) & set(cfg.settings.seeds)
    e = cfg.settings.ensemble
    assert not {s for s in t.seeds if e.n and e.seed <= s < e.seed + 3 * e.n}
    for ds in cfg.datasets:
        s = cfg.settings_for(ds)
        v = validation_settings(s)
        reported = s.split.all_scenarios()
        for sc in v.split.all_scenarios():
            if sc.kind == "class":
                assert not set(sc.classes) & {c for r in reported if r.kind == "class" for c in r.classes}
        assert v.split.seed != s.split.seed
        assert {sc.kind for sc in v.split.all_scenarios()} == {sc.kind for sc in reported}
        # a trial computes the objective's metrics only (no SVC attack, no probe) and times its call once
        assert set(v.metrics.metrics) == set(s.metrics.metrics) & set(t.weights) and v.timing.repeats == 1


def test_the_validation_requests_forget_other_images(monkeypatch, fmnist_system_dir):
    """On the real smoke plan: the validation class forgets other images, the random subset and the poisoned samples
    are other draws."""
    import unlearnlib.harness.plan as plan_mod

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    plan = plan_mod.build_plan("benchmark", "smoke", threads=1, methods=["retrain", "finetune", "ssd", "lau"])
    rep, val = plan.part("fashion_mnist"), plan.part(plan_mod.TUNING_PART + "fashion_mnist")
    for kind in ("class", "random", "backdoor"):
        r = next(sp for sp in rep.splits.values() if sp.kind == kind)
        v = next(sp for sp in val.splits.values() if sp.kind == kind)
        assert r.tag != v.tag or kind != "class"
        if kind == "class":
            assert not np.intersect1d(r.forget_train, v.forget_train).size
        else:
            assert len(v.forget_train) and not np.array_equal(np.sort(r.forget_train), np.sort(v.forget_train))
    seeds = {c.seed for c in plan.cells if c.part.startswith(plan_mod.TUNING_PART)}
    assert seeds == {100} and not seeds & set(plan.seeds)


def test_tuning_can_leave_a_dataset_out(monkeypatch, fmnist_system_dir):
    import unlearnlib.harness.plan as plan_mod

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    real = plan_mod.load_paper

    def load(paper, profile):
        cfg = real(paper, profile)
        cfg.settings.tuning.datasets = ["fashion_mnist"]
        return cfg

    monkeypatch.setattr(plan_mod, "load_paper", load)
    plan = plan_mod.build_plan("benchmark", "cpu", threads=1, methods=["retrain", "finetune", "lau", "ssd"])
    assert plan_mod.TUNING_PART + "fashion_mnist" in plan.parts and plan_mod.TUNING_PART + "digits" not in plan.parts


@pytest.mark.parametrize("change,message", [
    ({"seeds": [0]}, "also reporting seeds"),
    ({"validation": {"classes": [7], "split_seed": 1}}, "forgotten by a reported request"),
    ({"validation": {"classes": [3], "split_seed": 0}}, "split.seed"),
    ({"validation": {"classes": [12], "split_seed": 1}}, "has classes 0 .. 9"),
    ({"methods": ["retrain"]}, "nothing to tune"),
    ({"methods": ["nonesuch"]}, "not configured"),
    ({"weights": {"nonesuch": 1.0}}, "not metrics of this run"),
    ({"seeds": [1001]}, "ensemble's seeds"),
    ({"datasets": ["cifar10"]}, "not datasets of this run"),
])
def test_a_tuning_block_that_meets_the_reported_requests_is_a_config_error(change, message):
    cfg = load_paper("benchmark", "smoke")
    raw = {**dataclasses.asdict(cfg.settings.tuning), **change}
    bad = copy.deepcopy(cfg)
    bad.settings.tuning = from_dict(TuningConfig, raw, "tuning")
    with pytest.raises(ConfigError, match=message):
        validate_settings(bad)


@pytest.mark.parametrize("raw,message", [
    ({"trials": -1}, "trials"), ({"lr": [0.1, 0.01]}, "0 < low < high"), ({"budget_share": 0}, "budget_share"),
    ({"weights": {"forget_acc": -1}}, "weights"), ({"seeds": [1, 1]}, "seeds"), ({"batch": 0}, "batch"),
])
def test_the_tuning_block_checks_its_own_values(raw, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(TuningConfig, raw, "tuning")


# -- a 2-trial tuning end to end: files, rows, resuming ----------------------------------------------------------

METHODS_RUN = ["retrain", "finetune", "ssd"]


def _no_ensemble(real):
    def load(paper, profile):
        cfg = real(paper, profile)
        cfg.settings.ensemble.n = 0  # the test's budget: the ensemble is another test's subject
        return cfg

    return load


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "locks" not in p.parts}


@pytest.fixture(scope="module")
def tuned_runs(tmp_path_factory, make_roots, fmnist_system_dir):
    import unlearnlib.harness.plan as plan_mod
    from unlearnlib.harness import run_paper

    roots = make_roots(tmp_path_factory.mktemp("tuning"))
    roots["UNLEARNLIB_SYSTEM_DATA"] = str(fmnist_system_dir)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in roots.items():
            mp.setenv(k, v)
        mp.setattr(plan_mod, "load_paper", _no_ensemble(plan_mod.load_paper))
        first = run_paper("benchmark", "smoke", methods=METHODS_RUN, progress=False, threads=1)
        folder = Path(first.path)
        tuning1 = pd.read_csv(folder / "tuning.csv")
        cache = Path(roots["UNLEARNLIB_CACHE"])
        before = _files(cache)
        second = run_paper("benchmark", "smoke", methods=METHODS_RUN, progress=False, threads=1)
        after = _files(cache)
    return first, second, tuning1, before, after, roots


def test_tuning_writes_every_trial_and_the_chosen_options(tuned_runs):
    first, _, trials, _, _, _ = tuned_runs
    assert len(trials) == 2 * 3 * 2  # finetune and ssd (the smoke block's methods) x 3 kinds x 2 trials
    assert set(trials.method) == {"finetune", "ssd"} and set(trials.kind) == {"class", "random", "backdoor"}
    assert set(trials.trial) == {0, 1} and (trials.seconds > 0).all()
    done = trials[trials.state == "complete"]
    assert len(done) and done.objective.map(math.isfinite).all()
    ft = [json.loads(p) for p in trials.params[trials.method == "finetune"]]
    assert all(1e-5 <= p["lr"] <= 0.1 and 1 <= p["epochs"] <= 1 for p in ft)  # smoke: 0.3 x 1 epoch -> at most 1
    tuned = yaml.safe_load((Path(first.path) / "tuned.yaml").read_text())
    assert tuned["trials"] == 2 and tuned["tuning_seeds"] == [100] and tuned["reporting_seeds"] == [0]
    chosen = tuned["chosen"]["fashion_mnist"]["class"]["ssd"]
    best = done[(done.method == "ssd") & (done.kind == "class")].objective.min()
    assert chosen["objective"] == pytest.approx(best)
    assert set(chosen["options"]) == {"selection_weighting", "dampening_constant"}
    env = json.loads((Path(first.path) / "env.json").read_text())
    assert 0 < env["tuning_wall_s"] < env["wall_s"]  # the study's own time, a part of the run's


def test_the_tuned_options_are_run_on_the_reported_requests_and_seeds(tuned_runs):
    first = tuned_runs[0]
    m = first.metrics
    assert {"finetune (tuned)", "ssd (tuned)"} <= set(m.method)
    assert not m.method.str.contains("@").any()  # no trial and no variant name reaches the results
    assert set(m.seed) == {0} and set(m.scenario) == {"class7", "random10pct", "backdoor10pct"}
    tuned = yaml.safe_load((Path(first.path) / "tuned.yaml").read_text())
    resolved = yaml.safe_load((Path(first.path) / "config.resolved.yaml").read_text())["resolved_methods"]
    opts = tuned["chosen"]["fashion_mnist"]["random"]["finetune"]["options"]
    assert {k: resolved["finetune@tuned_random"][k] for k in opts} == opts


def test_the_leaderboard_shows_both_rows(tuned_runs):
    from unlearnlib.results import leaderboard as lb
    from unlearnlib.results.tuning import chosen_options_frame, tuning_caption

    first = tuned_runs[0]
    for kind in ("class", "random", "backdoor"):
        df = lb.leaderboard_frame(first, kind)
        names = list(df.method)
        assert names.index("ssd (tuned)") == names.index("ssd") + 1
        row = df.set_index("method").loc["finetune (tuned)"]
        assert row.tuned and not math.isnan(row[f"{lb.FORGET_AXIS[kind]}_gap"])
    assert "2 trials per method" in tuning_caption(first)
    assert len(chosen_options_frame(first)) == 6
    import matplotlib

    matplotlib.use("Agg")
    lb.plot_pareto(first, "class")


def test_tuning_resumes_from_stored_cells(tuned_runs):
    first, second, trials, before, after, _ = tuned_runs
    assert after == before, f"the second run computed new cells: {sorted(after - before)[:5]}"
    again = pd.read_csv(Path(second.path) / "tuning.csv")
    pd.testing.assert_frame_equal(again.drop(columns=["seconds"]), trials.drop(columns=["seconds"]))
    pd.testing.assert_frame_equal(second.metrics, first.metrics)


# -- the scale ladder ---------------------------------------------------------------------------------------------


def test_the_ladder_profiles_span_eight_times_with_class_and_random():
    from unlearnlib.harness import ladder_profiles

    rungs = ladder_profiles("benchmark")
    sizes = [load_paper("benchmark", p).settings.train_subset for p in rungs]
    assert len(sizes) >= 4 and sizes == sorted(sizes) and sizes[-1] >= 8 * sizes[0]
    cpu = load_paper("benchmark", "cpu").settings
    for p in rungs:
        s = load_paper("benchmark", p).settings
        assert {sc.kind for sc in s.split.all_scenarios()} >= {"class", "random"} and len(s.seeds) >= 3
        assert s.tuning.trials >= 1 and not s.ensemble.n and not s.more_datasets
        # the cpu run's recipe, model and requests: its originals and retrains are the ladder's at the same size
        assert (s.train, s.models, s.split.unseen, s.split.seed) == (cpu.train, cpu.models, cpu.split.unseen,
                                                                      cpu.split.seed)
    assert 1200 in sizes  # the cpu run's size


def _copy_rung(src: Path, dst: Path, drop: str | None = None) -> None:
    import shutil

    shutil.copytree(src, dst)
    if drop:
        m = pd.read_csv(dst / "metrics.csv")
        m[~m.method.isin([drop, drop + " (tuned)"])].to_csv(dst / "metrics.csv", index=False)


def test_the_ladder_figure_reads_every_rung(tuned_runs, tmp_path):
    import matplotlib

    from unlearnlib.results import leaderboard as lb
    from unlearnlib.results.ladder import ladder_frame, plot_ladder, stopped_early

    matplotlib.use("Agg")
    first = tuned_runs[0]
    root = tmp_path / "results"
    assert type(plot_ladder("benchmark", "class", root)).__name__ == "Markdown"  # no ladder yet: the command
    _copy_rung(Path(first.path), root / "benchmark" / "ladder-600")
    _copy_rung(Path(first.path), root / "benchmark" / "ladder-4800", drop="ssd")
    df = ladder_frame("benchmark", "class", root)
    assert sorted(set(df["size"])) == [600, 4800]
    lead = lb.leaderboard_frame(first, "class").set_index("method")
    row = df[(df["size"] == 600) & (df.method == "finetune (tuned)")].iloc[0]
    assert row.tuned and row.forget_gap == pytest.approx(lead.loc["finetune (tuned)", "forget_acc_abs"])
    assert row.utility_gap == pytest.approx(-lead.loc["finetune (tuned)", "retain_acc_gap"])
    assert stopped_early(df) == {"ssd": 600}
    fig = plot_ladder("benchmark", "class", root)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "ssd (stops at 600)" in titles and "finetune" in titles and fig.axes[0].get_xscale() == "log"
    assert len(titles) == df.base.nunique()  # one panel per method


def test_the_ladder_reads_the_committed_rungs_where_you_have_none(tuned_runs, tmp_path, monkeypatch):
    from unlearnlib.results.ladder import ladder_runs

    first = tuned_runs[0]
    local, ref = tmp_path / "results", tmp_path / "reference"
    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(local))
    monkeypatch.setenv("UNLEARNLIB_REFERENCE", str(ref))
    for size in (600, 1200):
        _copy_rung(Path(first.path), ref / "benchmark" / f"ladder-{size}")
    _copy_rung(Path(first.path), local / "benchmark" / "ladder-1200")
    got = dict(ladder_runs("benchmark"))
    assert sorted(got) == [600, 1200]
    assert Path(got[600].path).is_relative_to(ref) and Path(got[1200].path).is_relative_to(local)  # yours first


def test_a_diverging_trial_is_stored_as_failed_and_a_diverging_reported_cell_stops(tuned_runs, monkeypatch):
    import unlearnlib.harness.plan as plan_mod
    from unlearnlib.harness.cells import CellRunner
    from unlearnlib.harness.store import Store
    from unlearnlib.harness.tuning import Study, choose, objective

    for k, v in tuned_runs[5].items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(plan_mod, "load_paper", _no_ensemble(plan_mod.load_paper))
    name = plan_mod.trial_name("finetune", "class", "fashion_mnist", "resnet18", 99)
    spec = {"fashion_mnist": {"trials": {name: {"kind": "class", "model": "resnet18",
                                                "options": {"lr": 0.05, "epochs": 1}}}}}
    plan = plan_mod.build_plan("benchmark", "smoke", methods=METHODS_RUN, threads=1, tuning=spec)

    def diverges(*args, **kw):
        raise FloatingPointError("finetune: loss became nan at step 3")

    monkeypatch.setattr(CellRunner, "_timed", diverges)
    store = Store(say=lambda msg: None)
    runner = CellRunner(plan, store, progress=False, say=lambda msg: None)
    rec = runner.run(next(c for c in plan.cells if c.method == name))
    assert "loss became nan" in rec["failed"] and store.load_record(next(
        c for c in plan.cells if c.method == name).key)["failed"]
    st = Study("finetune", "class", "fashion_mnist", "resnet18", None, {})
    value, _, _, state = objective(plan, store, st, name)
    assert value == math.inf and state.startswith("fail: finetune: loss became nan")
    st.told = [{"state": state, "objective": value, "params": "{}"}]
    assert choose([st]) == {}  # no tuned row from a study whose every trial failed
    reported = next(c for c in plan.cells if c.method == "finetune" and c.part == "fashion_mnist")
    with pytest.raises(FloatingPointError):
        runner.run(reported)


def test_a_dataset_the_tuning_leaves_out_has_no_tuned_rows():
    from unlearnlib.results.leaderboard import leaderboard_display, leaderboard_frame
    from unlearnlib.results.reference import has_run, load_reference, reference_dir

    if not has_run(reference_dir("benchmark", "cpu")):
        pytest.skip("no committed benchmark cpu reference run")
    run = load_reference("benchmark", "cpu")  # tuning.datasets: [fashion_mnist]
    df = leaderboard_frame(run, "class")
    tuned = df[df.tuned.astype(bool)]
    assert len(tuned) and set(tuned.dataset) == {"fashion_mnist"}
    shown = leaderboard_display(run, "class")
    assert not shown[(shown.dataset == "digits") & shown.method.str.endswith("(tuned)")].size
