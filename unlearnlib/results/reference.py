"""Reference runs: the tidy files of our finished runs, committed under ``reference/<paper>/<profile>/``.

A reference folder holds what the reading side needs and nothing else: ``metrics``, ``timings``, ``traces``,
``cells``, ``ensemble``/``ensemble_models`` and any other table the run wrote (tuning files), each as ``.csv.gz``
(gzip with a zero time stamp: the same run gives the same bytes, so a new reference is a clean git diff), and
``env.json``, ``config.resolved.yaml``, ``reference.json`` (where and when it was made, the run's wall time) and
``fingerprints.json`` (the code fingerprints its cells were computed with). No checkpoints, no logits, no splits.

This module reads them: where a chapter's numbers come from (:func:`choose_source`: ``auto`` | ``local`` |
``reference``), the provenance line of its banner, and whether the reference is stale (:func:`staleness`: the paper
YAML's resolved config or the code behind the cells changed since it ran). It imports no method, config or harness
module (tests/test_layers.py): rendering a chapter from a reference trains nothing and loads no method.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..paths import REPO_ROOT, reference_root, results_root, shown
from ..schema import ConfigError, from_dict, read_yaml, to_dict
from .run import Run

SOURCES = ("auto", "local", "reference")
# tables a run writes (harness/report.py); any other *.csv of the run (tuning, ...) is kept too
TIDY_TABLES = ("metrics", "timings", "traces", "cells", "ensemble", "ensemble_models")
KEPT_FILES = ("env.json", "config.resolved.yaml")
REFERENCE_INFO = "reference.json"
FINGERPRINTS = "fingerprints.json"
# fields every reference's env.json carries (the banner and the reproduction section read them)
ENV_FIELDS = ("created", "profile", "seeds", "device", "device_name", "cpu_model", "python", "torch", "git_commit",
              "git_dirty", "cpu_threads", "wall_s")
# the order in which `make book` looks for a run of a paper: a local run of a real profile first (yours), then our
# reference, then a local smoke run (a pipeline check, never shown over a reference)
BOOK_PROFILES = ("paper", "fast", "cpu", "scale", "upstream")
PACKAGE = REPO_ROOT / "unlearnlib"


def reference_dir(paper: str, profile: str) -> Path:
    return reference_root() / paper / profile


def has_run(path: Path) -> bool:
    """Whether ``path`` holds a finished run (its metrics table, plain or compressed)."""
    return (path / "metrics.csv").exists() or (path / "metrics.csv.gz").exists()


def reference_profiles(paper: str) -> list[str]:
    """The profiles with a reference run of ``paper``."""
    root = reference_root() / paper
    return sorted(p.name for p in root.iterdir() if has_run(p)) if root.is_dir() else []


def load_reference(paper: str, profile: str) -> Run:
    path = reference_dir(paper, profile)
    if not has_run(path):
        have = reference_profiles(paper)
        raise ConfigError(f"no reference run of {paper} in the {profile} profile ({shown(path)}); "
                          + (f"references exist for: {', '.join(have)}" if have else
                             f"none exists for {paper}: make reproduce PAPER={paper}"))
    return Run.load(path)


def reference_info(path: Path) -> dict:
    f = Path(path) / REFERENCE_INFO
    return json.loads(f.read_text()) if f.exists() else {}


# ----------------------------------------------------------------------------------------------
# where a chapter's numbers come from


@dataclass
class Source:
    """Where a chapter's numbers come from: ``compute`` (your run, brought up to date by ``run_paper``: finished cells
    are reused), ``local`` (your finished run, loaded as it is) or ``reference`` (ours, committed)."""

    paper: str
    profile: str
    kind: str  # compute | local | reference
    path: Path | None = None
    _run: Run | None = None

    @property
    def stored(self) -> bool:
        """True when the numbers are read from a folder (nothing is computed, no method is imported)."""
        return self.kind != "compute"

    def load(self) -> Run:
        if not self.stored:
            raise RuntimeError(f"{self.paper} ({self.profile}): this source computes its run (run_paper), it has "
                               f"nothing stored to load")
        if self._run is None:
            self._run = Run.load(self.path)
        return self._run

    @property
    def config(self):
        """The stored run's resolved config (a PaperConfig read from its folder)."""
        return self.load().config

    def provenance(self) -> str:
        """The banner's last line: where the numbers come from."""
        if self.kind == "reference":
            return "numbers: " + reference_line(self.load())
        where = shown(self.path or results_root() / self.paper / self.profile)
        return f"numbers: your run ({where})"

    def banner(self, cfg: Any, device: str = "auto") -> str:
        from .page import banner, wrap_lines

        dev = self.load().env.get("device", device) if self.stored else device
        return f"{banner(cfg, dev)}\n{wrap_lines(self.provenance())}"

    def note(self) -> str:
        """Markdown for the chapter's head: the stale notice of a reference (empty when it is current)."""
        if self.kind != "reference":
            return ""
        return stale_note(self.paper, self.profile)


