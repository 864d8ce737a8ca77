"""Reference runs (issue 21): the folder's schema and size, reading it, where a chapter's numbers come from,
``make reference``'s refusals, staleness, and a chapter rendered from a reference with training made impossible.

One tiny real run (the smoke profile of lightweight_unlearning, real Fashion-MNIST; skipped without it) is made
once for the module; the reference folders are made from it by the same code ``make reference`` uses."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unlearnlib.paths import REPO_ROOT
from unlearnlib.results import Run
from unlearnlib.results import reference as R
from unlearnlib.schema import ConfigError

PAPER = "lightweight_unlearning"
METRIC_TYPES = {"paper": "object", "profile": "object", "dataset": "object", "model": "object", "scenario": "object",
                "method": "object", "seed": "int", "metric": "object", "value": "float"}
TIMING_TYPES = {"seconds": "float", "threads": "int", "method": "object", "seed": "int"}
CELL_TYPES = {"cell": "object", "kind": "object", "method": "object", "seed": "int", "wall_s": "float"}


@pytest.fixture(scope="module")
def tiny_run(make_roots, tmp_path_factory, fmnist_system_dir):
    """A finished smoke run of one paper in isolated roots: (roots, its folder)."""
    from unlearnlib.harness import run_paper

    base = tmp_path_factory.mktemp("tiny")
    roots = make_roots(base)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in roots.items():
            mp.setenv(k, v)
        mp.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
        run = run_paper(PAPER, "smoke", device="cpu", progress=False, threads=1)
    return roots, run.path


@pytest.fixture
def roots(tiny_run, monkeypatch, tmp_path):
    """The tiny run's roots, and an empty reference root; returns (results folder of the run, reference root)."""
    env, path = tiny_run
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("UNLEARNLIB_REFERENCE", str(tmp_path / "reference"))
    return path, tmp_path / "reference"


def make_ref(src: Path, ref_root: Path, profile: str = "smoke") -> Path:
    """A reference folder made from ``src`` by make reference's own copy (the smoke run skips only its checks)."""
    from unlearnlib.harness.reference import copy_tidy, fingerprints

    env = json.loads((src / "env.json").read_text())
    methods = list(yaml.safe_load((src / "config.resolved.yaml").read_text())["settings"]["methods"])
    return copy_tidy(src, ref_root / PAPER / profile, env, fingerprints(methods), {"paper": PAPER})


# ----------------------------------------------------------------------------------------------
# schema and size


def check_reference_folder(path: Path) -> None:
    """The schema every reference folder keeps: its files, columns and types, one profile, the env fields."""
    names = {f.name for f in path.iterdir()}
    assert {"metrics.csv.gz", "timings.csv.gz", "cells.csv.gz", "env.json", "config.resolved.yaml",
            "fingerprints.json"} <= names, names
    bad = sorted(n for n in names if not n.endswith((".csv.gz", ".json", ".yaml")))
    assert bad == [], f"{path}: only tidy files belong in a reference (no checkpoints, logits, splits): {bad}"
    for f in path.glob("*.gz"):
        with gzip.open(f) as g:
            g.read(1)  # a real gzip file
    env = json.loads((path / "env.json").read_text())
    missing = [k for k in R.ENV_FIELDS if k not in env]
    assert missing == [], f"{path}/env.json lacks {missing}"
    assert env["profile"] == path.name and env["cpu_threads"] and env["wall_s"] > 0, env
    run = Run.load(path)
    assert run.profile == path.name and run.config.id == path.parent.name
    for df, types in ((run.metrics, METRIC_TYPES), (run.timings, TIMING_TYPES), (run.cells, CELL_TYPES)):
        assert len(df), path
        for col, kind in types.items():
            assert col in df, (path, col)
            if kind == "int":
                assert pd.api.types.is_integer_dtype(df[col]), (path, col, df[col].dtype)
            elif kind == "float":
                assert pd.api.types.is_numeric_dtype(df[col]), (path, col, df[col].dtype)
            else:
                assert not pd.api.types.is_numeric_dtype(df[col]), (path, col, df[col].dtype)
    assert set(run.metrics.profile) == {path.name}, "one profile per folder"
    assert set(run.metrics.paper) == {path.parent.name}
    fps = json.loads((path / "fingerprints.json").read_text())
    assert "evaluation" in fps and all({"files", "sha"} <= set(v) for v in fps.values())


