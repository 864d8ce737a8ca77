"""Bad input gets one clear error, before anything trains or is written (reliability review D2, D5, D6, D14, D16,
D21): seeds, ranges and structure of a paper YAML, the Makefile's run parameters, clean-cache; and property-based
tests (Hypothesis) that mutate every paper YAML and every CLI parameter.

The property tests count the cases they try and what became of them; ``UNLEARNLIB_FUZZ_EXAMPLES=N`` runs N
examples per paper instead of the default (the closing note of issue 24 reports a larger run)."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnlib.config as config_mod
from unlearnlib import cli
from unlearnlib.config import SEED_MAX, ConfigError, available_papers, load_paper, parse_seeds
from unlearnlib.paths import REPO_ROOT, clean_cache

PAPER = "unsir"
PAPERS = available_papers()
FUZZ_EXAMPLES = int(os.environ.get("UNLEARNLIB_FUZZ_EXAMPLES", "40"))


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def paper_text(tmp_path, monkeypatch):
    """Write ``text`` as the paper's YAML in a tmp papers folder the loader reads."""
    d = tmp_path / "papers"
    d.mkdir()
    monkeypatch.setattr(config_mod, "PAPERS_DIR", d)

    def write(text: str, paper: str = PAPER) -> str:
        (d / f"{paper}.yaml").write_text(text)
        return paper

    return write


def _raw(paper: str = PAPER) -> dict:
    return yaml.safe_load((REPO_ROOT / "unlearnlib" / "papers" / f"{paper}.yaml").read_text())


# ----------------------------------------------------------------------------------------------
# D2: seeds


@pytest.mark.parametrize("value,why", [
    (",", "non-negative"), ("", None), ("-1", "non-negative"), ("1,1,1", "more than once"), ([0, 0], "more than once"),
    (str(2**64 - 1), "out of range"), (SEED_MAX + 1, "out of range"), ("99999999999999999999999", "out of range"),
    ([], "no seed"), ("1,,2", "non-negative"), ("１", "non-negative"),
])
def test_seeds_are_distinct_integers_in_range(value, why):
    if why is None:  # "" is the profile's seeds
        assert parse_seeds(value, [3]) == [3]
        return
    with pytest.raises(ConfigError, match=f"seeds: .*{why}"):
        parse_seeds(value, [3])


def test_the_largest_seed_is_accepted():
    assert parse_seeds(f"0,{SEED_MAX}", [1]) == [0, SEED_MAX]


@pytest.mark.parametrize("seeds,why", [([-1, 1, 2], "out of range"), ([0, 0, 0], "more than once"), ([], "no seed")])
def test_yaml_seeds_are_checked_when_the_paper_loads(paper_text, seeds, why):
    raw = _raw()
    raw["profiles"]["smoke"]["seeds"] = seeds
    paper_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"unsir\.profiles\.smoke\.seeds: .*{why}"):
        load_paper(PAPER, "smoke")


def test_a_run_with_bad_seeds_never_replaces_a_results_folder(isolated_env):
    from unlearnlib.harness import run_paper

    good = Path(isolated_env["UNLEARNLIB_RESULTS"]) / PAPER / "smoke"
    good.mkdir(parents=True)
    (good / "metrics.csv").write_text("a good run\n")
    for seeds in (",", "-1", "1,1"):
        with pytest.raises(ConfigError, match="seeds"):
            run_paper(PAPER, "smoke", seeds=seeds, progress=False)
    assert (good / "metrics.csv").read_text() == "a good run\n"
    assert _tree(Path(isolated_env["UNLEARNLIB_RESULTS"])) == ["unsir", "unsir/smoke", "unsir/smoke/metrics.csv"]
    assert _tree(Path(isolated_env["UNLEARNLIB_CACHE"])) == []


