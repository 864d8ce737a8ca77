"""The plan of cells, end to end on the smoke profile (real Fashion-MNIST; skipped without it): determinism from
empty caches, the Ray executor against the local one, kill -9 and resume, corrupted files, the run lock, and
the division of the cores."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import env_vars

from unlearnlib import threads
from unlearnlib.harness import RunFolder, RunLockedError, build_plan, run_paper
from unlearnlib.harness.store import CorruptFile, Store, read_json, write_json

PAPER, PROFILE = "unsir", "smoke"
METHODS = ["retrain", "finetune", "unsir"]  # 1 model x 2 scenarios: 1 original + 2 evaluations + 6 method cells
PER_DATASET = 9
N_CELLS = 2 * PER_DATASET  # the smoke profile runs Fashion-MNIST and digits
TIMING_METRICS = ("unlearn_time_s", "speedup_vs_retrain")


def roots(base: Path, fmnist: Path) -> dict[str, str]:
    out = {"UNLEARNLIB_RESULTS": base / "results", "UNLEARNLIB_CACHE": base / "cache", "UNLEARNLIB_DATA": base / "data",
           "UNLEARNLIB_SYSTEM_DATA": fmnist}
    return {k: str(v) for k, v in out.items()}


def run(r: dict, **kw):
    out = io.StringIO()
    with env_vars(**r), contextlib.redirect_stdout(out):
        result = run_paper(PAPER, PROFILE, device="cpu", progress=False, methods=METHODS, threads=1, **kw)
    return result, out.getvalue()


def metric_lines(result) -> list[str]:
    """metrics.csv as bytes, line by line, without the timing rows (times differ between runs)."""
    lines = (result.path / "metrics.csv").read_text().splitlines()
    return [line for line in lines if not any(f",{m}," in line for m in TIMING_METRICS)]


@pytest.fixture(scope="module")
def reference(fmnist_system_dir, tmp_path_factory):
    """A fresh local run (empty cache), one torch thread per cell."""
    r = roots(tmp_path_factory.mktemp("ref"), fmnist_system_dir)
    result, log = run(r)
    return {"roots": r, "run": result, "log": log, "lines": metric_lines(result)}


def test_plan_lists_cells_with_stable_keys_and_dependencies(reference):
    with env_vars(**reference["roots"]):
        a = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS)
        b = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS)
    assert [c.key for c in a.cells] == [c.key for c in b.cells] and len(a.cells) == N_CELLS
    assert len({c.key for c in a.cells}) == N_CELLS
    kinds = [c.kind for c in a.cells]
    assert kinds.count("original") == 2 and kinds.count("evaluate") == 4 and kinds.count("method") == 12
    position = {c.key: i for i, c in enumerate(a.cells)}
    for c in a.cells:  # the plan order is a topological order; method cells need their original
        assert all(position[d] < position[c.key] for d in c.deps)
        if c.kind == "method":
            assert c.original in c.deps
    retrain = [c for c in a.cells if c.method == "retrain"]
    assert all(c.model_key for c in retrain) and len({c.model_key for c in retrain}) == 4


def test_two_fresh_runs_give_byte_identical_metrics(reference, fmnist_system_dir, tmp_path):
    again, log = run(roots(tmp_path, fmnist_system_dir))
    assert f"{N_CELLS} cells computed, 0 reused" in log
    assert metric_lines(again) == reference["lines"] and len(reference["lines"]) > 100
    t = again.timings
    assert set(t.threads) == {1} and not t.cached.any()


def test_ray_executor_with_two_workers_gives_the_local_metrics(reference, fmnist_system_dir, tmp_path):
    ray_run, log = run(roots(tmp_path, fmnist_system_dir), executor="ray", workers=2)
    assert "ray executor (local instance, 2 worker(s))" in log and f"{N_CELLS} cells computed" in log
    assert metric_lines(ray_run) == reference["lines"]
    assert set(ray_run.timings.threads) == {1}  # 2 cores / 2 workers
    assert ray_run.env["executor"].startswith("ray")


_KILLED = textwrap.dedent("""
    import unlearnlib as ul
    ul.run_paper({paper!r}, {profile!r}, device="cpu", progress=False, methods={methods!r}, threads=1)
