"""Every benchmark script's --smoke run (a subprocess, tiny inputs, an output folder of its own), the GPU check at
its tiny size, and the book's Performance page built from what they write. The figures themselves are not tested:
the smoke sizes measure nothing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from unlearnlib.performance import page, write_page

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"


def _run(script: str, out: Path, *args: str, system_data: Path | None = None, timeout: int = 240,
         check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), UNLEARNLIB_THREADS="1")
    if system_data is not None:
        env["UNLEARNLIB_SYSTEM_DATA"] = str(system_data)
    cmd = [sys.executable, str(BENCH / script), *(["--smoke", "--out", str(out)] if out else []), "--threads", "1",
           *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_smoke_needs_an_output_folder(isolated_env):
    proc = _run("deep_unlearning.py", None, "--smoke", "--numerics", "none", check=False)
    assert proc.returncode != 0 and "--out" in proc.stderr
    assert not (Path(isolated_env["UNLEARNLIB_RESULTS"]) / "benchmarks").exists()


def test_deep_unlearning_smoke(tmp_path):
    proc = _run("deep_unlearning.py", tmp_path, "--numerics", "none")
    phases = pd.read_csv(tmp_path / "deep_unlearning_phases.csv")
    assert set(phases.model) == {"resnet18", "vgg11_bn"}
    assert {"exact", "lowrank", "lowrank+gram_eigh", "lowrank+gram_solve", "floor", "floor_gram"} <= set(
        phases.variant)
    total = phases[phases.phase == "total"].set_index(["model", "variant"]).seconds
    parts = phases[phases.phase.isin(["forward", "patches", "decomposition", "projection"])]
    summed = parts.groupby(["model", "variant"]).seconds.sum()
    pd.testing.assert_series_equal(summed.sort_index(), total.drop(["floor", "floor_gram"], level=1).sort_index(),
                                   check_names=False, rtol=1e-3, atol=1e-5)
    assert (phases[phases.phase == "end_to_end"].seconds > 0).all()
    layers = pd.read_csv(tmp_path / "deep_unlearning_layers.csv")
    assert (layers.gram_solve_vs_svd < 1e-3).all()  # the same projector, three ways
    assert "low-rank / exact" in proc.stdout and "floor" in proc.stdout


def test_deep_unlearning_numerics_smoke(tmp_path, fmnist_system_dir):
    _run("deep_unlearning.py", tmp_path, "--skip-timing", system_data=fmnist_system_dir)
    num = pd.read_csv(tmp_path / "deep_unlearning_numerics.csv")
    assert set(num.decomposition) == {"svd", "gram_eigh", "gram_solve"} and num.seed.nunique() == 2
    assert (num[num.decomposition == "svd"].vs_svd_same_seed == 0).all()


def test_methods_smoke(tmp_path, fmnist_system_dir):
    _run("methods.py", tmp_path, system_data=fmnist_system_dir)
    df = pd.read_csv(tmp_path / "methods.csv")
    assert list(df.method) == ["retrain", "deep_unlearning", "ssd"]
    assert (df.repeats >= 1).all() and (df.seconds > 0).all()
    assert df.set_index("method").speedup_vs_retrain["retrain"] == pytest.approx(1.0)
    assert ((df.fit_share >= 0) & (df.fit_share <= 1.0 + 1e-6)).all()
    fits = df.set_index("method").fit_share
    assert fits["deep_unlearning"] == 0 and fits["retrain"] > 0.5  # gradient-free vs all in the training loop


def test_suite_smoke(tmp_path, fmnist_system_dir):
    _run("suite.py", tmp_path, system_data=fmnist_system_dir)
    df = pd.read_csv(tmp_path / "suite.csv")
    run = df[df.phase != "total"]
    assert {"originals", "retrains", "methods", "evaluation", "plan and tables"} <= set(run.phase)
    assert run.share.sum() == pytest.approx(1.0, abs=1e-3)
    assert (run.seconds >= 0).all()


def test_suite_splits_a_finished_run_from_its_cells_csv(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.resolved.yaml").write_text("id: some_paper\nprofile: cpu\n")
    pd.DataFrame([  # kind, method, trains_from_scratch, wall_s, call_s, reused
        ("original", "original", False, 30.0, None, False), ("evaluate", "original", False, 4.0, None, False),
        ("method", "retrain", True, 35.0, 31.0, False), ("method", "m", False, 12.0, 9.0, True),
        ("method", "m2", False, 6.0, 5.5, False)],
        columns=["kind", "method", "trains_from_scratch", "wall_s", "call_s", "reused"]).assign(
        cell=list("abcde")).to_csv(run / "cells.csv", index=False)
    proc = _run("suite.py", None, "--from-run", str(run), "--out", str(tmp_path / "out"))
    df = pd.read_csv(tmp_path / "out" / "suite.csv").set_index("phase")
    assert set(df.paper) == {"some_paper"} and set(df.part) == {"cpu run (its cells.csv)"}
    assert df.seconds.to_dict() == pytest.approx({"originals": 30.0, "retrains": 31.0, "methods": 14.5,
                                                  "evaluation": 4.0 + 4.0 + 3.0 + 0.5, "total": 87.0})
    assert "1 of 5 cells reused" in proc.stdout + proc.stderr
    missing = _run("suite.py", None, "--from-run", str(tmp_path), "--out", str(tmp_path / "o2"), check=False)
    assert missing.returncode != 0 and "no cells.csv" in missing.stdout + missing.stderr


def test_suite_reads_make_tests_recipes():
    spec = importlib.util.spec_from_file_location("suite_bench", BENCH / "suite.py")
    sys.path.insert(0, str(BENCH))
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    for part in mod.TEST_PARTS:
        recipe = mod.make_recipe(part)
        assert recipe and all("$(" not in c for c in recipe)
    assert any("pytest" in c for c in mod.make_recipe("test-unit"))


def test_concurrency_smoke(tmp_path):
    _run("concurrency.py", tmp_path, "--papers", "a,a")
    df = pd.read_csv(tmp_path / "concurrency.csv")
    assert list(df["mode"]) == ["alone", "together"]  # one alone per distinct workload
    assert df.ratio_to_slowest_alone.dropna().iloc[0] > 0


def _sample_csvs(d: Path) -> None:
    env = {"device": "cpu", "device_name": "x86", "cores": 2, "threads": 2, "torch": "2", "date": "2026-01-01T00",
           "git_commit": "abc"}
    rows = []
    for model in ("resnet18", "vgg11_bn"):
        for v, base in (("official", 10.0), ("exact", 8.0), ("lowrank", 7.5), ("lowrank+gram_eigh", 3.0),
                        ("lowrank+gram_solve", 1.5)):
            for ph, frac in (("forward", 0.1), ("patches", 0.05), ("decomposition", 0.8), ("projection", 0.05)):
                rows.append({"model": model, "width": 64, "input": "3x32x32", "samples": 1800, "max_patches": 10000,
                             "scope": "forward and patches in full; one layer per shape x its count", "variant": v,
                             "phase": ph, "seconds": base * frac, **env})
            rows.append({"model": model, "width": 64, "input": "3x32x32", "samples": 1800, "max_patches": 10000,
                         "variant": v, "phase": "total", "seconds": base, **env})
        for v, t in (("floor", 7.0), ("floor_gram", 1.0)):
            rows.append({"model": model, "width": 64, "input": "3x32x32", "samples": 1800, "max_patches": 10000,
                         "variant": v, "phase": "total", "seconds": t, **env})
    pd.DataFrame(rows).to_csv(d / "deep_unlearning_phases.csv", index=False)
    pd.DataFrame([{"profile": "cpu", "paper": "deep_unlearning", "model": "resnet18", "width": 8, "seed": 42,
                   "scenario": "class_0", "retain_n": 9000, "forget_n": 1000, "method": m, "config_from": "x",
                   "seconds": s, "seconds_min": s, "seconds_max": s, "repeats": 1, "fit_s": s / 2, "fit_share": 0.5,
                   "speedup_vs_retrain": 40.0 / s, **env} for m, s in (("retrain", 40.0), ("ssd", 2.0),
                                                                       ("neggrad", 80.0))]).to_csv(d / "methods.csv",
                                                                                                  index=False)


def test_performance_page_from_csvs(tmp_path):
    bench, out = tmp_path / "bench", tmp_path / "out"
    bench.mkdir()
    _sample_csvs(bench)
    md, figs = page(bench, out)
    assert md.startswith("# Performance")
    assert "low-rank / exact 0.94" in md and "low-rank / official 0.75" in md
    assert all(f.exists() and f.parent == out for f in figs) and len(figs) == 2
    assert "Not measured yet: `python benchmarks/suite.py`" in md  # what is missing says how to make it
    assert "| ssd |" in md and "20.0" in md  # speed-up 40 / 2


def test_performance_page_without_benchmarks(tmp_path):
    path = write_page(tmp_path / "gen", tmp_path / "nothing")
    text = path.read_text()
    assert text.startswith("# Performance") and text.count("Not measured yet") == 7  # + fit_overhead, grouped, costs
    assert "Not run on a GPU yet" in text
