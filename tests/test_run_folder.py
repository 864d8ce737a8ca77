"""Self-describing run folders (issue 23, part 3): every metric and timing row says its scenario's kind, whether its
method is the run's reference and the kinds the method runs on; the reader groups and compares by these columns,
so it needs no method registry, and a run written before them still loads (the columns derived once, at load)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import yaml

from unlearnlib.config import load_paper, to_dict
from unlearnlib.results import Run, results_frame

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ["paper", "profile", "dataset", "model", "scenario", "method", "seed", "metric", "value"]


def write_run(folder: Path, new_style: bool) -> Path:
    """A small unsir cpu run by hand: original, retrain, unsir and a renamed reference, two class scenarios and a
    random one (unsir forgets classes only), three seeds."""
    cfg = load_paper("unsir", "cpu")
    rows = []
    for seed in (0, 1, 2):
        for sc, kind in (("class3", "class"), ("class0+2", "class"), ("random10pct", "random")):
            for method, acc in (("original", 90.0), ("retrain", 1.0 + seed), ("unsir", 5.0 + seed), ("finetune", 50.0)):
                if method == "unsir" and kind != "class":
                    continue
                for metric, v in (("test_forget_acc", acc), ("test_retain_acc", 80.0 - seed)):
                    rows.append(dict(paper="unsir", profile="cpu", dataset="fashion_mnist", model="resnet18",
                                     scenario=sc, method=method, seed=seed, metric=metric, value=v))
    m = pd.DataFrame(rows, columns=COLUMNS)
    resolved = to_dict(cfg)
    if new_style:
        m["kind"] = ["random" if s.startswith("random") else "class" for s in m.scenario]
        m["reference"] = m.method == "retrain"
        m["run_on"] = ["class" if x == "unsir" else "class random backdoor" for x in m.method]
        resolved["registered_scenarios"] = {"unsir": ["class"], "retrain": ["class", "random", "backdoor"],
                                            "finetune": ["class", "random", "backdoor"]}
    folder.mkdir(parents=True)
    m.to_csv(folder / "metrics.csv", index=False)
    pd.DataFrame(columns=[*COLUMNS[:7], "seconds"]).to_csv(folder / "timings.csv", index=False)
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    (folder / "env.json").write_text(json.dumps({"seeds": [0, 1, 2]}))
    return folder


def test_an_old_run_folder_loads_with_the_columns_derived(tmp_path):
    old, new = Run.load(write_run(tmp_path / "old", False)), Run.load(write_run(tmp_path / "new", True))
    for col in ("kind", "reference", "run_on"):
        assert col not in pd.read_csv(old.path / "metrics.csv")
    assert old.kinds == new.kinds == ["class", "random"]
    assert old.reference == new.reference == "retrain"
    assert not old.runs_on("unsir", "random") and old.runs_on("unsir", "class")
    assert old.registered["unsir"] == ["class"]
    same = [c for c in new.metrics.columns if c != "run_on"]  # derived: the kinds of this run it has rows on
    pd.testing.assert_frame_equal(old.metrics[same], new.metrics[same])
    pd.testing.assert_frame_equal(results_frame(old), results_frame(new))


def test_the_reader_compares_with_the_reference_column_not_a_name(tmp_path):
    folder = write_run(tmp_path / "run", True)
    m = pd.read_csv(folder / "metrics.csv")
    m["method"] = m.method.replace({"retrain": "retrain@x"})  # a paper that configures only a variant
    m.to_csv(folder / "metrics.csv", index=False)
    raw = yaml.safe_load((folder / "config.resolved.yaml").read_text())
    raw["settings"]["methods"]["retrain@x"] = raw["settings"]["methods"].pop("retrain", {})
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run = Run.load(folder)
    assert run.reference == "retrain@x"
    df = results_frame(run, metrics=["test_forget_acc"])
    gaps = df[(df.method == "unsir") & df.scenarios.str.startswith("class")]["|Δ retrain|: ACC_f test (%)"]
    assert gaps.iloc[0] == "4.00 ± 0.00"  # |unsir - retrain@x| = 4 in every seed: the gap exists


def test_the_reading_side_imports_no_method_module(tmp_path):
    folder = write_run(tmp_path / "run", True)
    code = textwrap.dedent(f"""
        import sys
        from unlearnlib.results import Run, claims_frame, results_frame, left_out_note
        run = Run.load({str(folder)!r})
        assert len(results_frame(run)) and "unsir is defined for class forgetting only" in left_out_note(run)
        claims_frame(run)
        loaded = sorted(m for m in sys.modules if m.startswith(("unlearnlib.methods", "unlearnlib.config",
                                                                "unlearnlib.harness")))
        print(loaded)
        assert loaded == [], loaded
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