def test_a_plan_without_cells_is_refused_before_the_results_folder(isolated_env, monkeypatch):
    import unlearnlib.harness as harness

    class Empty:
        cells, seeds, methods, profile = [], [0], ["retrain"], "smoke"

    monkeypatch.setattr(harness, "build_plan", lambda *a, **k: Empty())
    with pytest.raises(ConfigError, match="no cells.*nothing was written"):
        harness.run_paper(PAPER, "smoke", progress=False)
    assert _tree(Path(isolated_env["UNLEARNLIB_RESULTS"])) == []


def test_a_plan_lists_each_cell_once(monkeypatch, fmnist_system_dir):
    """Two seeds that would give the same cells (a second line of defence behind check_seeds) compute them once."""
    import unlearnlib.harness.plan as plan_mod

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    monkeypatch.setattr(plan_mod, "parse_seeds", lambda seeds, default: [0, 0])
    plan = plan_mod.build_plan(PAPER, "smoke", methods=["retrain", "finetune"])
    keys = [c.key for c in plan.cells]
    assert len(keys) == len(set(keys)) and keys


# ----------------------------------------------------------------------------------------------
# D6: ranges, structure, duplicate keys; D21: the profile named where its override is wrong


@pytest.mark.parametrize("edit,where", [
    (lambda p: p["train"].update(epochs=0), r"train\.epochs: 0 is out of range; valid: >= 1"),
    (lambda p: p["train"].update(epochs=-3), r"train\.epochs: -3 is out of range"),
    (lambda p: p["train"].update(batch_size=0), r"train\.batch_size: 0 is out of range; valid: >= 1"),
    (lambda p: p["train"].update(lr=-1.0), r"train\.lr: -1\.0 is out of range; valid: > 0"),
    (lambda p: p["train"].update(lr=float("nan")), r"train\.lr: expected a finite number"),
    (lambda p: p["models"].update({next(iter(p["models"])): {"width": 0}}), r"width: 0 is out of range"),
    (lambda p: p["models"].update(vit={"width": 8, "depth": 0}), r"depth: 0 is out of range; valid: >= 1 \(or null\)"),
    (lambda p: p.update(test_subset=-5), r"test_subset: -5 is out of range; valid: >= 1 \(or null\)"),
    (lambda p: p.update(eval_batch_size=0), r"eval_batch_size: 0 is out of range"),
    (lambda p: p.setdefault("split", {}).update(forget=[[42]]), r"split: scenario 0 \(class\) names class 42"),
    (lambda p: p.setdefault("split", {}).update(forget=[[1, 1]]), r"forget\[0\]: .*twice"),
    (lambda p: p.setdefault("split", {}).update(forget=[list(range(10))]), r"forgets every class"),
    (lambda p: p.setdefault("timing", {}).update(repeats=0), r"timing\.repeats: 0 is out of range"),
    (lambda p: p.setdefault("metrics", {}).update(mia_splits=1), r"metrics\.mia_splits: 1 is out of range"),
    (lambda p: p.setdefault("methods", {}).update(fisher={"alpha": -1.0}),
     r"methods\.fisher: fisher: alpha must be >= 0"),
    (lambda p: p.setdefault("methods", {}).update(unsir={"noise_steps": -1}), r"methods\.unsir: unsir noise_steps"),
])
def test_out_of_range_values_fail_when_the_yaml_loads(paper_text, isolated_env, edit, where):
    raw = _raw()
    edit(raw["profiles"]["cpu"])
    paper_text(yaml.safe_dump(raw))
    load_paper(PAPER, "smoke")  # the other profiles are unaffected
    with pytest.raises(ConfigError, match=rf"^unsir\.profiles\.cpu\.(settings\.)?.*{where}"):
        load_paper(PAPER, "cpu")


def test_an_error_in_the_papers_own_settings_names_settings(paper_text):
    raw = _raw()
    raw["settings"]["train"]["momentum"] = 1.5
    assert "momentum" not in raw["profiles"]["cpu"]["train"]  # the profile overrides other fields of train
    paper_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"^unsir\.settings\.train\.momentum: 1\.5 is out of range"):
        load_paper(PAPER, "cpu")