def choose_source(paper: str, profile: str, source: str = "auto") -> Source:
    """``local``: your run (computed where missing); ``reference``: ours; ``auto``: your finished run when it exists,
    else ours; neither: one error saying how to make one."""
    if source not in SOURCES:
        raise ConfigError(f"source: {source!r} is not a source of numbers; valid: {', '.join(SOURCES)}")
    local = results_root() / paper / profile
    if source == "local":
        return Source(paper, profile, "compute", local)
    if source == "auto" and has_run(local):
        return Source(paper, profile, "local", local)
    ref = reference_dir(paper, profile)
    if has_run(ref):
        return Source(paper, profile, "reference", ref)
    if source == "reference":
        load_reference(paper, profile)  # raises, naming the profiles that have one
    raise ConfigError(f"no run yet of {paper} in the {profile} profile (neither {shown(local)} nor "
                      f"{shown(ref)}): make reproduce PAPER={paper} PROFILE={profile}")


def book_choice(paper: str, source: str = "auto") -> tuple[str, str] | None:
    """(profile, source) a chapter is rendered with by ``make book``, or None (no run yet). ``auto``: your run of a
    real profile (paper, fast, cpu, ...), else our reference (its profiles in that order), else your smoke run;
    ``reference``: ours only; ``local``: yours only."""
    local = [p for p in (*BOOK_PROFILES, "smoke") if has_run(results_root() / paper / p)]
    refs = sorted(reference_profiles(paper), key=lambda p: (BOOK_PROFILES + ("smoke",) + (p,)).index(p))
    if source == "reference":
        return (refs[0], "reference") if refs else None
    if source == "local":
        return (local[0], "auto") if local else None
    real = [p for p in local if p != "smoke"]
    if real:
        return real[0], "auto"
    if refs:
        return refs[0], "reference"
    return (local[0], "auto") if local else None


def reference_line(run: Run) -> str:
    """"reference run, <date>, commit <sha>, <CPU model>, <threads> threads, profile <profile>"."""
    env = run.env
    threads = ", ".join(str(t) for t in env.get("cpu_threads", [])) or "?"
    where = env.get("cpu_model") or env.get("device_name") or "unknown CPU"
    if str(env.get("device", "cpu")).startswith("cuda"):
        where = f"{env.get('device_name')} (GPU), {env.get('cpu_model') or 'CPU unknown'}"
    commit = (env.get("git_commit") or "unknown")[:7] + (" (dirty tree)" if env.get("git_dirty") else "")
    threads = f"{threads} thread{'' if threads == '1' else 's'}"
    executor = str(env.get("executor", ""))
    if executor.startswith("ray"):  # a Ray run's threads are per worker: say how many workers
        threads = f"{threads} per worker, {executor}"
    return (f"reference run, {str(env.get('created', ''))[:10]}, commit {commit}, {where}, {threads}, "
            f"profile {run.profile}")


# ----------------------------------------------------------------------------------------------
# staleness: the resolved config and the code fingerprints, now and when the reference ran