def committed_references() -> list[Path]:
    root = REPO_ROOT / "reference"
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


@pytest.mark.parametrize("path", committed_references(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_reference_folder_keeps_the_schema(path):
    check_reference_folder(path)


def test_the_schema_check_bites_on_a_reference_made_from_a_tiny_run(roots):
    src, ref_root = roots
    ref = make_ref(src, ref_root)
    check_reference_folder(ref)  # passes, non-vacuously: every table has rows
    (ref / "model.pt").write_bytes(b"x")
    with pytest.raises(AssertionError, match="only tidy files"):
        check_reference_folder(ref)
    (ref / "model.pt").unlink()
    env = json.loads((ref / "env.json").read_text())
    del env["cpu_model"]
    (ref / "env.json").write_text(json.dumps(env))
    with pytest.raises(AssertionError, match="cpu_model"):
        check_reference_folder(ref)


def test_the_reference_folders_fit_the_size_budget():
    from unlearnlib.harness.reference import SIZE_BUDGET

    root = REPO_ROOT / "reference"
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else 0
    assert SIZE_BUDGET == 15 * 2**20
    assert total <= SIZE_BUDGET, f"reference/ holds {total / 2**20:.1f} MiB; the budget is 15 MiB"


def test_a_reference_reads_back_as_the_run_it_was_made_from_and_is_smaller(roots):
    src, ref_root = roots
    ref = make_ref(src, ref_root)
    a, b = Run.load(src), Run.load(ref)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    pd.testing.assert_frame_equal(a.timings, b.timings)
    pd.testing.assert_frame_equal(a.cells, b.cells)
    size = lambda p, pat: sum(f.stat().st_size for f in p.glob(pat))  # noqa: E731
    assert size(ref, "*.csv.gz") < size(src, "*.csv") / 2
    first = (ref / "metrics.csv.gz").read_bytes()
    make_ref(src, ref_root)
    assert (ref / "metrics.csv.gz").read_bytes() == first, "the same run gives the same bytes (gzip mtime 0)"


# ----------------------------------------------------------------------------------------------
# where the numbers come from


def test_source_selection(roots, tmp_path, monkeypatch):
    src, ref_root = roots
    with pytest.raises(ConfigError, match="valid: auto, local, reference"):
        R.choose_source(PAPER, "smoke", "mine")
    assert R.choose_source(PAPER, "smoke", "local").kind == "compute"  # yours, computed where missing
    assert R.choose_source(PAPER, "smoke", "auto").kind == "local"  # your finished run, loaded as it is
    with pytest.raises(ConfigError, match="no reference run"):
        R.choose_source(PAPER, "smoke", "reference")
    make_ref(src, ref_root)
    s = R.choose_source(PAPER, "smoke", "reference")
    assert s.kind == "reference" and s.stored and s.path == ref_root / PAPER / "smoke"
    assert R.choose_source(PAPER, "smoke", "auto").kind == "local"  # yours wins when it exists
    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(tmp_path / "empty"))
    s = R.choose_source(PAPER, "smoke", "auto")
    assert s.kind == "reference"  # no local run: ours
    assert s.provenance().startswith("numbers: reference run, ") and "commit " in s.provenance()
    assert "1 thread, profile smoke" in s.provenance()  # the run above: local, threads=1
    with pytest.raises(ConfigError, match=f"no run yet.*make reproduce PAPER={PAPER}"):
        R.choose_source(PAPER, "cpu", "auto")
    # make book: a local real profile first, then the reference, then a local smoke run
    assert R.book_choice(PAPER) == ("smoke", "reference")
    assert R.book_choice("unsir") is None
    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(src.parent.parent))
    assert R.book_choice(PAPER) == ("smoke", "reference")  # a reference is shown over a local smoke run
    shutil.copytree(ref_root / PAPER / "smoke", ref_root / PAPER / "cpu")
    assert R.book_choice(PAPER) == ("cpu", "reference")  # our cpu reference over your smoke run
    assert R.book_choice(PAPER, "local") == ("smoke", "auto")


