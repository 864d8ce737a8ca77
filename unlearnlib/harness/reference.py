"""``make reference``: copy a finished local run's tidy files into ``reference/<paper>/<profile>/`` (the reading side,
:mod:`unlearnlib.results.reference`, documents the folder), with the code fingerprints its cells were computed with.

Refused, each with one :class:`ConfigError`: no finished run; a ``smoke`` run (a pipeline check, not a result); a
run made from a work tree with uncommitted changes, or whose commit is unknown (unless ``force``); a run whose
resolved config differs from the paper YAML's (seeds included); a run whose fingerprinted code changed since its
commit (the reference would claim fingerprints it was not computed with).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import inspect
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pandas as pd

from ..paths import REPO_ROOT, reference_root, results_root, shown
from ..results.reference import (
    FINGERPRINTS,
    REFERENCE_INFO,
    config_changes,
    has_run,
    run_config,
    yaml_config,
)
from ..schema import ConfigError
from .plan import EVAL_CODE, PACKAGE, code_fingerprint

SIZE_BUDGET = 15 * 2**20  # every reference folder together (tests/test_reference.py checks it)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere ``platform.processor()``), e.g. "AMD EPYC 7B13"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprints(methods: list[str]) -> dict:
    """name -> {files, sha}: the evaluation code (an original's evaluation cell) and each method's code (its
    method cells), as the cell keys hash them (harness/plan.py)."""
    from ..methods import method_spec

    out = {"evaluation": {"files": list(EVAL_CODE), "sha": code_fingerprint(*EVAL_CODE)}}
    for m in methods:
        src = Path(inspect.getsourcefile(inspect.unwrap(method_spec(m).fn))).resolve()
        files = [*EVAL_CODE, "methods/__init__.py", src.relative_to(PACKAGE).as_posix()]
        out[f"method {m}"] = {"files": files, "sha": code_fingerprint(*files)}
    return out


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)


def _changed_since(commit: str, files: list[str]) -> list[str]:
    """The fingerprinted files that differ between ``commit`` and the work tree (None-safe: an unknown commit is
    reported as such)."""
    paths = sorted({f"unlearnlib/{f}" for f in files})
    out = _git("diff", "--name-only", commit, "--", *paths)
    if out.returncode != 0:
        return [f"(commit {commit[:7]} is not in this repository: {out.stderr.strip()[:120]})"]
    return [line for line in out.stdout.splitlines() if line.strip()]


def check_run(path: Path, paper: str, force: bool = False) -> dict:
    """Refuse what must not become a reference (see the module's doc); returns the run's env."""
    where = shown(path)
    if not has_run(path):
        raise ConfigError(f"{paper}: no finished run at {where}: run `make reproduce PAPER={paper} "
                          f"PROFILE={path.name}` first")
    env = json.loads((path / "env.json").read_text())
    profile = env.get("profile", path.name)
    if profile == "smoke":
        raise ConfigError(f"{paper}: {where} is a smoke run, a pipeline check and not a result; a reference comes "
                          f"from a cpu, fast or paper run")
    if not force and env.get("git_dirty") is not False:
        state = "had uncommitted changes" if env.get("git_dirty") else "is unknown (not a git checkout?)"
        raise ConfigError(f"{paper}: the work tree of the run at {where} {state} (commit "
                          f"{str(env.get('git_commit'))[:7]}): commit, rerun, then `make reference`; or FORCE=1")
    if not force and "wall_s" not in env:
        raise ConfigError(f"{paper}: the run at {where} did not record its wall time (a run from before env.json "
                          f"had wall_s): rerun `make reproduce PAPER={paper} PROFILE={profile}`; or FORCE=1")
    changes = config_changes(run_config(path), yaml_config(paper, profile))
    if changes:
        raise ConfigError(f"{paper}: the run at {where} was made with another config than "
                          f"unlearnlib/papers/{paper}.yaml's {profile} profile: " + "; ".join(changes[:8])
                          + ("; ..." if len(changes) > 8 else "") + f"; rerun: make reproduce PAPER={paper} "
                          f"PROFILE={profile}")
    return env


def make_reference(paper: str, profile: str, force: bool = False, say=print) -> Path:
    """Copy ``results/<paper>/<profile>/`` into ``reference/<paper>/<profile>/`` (replacing it); returns it."""
    import yaml

    src = results_root() / paper / profile
    env = check_run(src, paper, force)
    methods = list(yaml.safe_load((src / "config.resolved.yaml").read_text())["settings"]["methods"])
    fps = fingerprints(methods)
    if not force:
        files = sorted({f for e in fps.values() for f in e["files"]})
        moved = _changed_since(env["git_commit"], files) if env.get("git_commit") else ["(no commit recorded)"]
        if moved:
            raise ConfigError(f"{paper}: the code behind its cells changed since the run's commit "
                              f"{str(env.get('git_commit'))[:7]} ({', '.join(moved[:6])}): rerun `make reproduce "
                              f"PAPER={paper} PROFILE={profile}` first; or FORCE=1")
    dest = copy_tidy(src, reference_root() / paper / profile, env, fps, _info(src, env, paper, profile, force))
    total = sum(f.stat().st_size for f in reference_root().rglob("*") if f.is_file())
    say(f"== {paper} ({profile}): {shown(src)} -> {shown(dest)}, "
        f"{sum(f.stat().st_size for f in dest.iterdir()) / 1e6:.2f} MB; every reference together "
        f"{total / 1e6:.2f} MB (budget {SIZE_BUDGET / 2**20:.0f} MiB)")
    if total > SIZE_BUDGET:
        say(f"warning: the reference folders exceed the {SIZE_BUDGET / 2**20:.0f} MiB budget "
            f"(tests/test_reference.py fails)")
    return dest


def copy_tidy(src: Path, dest: Path, env: dict, fps: dict, info: dict) -> Path:
    """Write the tidy files of the run in ``src`` into ``dest`` (replaced as a whole, via a temporary folder): every
    table as ``.csv.gz`` (gzip, time stamp 0: the same run gives the same bytes), ``config.resolved.yaml``, ``env.json``
    (with the CPU model), the fingerprints and ``reference.json``. No checks: :func:`make_reference` checks first."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f in sorted(src.glob("*.csv")):
            gz = tmp / f"{f.name}.gz"
            with open(f, "rb") as fin, open(gz, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                                            mtime=0, compresslevel=9) as out:
                shutil.copyfileobj(fin, out)
        shutil.copy2(src / "config.resolved.yaml", tmp / "config.resolved.yaml")
        env = dict(env)
        if not env.get("cpu_model"):  # a run from before env.json recorded it: this machine made it
            env["cpu_model"] = cpu_model()
            env["cpu_model_from"] = "make reference (the machine that copied the run; the run did not record it)"
        env.setdefault("cpu_threads", [])
        (tmp / "env.json").write_text(json.dumps(env, indent=1) + "\n")
        (tmp / FINGERPRINTS).write_text(json.dumps(fps, indent=1) + "\n")
        (tmp / REFERENCE_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def copy_benchmarks(say=print) -> Path:
    """``results/benchmarks/**/*.csv`` (what ``make benchmarks`` measured) -> ``reference/benchmarks/`` gzipped: the
    Performance page reads them when you have measured nothing yourself."""
    src = results_root() / "benchmarks"
    files = sorted(src.rglob("*.csv")) if src.is_dir() else []
    if not files:
        raise ConfigError(f"benchmarks: no CSV under {shown(src)}: run `make benchmarks` first")
    dest = reference_root() / "benchmarks"
    tmp = dest.with_name(f".benchmarks.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for f in files:
            out = tmp / f.relative_to(src).with_name(f.name + ".gz")
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "rb") as fin, open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                                             mtime=0, compresslevel=9) as gz:
                shutil.copyfileobj(fin, gz)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"== benchmarks: {len(files)} CSV file(s) {shown(src)} -> {shown(dest)}")
    return dest


def _info(src: Path, env: dict, paper: str, profile: str, force: bool) -> dict:
    cells = pd.read_csv(src / "cells.csv") if (src / "cells.csv").exists() else None
    computed = cells[~cells.reused.astype(bool)] if cells is not None and "reused" in cells else cells
    return {"paper": paper, "profile": profile, "run_created": env.get("created"),
            "copied": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "from": shown(src), "forced": force, "git_commit": env.get("git_commit"),
            # where the run's time went: the cells it computed (reused cells: the run that computed them)
            "cells_wall_s": None if computed is None else round(float(computed.wall_s.fillna(0).sum()), 1),
            "wall_s": env.get("wall_s")}


def check_references(papers: list[str]) -> list[str]:
    """One line per reference of ``papers``: current, or what changed since it ran."""
    from ..results.reference import reference_profiles, staleness

    lines = []
    for paper in papers:
        profiles = reference_profiles(paper)
        if not profiles:
            lines.append(f"{paper}: no reference run")
        for profile in profiles:
            changes = staleness(reference_root() / paper / profile, paper)
            lines.append(f"{paper} ({profile}): " + ("current" if not changes else f"STALE, {len(changes)} "
                                                     "change(s) since it ran:"))
            lines += [f"   {c}" for c in changes]
    return lines


__all__ = ["make_reference", "copy_tidy", "copy_benchmarks", "check_run", "check_references", "fingerprints",
           "cpu_model", "SIZE_BUDGET"]