def code_fingerprint(files: list[str]) -> str:
    """sha256 over source files of the package, as harness/plan.py's ``code_fingerprint`` computes it (a folder
    stands for every .py file below it); a file that no longer exists counts as changed."""
    h = hashlib.sha256()
    for rel in files:
        root = PACKAGE / rel
        if not root.exists():
            return "missing"
        for p in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def yaml_config(paper: str, profile: str) -> dict:
    """The paper YAML with ``profile`` applied, as a plain dict (what ``config.load_paper`` resolves, without its
    registry checks: this module loads no method)."""
    from ..paper import PaperConfig, _merge

    path = PACKAGE / "papers" / f"{paper}.yaml"
    if not path.exists():
        raise ConfigError(f"no paper YAML for {paper!r} ({shown(path)})")
    raw = read_yaml(path.read_text(), path.name)
    over = (raw.get("profiles") or {}).get(profile)
    if profile not in (raw.get("profiles") or {}):
        raise ConfigError(f"{paper}: the YAML has no profile {profile!r}")
    merged = dict(raw, settings=_merge(raw["settings"], over or {}, "settings"), profile=profile)
    return _plain(to_dict(from_dict(PaperConfig, merged, paper)))


def _plain(d: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(d, sort_keys=True))


RUN_ONLY_KEYS = ("resolved_methods", "resolved_methods_by_dataset", "registered_scenarios")


def run_config(path: Path) -> dict:
    """A run folder's config.resolved.yaml without what only a run records (resolved options, registrations)."""
    raw = yaml.safe_load((Path(path) / "config.resolved.yaml").read_text())
    for k in RUN_ONLY_KEYS:
        raw.pop(k, None)
    return _plain(raw)


def config_changes(stored: dict, current: dict, where: str = "") -> list[str]:
    """Dotted keys whose values differ, ``key: stored -> current`` (an ensemble scenario the run chose itself, where
    the YAML left it empty, is not a change)."""
    out = []
    for k in sorted(set(stored) | set(current), key=str):
        a, b = stored.get(k, "<absent>"), current.get(k, "<absent>")
        key = f"{where}.{k}" if where else str(k)
        if key == "settings.ensemble.scenario" and b == "":
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, key)
        elif a != b:
            out.append(f"{key}: {_short(a)} -> {_short(b)}")
    return out


def _short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 60 else s[:57] + "..."


def staleness(path: Path, paper: str | None = None) -> list[str]:
    """What changed since the run in ``path`` (a reference folder): the resolved config (against the paper YAML)
    and every code fingerprint its cells were computed with (``fingerprints.json``). Empty: current."""
    path = Path(path)
    paper = paper or path.parent.name
    profile = path.name
    out = [f"config {c}" for c in config_changes(run_config(path), yaml_config(paper, profile))
           if not _other_profile(c.split(":", 1)[0], profile)]
    fp = path / FINGERPRINTS
    if not fp.exists():
        return [*out, f"{FINGERPRINTS} is missing: the code the reference ran with is unknown"]
    for name, entry in json.loads(fp.read_text()).items():
        now = code_fingerprint(entry["files"])
        if now != entry["sha"]:
            out.append(f"code {name}: {entry['sha']} -> {now} (files: {', '.join(entry['files'])})")
    return out


def _other_profile(key: str, profile: str) -> bool:
    """Whether a changed key is another profile's block or label (``profiles.<p>...``, ``profile_labels.<p>``): not
    this run's config, whose resolved settings are compared whole."""
    parts = key.split(".")
    return parts[0] in ("profiles", "profile_labels") and len(parts) > 1 and parts[1] != profile


def stale_note(paper: str, profile: str) -> str:
    changes = staleness(reference_dir(paper, profile), paper)
    if not changes:
        return ""
    shown_changes = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    return (f"> **This reference is stale.** Since it ran, {len(changes)} thing(s) changed that its numbers depend "
            f"on: {shown_changes}. `make check-reference` lists them; `make reproduce PAPER={paper} "
            f"PROFILE={profile}` computes current numbers.")


__all__ = ["SOURCES", "Source", "choose_source", "book_choice", "load_reference", "reference_dir",
           "reference_profiles", "reference_line", "staleness", "stale_note", "config_changes", "yaml_config",
           "run_config", "code_fingerprint", "has_run", "ENV_FIELDS", "TIDY_TABLES"]