# ----------------------------------------------------------------------------------------------
# make reference: refusals; check-reference: staleness


def cpu_copy(src: Path, dest: Path, **env_changes) -> Path:
    """The tiny run dressed as a finished cpu run: the YAML's cpu config, env profile cpu, a clean tree."""
    shutil.copytree(src, dest)
    raw = yaml.safe_load((src / "config.resolved.yaml").read_text())
    cpu = R.yaml_config(PAPER, "cpu")
    cpu.update({k: raw[k] for k in R.RUN_ONLY_KEYS if k in raw})
    (dest / "config.resolved.yaml").write_text(yaml.safe_dump(cpu))
    env = json.loads((src / "env.json").read_text())
    env.update({"profile": "cpu", "git_dirty": False, **env_changes})
    (dest / "env.json").write_text(json.dumps(env))
    for f in dest.glob("*.csv"):
        df = pd.read_csv(f)
        if "profile" in df:
            df.assign(profile="cpu").to_csv(f, index=False)
    return dest


def test_make_reference_refuses_smoke_dirty_and_another_config(roots, tmp_path, capsys):
    from unlearnlib.cli import main
    from unlearnlib.harness.reference import check_run

    src, _ = roots
    with pytest.raises(ConfigError, match="smoke run, a pipeline check"):
        check_run(src, PAPER)
    with pytest.raises(SystemExit) as e:  # through the CLI: one error line, exit 2
        main(["reference", "--paper", PAPER, "--profile", "smoke"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "smoke run" in err[0]
    ok = cpu_copy(src, tmp_path / "ok" / "cpu")
    assert check_run(ok, PAPER)["profile"] == "cpu"  # a clean cpu run with the YAML's config passes
    dirty = cpu_copy(src, tmp_path / "dirty" / "cpu", git_dirty=True)
    with pytest.raises(ConfigError, match="uncommitted changes.*FORCE=1"):
        check_run(dirty, PAPER)
    assert check_run(dirty, PAPER, force=True)
    old = cpu_copy(src, tmp_path / "old" / "cpu")
    env = json.loads((old / "env.json").read_text())
    del env["wall_s"]
    (old / "env.json").write_text(json.dumps(env))
    with pytest.raises(ConfigError, match="did not record its wall time"):
        check_run(old, PAPER)
    other = cpu_copy(src, tmp_path / "other" / "cpu")
    cfg = yaml.safe_load((other / "config.resolved.yaml").read_text())
    cfg["settings"]["train"]["epochs"] += 1
    cfg["settings"]["seeds"] = [7]
    (other / "config.resolved.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"another config.*settings\.seeds.*settings\.train\.epochs"):
        check_run(other, PAPER, force=True)
    with pytest.raises(ConfigError, match="no finished run"):
        check_run(tmp_path / "nothing" / "cpu", PAPER)


def test_the_fingerprints_are_the_cell_keys_own():
    from unlearnlib.harness.plan import EVAL_CODE, code_fingerprint, method_code
    from unlearnlib.harness.reference import fingerprints

    assert R.code_fingerprint(list(EVAL_CODE)) == code_fingerprint(*EVAL_CODE)
    fp = fingerprints(["lightweight", "retrain"])
    assert fp["method lightweight"]["sha"] == method_code("lightweight")
    assert fp["method retrain"]["sha"] == method_code("retrain")
    assert R.code_fingerprint(fp["method lightweight"]["files"]) == method_code("lightweight")


def test_check_reference_detects_a_changed_config_and_changed_code(roots, tmp_path, monkeypatch):
    from unlearnlib.harness.reference import check_references

    src, ref_root = roots
    ref = make_ref(src, ref_root)
    assert R.staleness(ref, PAPER) == []  # current: nothing changed since it ran
    assert check_references([PAPER]) == [f"{PAPER} (smoke): current"]
    assert R.stale_note(PAPER, "smoke") == ""
    # the code behind a method changes (a copy of the package, one file edited)
    pkg = tmp_path / "pkg"
    shutil.copytree(R.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(R, "PACKAGE", pkg)
    assert R.staleness(ref, PAPER) == []
    fps = json.loads((ref / "fingerprints.json").read_text())
    method_file = fps["method lightweight"]["files"][-1]
    (pkg / method_file).write_text((pkg / method_file).read_text() + "\n# edited\n")
    changes = R.staleness(ref, PAPER)
    assert changes and all(c.startswith("code method lightweight") for c in changes), changes
    # the paper YAML changes: another profile's block is not this run's config
    yml = pkg / "papers" / f"{PAPER}.yaml"
    raw = yaml.safe_load(yml.read_text())
    raw["profiles"]["cpu"]["seeds"] = [7, 8, 9]
    raw.setdefault("profile_labels", {})["cpu"] = "another label"
    yml.write_text(yaml.safe_dump(raw))
    assert not [c for c in R.staleness(ref, PAPER) if c.startswith("config")]
    raw["profiles"]["smoke"].setdefault("train", {})["epochs"] = 9
    yml.write_text(yaml.safe_dump(raw))
    changes = R.staleness(ref, PAPER)
    assert any(c.startswith("config settings.train.epochs:") and c.endswith("-> 9") for c in changes), changes
    lines = check_references([PAPER])
    assert lines[0].startswith(f"{PAPER} (smoke): STALE") and any("settings.train.epochs" in x for x in lines)
    assert "This reference is stale" in R.stale_note(PAPER, "smoke")
    assert "stale" in R.choose_source(PAPER, "smoke", "reference").note()


# ----------------------------------------------------------------------------------------------
# a chapter rendered from a reference: training raises, no method module is imported

GUARD = '''\
import sys
import unlearnlib
import unlearnlib.train


class _NoTraining(Exception):
    pass


def _boom(*args, **kwargs):
    raise _NoTraining("training was called while rendering from a reference")


unlearnlib.train.fit = _boom
unlearnlib.run_paper = _boom


class _Forbid:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("unlearnlib.methods", "unlearnlib.harness")):
            raise ImportError(f"{name} imported while rendering from a reference")
        return None


sys.meta_path.insert(0, _Forbid())
'''
CHECK = '''\
loaded = sorted(m for m in sys.modules if m.startswith(("unlearnlib.methods", "unlearnlib.harness")))
assert loaded == [], loaded
print("RENDERED-WITHOUT-METHODS")
'''


@pytest.mark.parametrize("source", ["reference", "auto"])
def test_a_chapter_renders_from_a_stored_run_without_training(source, roots, tmp_path, monkeypatch):
    """source=reference: ours (no local run exists); source=auto with your finished run: yours, loaded as it is,
    with the Reproduction section against the reference (made from that very run: identical)."""
    import nbformat
    import papermill as pm

    src, ref_root = roots
    make_ref(src, ref_root)
    if source == "reference":
        monkeypatch.setenv("UNLEARNLIB_RESULTS", str(tmp_path / "no-local-runs"))  # the reference is all there is
    monkeypatch.setenv("UNLEARNLIB_CACHE", str(tmp_path / "no-cache"))
    nb = nbformat.read(REPO_ROOT / "notebooks" / f"{PAPER}.ipynb", as_version=4)
    assert "source = " in nb.cells[1].source  # the parameters cell
    nb.cells.insert(2, nbformat.v4.new_code_cell(GUARD))
    nb.cells.append(nbformat.v4.new_code_cell(CHECK))
    guarded = tmp_path / "guarded.ipynb"
    nbformat.write(nb, guarded)
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(guarded), str(out), parameters={"paper": PAPER, "profile": "smoke", "source": source},
                        progress_bar=False, cwd=str(REPO_ROOT), kernel_name="python3")
    done = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in done.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
    assert "RENDERED-WITHOUT-METHODS" in text
    assert "Claims, verdicts from this run" in text  # the claims table rendered
    assert "/usr/share/datasets" not in text and str(tmp_path) not in text  # no path of this machine
    if source == "reference":
        assert "numbers: reference run, " in text  # the banner says where the numbers come from
        assert "These numbers are our reference run" in text  # the reproduction section
    else:
        assert "numbers: your run ($UNLEARNLIB_RESULTS/lightweight_unlearning/smoke)" in text
        assert "Verdict: identical" in text


def test_the_guard_bites(roots, tmp_path, monkeypatch):
    """The same notebook with source=local must hit the raising training entry: the render test can fail."""
    import nbformat
    import papermill as pm

    nb = nbformat.read(REPO_ROOT / "notebooks" / f"{PAPER}.ipynb", as_version=4)
    nb.cells.insert(2, nbformat.v4.new_code_cell(GUARD))
    guarded = tmp_path / "guarded.ipynb"
    nbformat.write(nb, guarded)
    with pytest.raises(pm.PapermillExecutionError, match="_NoTraining|ImportError"):
        pm.execute_notebook(str(guarded), str(tmp_path / "out.ipynb"),
                            parameters={"paper": PAPER, "profile": "smoke", "source": "local"},
                            progress_bar=False, cwd=str(REPO_ROOT), kernel_name="python3")


def test_make_reference_copies_a_checked_run_and_refuses_code_changed_since_its_commit(roots, tmp_path, monkeypatch):
    from unlearnlib.harness import reference as H

    src, ref_root = roots
    results = tmp_path / "results"
    run = cpu_copy(src, results / PAPER / "cpu", git_commit="0" * 40)
    monkeypatch.setenv("UNLEARNLIB_RESULTS", str(results))
    with pytest.raises(ConfigError, match="code behind its cells changed since the run's commit 0000000"):
        H.make_reference(PAPER, "cpu", say=lambda s: None)  # a commit this repository does not have
    assert not (ref_root / PAPER / "cpu").exists()
    assert H._changed_since("0" * 40, ["train.py"])[0].startswith("(commit 0000000 is not in this repository")
    monkeypatch.setattr(H, "_changed_since", lambda commit, files: [])  # the code is the run's
    dest = H.make_reference(PAPER, "cpu", say=lambda s: None)
    assert dest == ref_root / PAPER / "cpu"
    check_reference_folder(dest)
    assert json.loads((dest / "reference.json").read_text())["git_commit"] == "0" * 40
    assert Run.load(dest).metrics.equals(Run.load(run).metrics)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_make_targets_pass_their_parameters_as_text_to_the_cli(tmp_path):
    import subprocess

    def dry(*args):
        done = subprocess.run(["make", "-n", *args, f"VENV={tmp_path}/venv"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=60)
        return done.stdout

    out = dry("reference", "PAPER=unsir`touch x`", "FORCE=1")
    assert '-m unlearnlib.cli reference --paper="$PAPER" --profile="$PROFILE" --force' in out and "touch x" not in out
    assert "--force" not in dry("reference", "PAPER=unsir")
    assert '-m unlearnlib.cli book --source="$SOURCE"' in dry("book", "SOURCE=reference")
    assert '-m unlearnlib.cli check-reference --paper="${PAPER:-all}"' in dry("check-reference")
    assert "-m unlearnlib.cli publish --source=reference" in dry("publish")


def test_the_reference_line_counts_threads_per_worker_for_a_ray_run():
    from types import SimpleNamespace

    import unlearnlib.results.reference as R

    run = SimpleNamespace(profile="cpu", env={"created": "2026-12-05T08:28:14+00:00", "git_commit": "5758454d0",
                                                "git_dirty": False, "cpu_model": "AMD EPYC", "cpu_threads": [2],
                                                "executor": "local executor"})
    assert R.reference_line(run) == "reference run, 2026-12-05, commit 5758454, AMD EPYC, 2 threads, profile cpu"
    run.env.update(cpu_threads=[1], executor="ray executor (local instance, 2 worker(s))", git_dirty=True)
    assert R.reference_line(run) == ("reference run, 2026-12-05, commit 5758454 (dirty tree), AMD EPYC, 1 thread per "
                                     "worker, ray executor (local instance, 2 worker(s)), profile cpu")