@pytest.mark.parametrize("text,match", [
    ("id: unsir\ntitle: [unclosed\n", r"unsir\.yaml:\d+:\d+: not valid YAML"),
    ("", r"unsir\.yaml: expected a mapping .* got NoneType"),
    ("- id: unsir\n- title: x\n", r"unsir\.yaml: expected a mapping .* got list"),
    ("id: unsir\nx: !!python/object/apply:os.system ['touch pwned']\n", r"unsir\.yaml:2:\d+: not valid YAML"),
    ("id: unsir\nprofiles: [paper, cpu, smoke]\n", r"unsir\.yaml: profiles: expected a mapping"),
])
def test_a_broken_yaml_is_one_config_error(paper_text, tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    paper_text(text)
    with pytest.raises(ConfigError, match=match):
        load_paper(PAPER, "smoke")
    assert not (tmp_path / "pwned").exists()


def test_a_duplicate_key_is_refused_with_both_lines(paper_text):
    text = (REPO_ROOT / "unlearnlib" / "papers" / f"{PAPER}.yaml").read_text()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("title:"))
    paper_text(text + f"\n{lines[first]}\n")
    with pytest.raises(ConfigError, match=rf"duplicate key 'title' \(first given on line {first + 1};"):
        load_paper(PAPER, "smoke")


def test_a_duplicate_key_inside_a_profile_is_refused(paper_text):
    text = (REPO_ROOT / "unlearnlib" / "papers" / f"{PAPER}.yaml").read_text()
    assert "\n  smoke:\n" in text
    # a second `methods:` block in the smoke profile (PyYAML would keep only the last)
    text = text.replace("\n  smoke:\n", "\n  smoke:\n    methods: {retrain: {}}\n    methods: {finetune: {}}\n", 1)
    paper_text(text)
    with pytest.raises(ConfigError, match="duplicate key 'methods'"):
        load_paper(PAPER, "smoke")


@pytest.mark.parametrize("argv", [["reproduce", "--paper", "unsir", "--threads"], ["reproduce", "--colour"], ["nope"],
                                  []])
def test_a_usage_error_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: unlearnlib") and err.count("\n") == 1, err


@pytest.mark.parametrize("argv,names", [(["ladder", "--executor", "slurm"], "EXECUTOR: 'slurm'"),
                                        (["ladder", "--workers", "two"], "WORKERS: 'two'")])
def test_make_ladder_checks_its_parameters_before_any_work(capsys, argv, names):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and names in err and err.count("\n") == 1, err


def test_the_cli_prints_one_error_line_for_a_broken_yaml(paper_text, capsys, monkeypatch):
    monkeypatch.setattr(cli, "execute_notebook", _would_run)
    paper_text("id: unsir\ntitle: [unclosed\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["reproduce", "--paper", PAPER, "--profile", "smoke"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: unsir.yaml:") and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# D5, D14, D16: the Makefile and clean-cache


def _make(*args: str, env: dict | None = None, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("PAPER", "PROFILE", "SEEDS", "DEVICE", "EXECUTOR",
                                                              "WORKERS", "THREADS", "JOBS", "MAKEFLAGS")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=60)


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
@pytest.mark.parametrize("var,value", [
    ("PAPER", 'x"; touch {t}/pwned; "'), ("PAPER", "unsir`touch {t}/pwned`"), ("SEEDS", '1"; touch {t}/pwned; "'),
    ("PROFILE", "smoke`touch {t}/pwned`"), ("PAPER", "$$(touch {t}/pwned)"), ("JOBS", "1'; touch {t}/pwned; echo '1"),
    ("THREADS", "$(shell touch {t}/pwned)"),
])
def test_make_never_runs_a_parameters_text(tmp_path, var, value):
    """A run parameter is never pasted into shell code: not while the Makefile is parsed (JOBS), not in a recipe;
    the bad value gets one error and exit 2 (the PAPER check runs before setup)."""
    args = [f"{var}={value.format(t=tmp_path)}", *([] if var == "PAPER" else ["PAPER=unsir"])]
    if var in ("PAPER", "JOBS") or "$" in value:  # refused while the Makefile is read, or by the PAPER check
        done = _make("check-paper", *args)
        assert done.returncode == 2 and done.stderr.strip(), done
    else:  # a dry run prints the recipe: the value is a shell variable there, never pasted into the command
        done = _make("-n", "reproduce", *args)
        assert "pwned" not in done.stdout and f'"${var}"' in done.stdout, done.stdout
    assert not (tmp_path / "pwned").exists()