""")


def test_killed_run_resumes_and_ends_with_the_uninterrupted_metrics(reference, fmnist_system_dir, tmp_path):
    r = roots(tmp_path, fmnist_system_dir)
    script = _KILLED.format(paper=PAPER, profile=PROFILE, methods=METHODS)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **r}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    records = Path(r["UNLEARNLIB_CACHE"]) / "cells"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(records.glob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = len(list(records.glob("*.json")))
    assert 2 <= stored < N_CELLS - 1, "the run must be killed part-way"
    final = Path(r["UNLEARNLIB_RESULTS"]) / PAPER / PROFILE
    assert not final.exists()  # nothing half-written is visible; the scratch folder of the killed run remains
    assert any(p.name.startswith(f".{PROFILE}.tmp-") for p in final.parent.iterdir())
    resumed, log = run(r)
    assert log.count("reused from the cell store") >= stored + 1  # the stored records and the original
    assert f"{N_CELLS - log.count('reused from the cell store')} cells computed" in log
    assert metric_lines(resumed) == reference["lines"]
    assert sorted(p.name for p in final.parent.iterdir()) == [PROFILE]  # the killed run's scratch is gone


def test_corrupt_files_are_reported_moved_aside_and_rebuilt(reference, tmp_path):
    r = dict(reference["roots"], UNLEARNLIB_RESULTS=str(tmp_path / "results"),
             UNLEARNLIB_CACHE=str(tmp_path / "cache"))
    shutil.copytree(reference["roots"]["UNLEARNLIB_CACHE"], r["UNLEARNLIB_CACHE"])
    cache = Path(r["UNLEARNLIB_CACHE"])
    with env_vars(**r):
        plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS, threads=1)  # the count is in the keys
    original = next(c for c in plan.cells if c.kind == "original")
    finetune = next(c for c in plan.cells if c.method == "finetune")
    pt = cache / "checkpoints" / f"{original.model_key}.pt"
    pt.write_bytes(pt.read_bytes()[:1000])  # truncated
    (cache / "cells" / f"{finetune.key}.json").write_text('{"format": 1, "sha256": "0", "bo')  # cut mid-write
    rebuilt, log = run(r)
    integrity = [line for line in log.splitlines() if "integrity:" in line]
    assert len(integrity) == 2, log
    assert any(original.model_key in line and "does not match the sha256" in line for line in integrity)
    assert any(finetune.key in line and "not readable JSON" in line for line in integrity)
    assert (cache / "checkpoints" / f"{original.model_key}.pt.corrupt").exists()
    assert (cache / "cells" / f"{finetune.key}.json.corrupt").exists()
    assert "training the original" in log and "2 cells computed" in log  # the original and that method cell
    assert metric_lines(rebuilt) == reference["lines"]


def test_store_checks_every_record_against_its_sha256(tmp_path):
    store = Store(tmp_path, say=lambda msg: None)
    store.save_record("k", {"rows": [{"metric": "a", "value": 1.5}]}, {"x": __import__("numpy").arange(3.0)})
    assert store.load_record("k")["rows"][0]["value"] == 1.5
    path = store.record_path("k")
    path.write_text(path.read_text().replace("1.5", "2.5"))  # a changed value, valid JSON
    assert store.load_record("k") is None and (tmp_path / "cells" / "k.json.corrupt").exists()
    write_json(tmp_path / "x.json", {"a": 1})
    assert read_json(tmp_path / "x.json") == {"a": 1}
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(CorruptFile, match="no checksummed body"):
        read_json(tmp_path / "x.json")


def test_a_second_run_of_the_same_paper_and_profile_is_refused(reference, tmp_path):
    r = dict(reference["roots"], UNLEARNLIB_RESULTS=str(tmp_path / "results"))
    with env_vars(**r):
        with RunFolder(PAPER, PROFILE):
            with pytest.raises(RunLockedError, match=rf"process {socket.gethostname()}:{os.getpid()}.*wait for it"):
                run_paper(PAPER, PROFILE, device="cpu", progress=False, methods=METHODS)
        # released: nothing left behind, and the next run goes through (every cell reused)
        assert not (tmp_path / "results" / PAPER).exists()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run_paper(PAPER, PROFILE, device="cpu", progress=False, methods=METHODS, threads=1)
    assert f"0 cells computed, {N_CELLS} reused" in out.getvalue()


def test_the_lock_is_released_when_its_process_is_killed(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from unlearnlib.harness import RunFolder
        with RunFolder({PAPER!r}, {PROFILE!r}, root={str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=f"process {socket.gethostname()}:{proc.pid}"):
        with RunFolder(PAPER, PROFILE, root=tmp_path):
            pass
    proc.kill()
    proc.wait()
    with RunFolder(PAPER, PROFILE, root=tmp_path) as rf:  # the killed holder's flock is gone
        assert rf.tmp.exists()


def test_fair_share_divides_the_cores_among_computing_processes(monkeypatch, tmp_path):
    monkeypatch.setattr(threads, "_registry", lambda: tmp_path)
    monkeypatch.setattr(threads, "cpu_budget", lambda: 8)
    monkeypatch.delenv("UNLEARNLIB_THREADS", raising=False)
    assert threads.fair_share() == 8
    with threads.computing():
        (tmp_path / str(os.getppid())).touch()  # another live process computing
        (tmp_path / "999999999").touch()  # a killed one: removed, not counted
        assert threads.computing_processes() == 2 and threads.fair_share() == 4
        assert not (tmp_path / "999999999").exists()
    assert threads.computing_processes() == 1  # this one left
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("UNLEARNLIB_THREADS", "3")
    with threads.using() as n:  # the count for one block; the process's own count comes back after it
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    monkeypatch.setenv("UNLEARNLIB_THREADS", "many")
    with pytest.raises(ValueError, match="UNLEARNLIB_THREADS"):
        threads.use()


def test_timings_record_the_spread_device_and_threads(reference):
    t = pd.read_csv(reference["run"].path / "timings.csv")
    cols = {"seconds", "seconds_min", "seconds_max", "repeats", "cached", "device", "threads", "speed"}
    assert cols <= set(t.columns)
    assert set(t.speed) == {"exact"}  # the run's speed switch on every row (issue 22), as in env.json
    assert json.loads((reference["run"].path / "env.json").read_text())["speed"] == "exact"


class _ScriptedTimer:
    """Stands in for metrics.Timer inside the harness: each call takes the next scripted number of seconds."""

    script: list[float] = []

    def __init__(self, device) -> None:
        self.seconds = float("nan")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = _ScriptedTimer.script.pop(0)


@pytest.mark.parametrize("script,repeats,expect", [
    ([0.5, 0.1, 0.3], 3, (0.3, 0.1, 0.5, 3)),  # short calls: repeated, the median reported with the spread
    ([7.0], 1, (7.0, 7.0, 7.0, 1)),  # a call above repeat_below_s (5 s) runs once
])
def test_short_calls_are_repeated_from_fresh_copies_and_the_median_is_reported(
        reference, tmp_path, monkeypatch, script, repeats, expect):
    import dataclasses

    import unlearnlib.harness.cells as cells_mod
    from unlearnlib.harness.cells import CellRunner
    from unlearnlib.methods import METHODS as REGISTRY

    calls = []
    spec = REGISTRY.get("finetune")

    def counting(model, **kw):
        calls.append({k: v.clone() for k, v in model.state_dict().items()})  # the state it starts from
        return spec.fn(model, **kw)

    monkeypatch.setitem(REGISTRY._items, "finetune", dataclasses.replace(spec, fn=counting))
    monkeypatch.setattr(cells_mod, "Timer", _ScriptedTimer)
    _ScriptedTimer.script = list(script)
    r = dict(reference["roots"], UNLEARNLIB_CACHE=str(tmp_path / "cache"))
    shutil.copytree(reference["roots"]["UNLEARNLIB_CACHE"], r["UNLEARNLIB_CACHE"])
    with env_vars(**r):
        plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS, threads=1)  # the cached cells' count
        plan.settings.timing.repeats = 3  # the smoke profile times once; here the cpu default
        runner = CellRunner(plan, Store(say=lambda m: None), progress=False, threads=1)
        cell = next(c for c in plan.cells if c.method == "finetune")
        record = runner.run(cell)
    assert len(calls) == repeats and not _ScriptedTimer.script
    for state in calls[1:]:  # every call starts from the original, not from the previous call's result
        assert all(torch_equal(state[k], calls[0][k]) for k in state)
    t = record["timings"][0]
    assert (t["seconds"], t["seconds_min"], t["seconds_max"], t["repeats"]) == expect
    assert {r["metric"]: r["value"] for r in record["rows"]}["unlearn_time_s"] == expect[0]


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_an_ensemble_gives_per_example_scores_beside_their_floor(fmnist_system_dir, tmp_path, monkeypatch):
    """A tiny ensemble (N = 4 per side) on the smoke profile: 4 originals, 4 + 4 retrains, each method once per
    original (marginal) and 4 times from the first (conditional); scores from the stored logits."""
    import yaml

    import unlearnlib.config as config_mod

    papers = tmp_path / "papers"
    shutil.copytree(config_mod.PAPERS_DIR, papers)
    raw = yaml.safe_load((papers / f"{PAPER}.yaml").read_text())
    raw["profiles"]["smoke"]["ensemble"] = {"n": 4, "scenario": "class7", "methods": ["finetune"],
                                            "overrides": {"train_subset": 400, "test_subset": 300}}
    (papers / f"{PAPER}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.setattr(config_mod, "PAPERS_DIR", papers)
    r = roots(tmp_path, fmnist_system_dir)
    result, log = run(r)
    with env_vars(**r):
        plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS)
    ens = [c for c in plan.cells if c.part == "ensemble"]
    kinds = pd.Series([(c.kind, c.method, c.method_seed is not None) for c in ens]).value_counts()
    assert kinds[("original", "original", False)] == 4 and kinds[("method", "retrain", False)] == 4
    assert kinds[("method", "retrain", True)] == 4  # the floor's retrains: other seeds, same originals
    assert kinds[("method", "finetune", False)] == 4 and kinds[("method", "finetune", True)] == 4
    # + three group cells (ensemble.grouped, on by default): the 4 originals, the 4 oracle and the 4 floor retrains
    assert kinds[("group", "original", False)] == 1 and kinds[("group", "retrain", False)] == 2
    assert len(ens) == 4 * 2 + 4 * 2 + 4 + 4 + 3
    e = result.ensemble
    assert e is not None and set(e.method) == {"finetune", "retrain vs retrain"}
    f = e.set_index(["method", "variant", "metric"]).value
    assert 0.0 <= f[("finetune", "marginal", "F")] <= 1.0 and 0.0 <= f[("retrain vs retrain", "floor", "F")] <= 1.0
    assert ("finetune", "conditional", "F") in f.index and ("finetune", "marginal", "ulira_auc") in f.index
    assert f[("retrain vs retrain", "floor", "klom_forget_mean")] >= 0.0
    # the ensemble's models are not rows of metrics.csv (other recipe, other seeds): they have their own file
    assert set(result.metrics.seed) == set(load_smoke_seeds()) and (result.path / "ensemble_models.csv").exists()
    table = __import__("unlearnlib").ensemble_frame(result)
    assert list(table.method) == ["finetune", "retrain vs retrain"] and table.N.tolist() == [4, 4]


def load_smoke_seeds() -> list[int]:
    from unlearnlib.config import load_paper

    return load_paper(PAPER, PROFILE).settings.seeds


def test_a_run_over_two_datasets_plans_each_with_its_own_data_and_recipe(fmnist_system_dir):
    with env_vars(UNLEARNLIB_SYSTEM_DATA=str(fmnist_system_dir)):
        plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS)
    assert list(plan.parts) == ["fashion_mnist", "digits"]
    digits = plan.parts["digits"]
    assert digits.data.spec.size == 8 and len(digits.train_pool) == len(digits.data.train_y)  # train_subset: null
    assert {c.dataset for c in plan.cells} == {"fashion_mnist", "digits"} and len(plan.cells) == N_CELLS
    assert len({c.key for c in plan.cells}) == N_CELLS  # no cell shared across datasets
    fm_tags = set(plan.parts["fashion_mnist"].splits)
    assert set(digits.splits) == fm_tags  # the same scenarios on both
    # one set of method options for both datasets; retrain inherits each dataset's recipe
    assert digits.method_cfgs["finetune"] == plan.parts["fashion_mnist"].method_cfgs["finetune"]


def test_method_scenarios_leave_a_method_out_of_the_other_scenario_kinds(fmnist_system_dir):
    """versatile@label (a label-aware discriminator) is meaningful on random subsets only: the plan has no cell of
    it on the class and backdoor scenarios, and every other method runs on all three kinds."""
    with env_vars(UNLEARNLIB_SYSTEM_DATA=str(fmnist_system_dir)):
        plan = build_plan("versatile_unlearning", "smoke", device="cpu")
    assert plan.settings.method_scenarios == {"versatile@label": ["random"]}
    kinds: dict[str, set[str]] = {}
    for c in plan.cells:
        if c.kind == "method":
            kinds.setdefault(c.method, set()).add(plan.part(c.dataset).splits[c.scenario].kind)
    assert kinds.pop("versatile@label") == {"random"}
    assert kinds and all(k == {"class", "random", "backdoor"} for k in kinds.values()), kinds


def test_model_options_enter_keys_only_when_set():
    # a CNN's checkpoint key is what it was before the ViT's options existed ({"width": w} alone), so its cached
    # originals and retrains stay valid; the ViT's depth, heads and patch each change the key
    import dataclasses

    from unlearnlib.config import ModelSpec, config_hash
    from unlearnlib.harness.plan import model_spec_key

    assert config_hash("original", model_spec_key(ModelSpec(width=8))) == config_hash("original", {"width": 8})
    assert config_hash("original", model_spec_key(ModelSpec())) == config_hash("original", {"width": None})
    vit = ModelSpec(width=64, depth=4, heads=4, patch=7)
    keys = {config_hash(model_spec_key(vit))} | {config_hash(model_spec_key(dataclasses.replace(vit, **{k: 2})))
                                                 for k in ("depth", "heads", "patch")}
    assert len(keys) == 4