@needs_make
def test_make_reproduce_checks_paper_before_setup(tmp_path):
    done = _make("reproduce", "PAPER=no_such_paper", f"VENV={tmp_path}/venv")
    assert done.returncode == 2 and "error: PAPER=no_such_paper: expected one of:" in done.stderr
    assert "unsir" in done.stderr and not (tmp_path / "venv").exists()


@needs_make
def test_make_ignores_run_parameters_from_the_environment():
    done = _make("-p", "-n", "check-paper", "PAPER=unsir", env={"DEVICE": "cuda", "THREADS": "64"})
    assert "DEVICE is set in the environment and ignored here" in done.stderr
    assert "THREADS is set in the environment and ignored here" in done.stderr
    assert "\nDEVICE = auto\n" in done.stdout and "\nTHREADS = 64\n" not in done.stdout


@needs_make
@pytest.mark.parametrize("jobs,ok", [("1", True), ("12", True), ("0", False), ("01", False), ("-1", False),
                                     ("1 2", False), ("", False), ("two", False)])
def test_make_checks_jobs(jobs, ok):
    done = _make("-n", "help", f"JOBS={jobs}")
    assert (done.returncode == 0) is ok, done.stderr
    if not ok:
        assert "expected a positive integer" in done.stderr


@needs_make
def test_make_clean_cache_goes_through_the_cli():
    done = _make("-n", "clean-cache", env={"UNLEARNLIB_CACHE": "/tmp/elsewhere"})
    assert "-m unlearnlib.cli clean-cache" in done.stdout and "rm -rf" not in done.stdout


def test_clean_cache_honours_unlearnlib_cache(isolated_env, capsys):
    root = Path(isolated_env["UNLEARNLIB_CACHE"])
    for part in ("checkpoints", "cells", "logits", "locks"):
        (root / part).mkdir()
        (root / part / "k.json").write_text("{}")
    (root / "notes.txt").write_text("not the suite's")
    cli.main(["clean-cache"])
    assert _tree(root) == ["notes.txt"]
    assert "removed checkpoints/, cells/, logits/, locks/" in capsys.readouterr().out


@pytest.mark.parametrize("where", [Path("/"), Path.home(), REPO_ROOT])
def test_clean_cache_refuses_a_root_that_is_not_a_cache(where):
    with pytest.raises(ValueError, match="refusing to clean"):
        clean_cache(where)


# ----------------------------------------------------------------------------------------------
# property-based: mutated paper YAMLs


class _WouldRun(Exception):
    """Raised instead of executing a notebook: every parameter passed validation."""


def _would_run(*args, **kwargs):
    raise _WouldRun


def _paths(node, prefix=()):
    """Every (path, value) below a YAML tree (mappings and lists)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for k, v in items:
        yield prefix + (k,), v
        yield from _paths(v, prefix + (k,))


REPLACEMENTS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.integers(2**31, 2**70), st.floats(allow_nan=True),
    st.text(max_size=6), st.lists(st.integers(-2, 12), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                                    st.integers(), max_size=2))
MUTATIONS = ("delete", "replace", "wrap_list", "wrap_dict", "duplicate_line")


def _mutate(raw: dict, data) -> str:
    """One mutation of the paper's YAML, returned as text."""
    raw = copy.deepcopy(raw)
    paths = list(_paths(raw))
    path, _ = data.draw(st.sampled_from(paths), label="path")
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    if kind == "duplicate_line":
        lines = yaml.safe_dump(raw, sort_keys=False).splitlines()
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        return "\n".join(lines[:i + 1] + [lines[i]] + lines[i + 1:]) + "\n"
    parent = raw
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if kind == "delete":
        del parent[key]
    elif kind == "replace":
        parent[key] = data.draw(REPLACEMENTS, label="value")
    elif kind == "wrap_list":
        parent[key] = [parent[key]]
    else:
        parent[key] = {"x": parent[key]}
    return yaml.safe_dump(raw, sort_keys=False)


FUZZ = Counter()


@pytest.mark.parametrize("paper", PAPERS)
def test_mutated_paper_yaml_loads_or_gives_one_config_error(paper, tmp_path_factory, isolated_env):
    """Every mutation (a key deleted, a value of another type or out of range, a line given twice, a value wrapped
    in a list or a mapping) either loads or raises ConfigError; never another exception, never a file written."""
    raw = _raw(paper)
    profiles = list(raw["profiles"])
    papers_dir = tmp_path_factory.mktemp("papers")
    outcomes = Counter()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def check(data):
        text = _mutate(raw, data)
        profile = data.draw(st.sampled_from(profiles), label="profile")
        (papers_dir / f"{paper}.yaml").write_text(text)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(config_mod, "PAPERS_DIR", papers_dir)
            try:
                load_paper(paper, profile)
                outcomes["loaded"] += 1
            except ConfigError as e:
                assert str(e).strip() and "Traceback" not in str(e)
                outcomes["ConfigError"] += 1

    check()
    FUZZ.update({f"{paper}:{k}": v for k, v in outcomes.items()})
    print(f"{paper}: {sum(outcomes.values())} mutated YAMLs, {dict(outcomes)}")
    assert outcomes["ConfigError"] > 0  # the mutations do reach the checks
    for var in ("UNLEARNLIB_RESULTS", "UNLEARNLIB_CACHE"):
        assert _tree(Path(isolated_env[var])) == [], var


# ----------------------------------------------------------------------------------------------
# property-based: CLI parameters


def _param(valid: list[str]):
    return st.one_of(st.sampled_from(valid), st.text(max_size=8),
                     st.sampled_from(["", "0", "-1", "1.5", "1e9", "99999999999999999999", ",", " ", "..", "/",
                                      "../../etc/passwd", "$(id)", "`id`", "a,b", "1,1", "cuda:0", "meta"]))


@settings(max_examples=3 * FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(paper=_param(PAPERS), profile=_param(["auto", "cpu", "smoke", "paper"]), seeds=_param(["", "0", "1,2"]),
       device=_param(["auto", "cpu", "cuda"]), executor=_param(["local", "ray"]), workers=_param(["", "1", "2"]),
       threads=_param(["", "1", "2"]))
def test_cli_parameters_run_or_give_one_error_line(isolated_env, paper, profile, seeds, device, executor, workers,
                                                   threads):
    """PAPER, PROFILE, SEEDS, DEVICE, EXECUTOR, WORKERS, THREADS as make passes them: either every check passes
    (the notebook would run) or exit 2 with one `error:` line; never a traceback, never a file written."""
    err = io.StringIO()
    argv = ["reproduce", f"--paper={paper}", f"--profile={profile}", f"--seeds={seeds}", f"--device={device}",
            f"--executor={executor}", f"--workers={workers}", f"--threads={threads}", "--no-book"]  # as make passes
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        mp.setattr(cli, "execute_notebook", _would_run)
        try:
            cli.main(argv)
            raise AssertionError("reproduce returned without running")
        except _WouldRun:
            FUZZ["cli:would run"] += 1
        except SystemExit as e:
            lines = err.getvalue().splitlines()
            assert e.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, err.getvalue())
            FUZZ["cli:error"] += 1
    for var in ("UNLEARNLIB_RESULTS", "UNLEARNLIB_CACHE"):
        assert _tree(Path(isolated_env[var])) == [], var
