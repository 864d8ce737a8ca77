"""A stored run (``results/<paper>/<profile>/``): load it, and what its rows say (kind, reference, the kinds a
method runs on), derived once for a run written before they were written."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..claims import (
    per_seed,
)
from ..data.splits import SCENARIO_KINDS
from ..paper import PaperConfig
from ..paths import results_root
from ..schema import from_dict


@dataclass
class Run:
    """One stored run: ``results/<paper>/<profile>/``."""

    path: Path
    config: PaperConfig
    metrics: pd.DataFrame
    timings: pd.DataFrame
    env: dict
    traces: pd.DataFrame | None = None
    ensemble: pd.DataFrame | None = None  # per-example scores of the ensemble (ensemble.csv), when the run has one
    # method -> the scenario kinds it registered, as the run recorded it (config.resolved.yaml)
    registered: dict[str, list[str]] | None = None
    cells: pd.DataFrame | None = None  # cells.csv, when the run has one

    def __post_init__(self) -> None:
        describe_rows(self)

    @classmethod
    def load(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / "metrics.csv").exists() and not (path / "metrics.csv.gz").exists():
            raise FileNotFoundError(f"no results in {path}; run `make reproduce PAPER=...` first")
        raw = yaml.safe_load((path / "config.resolved.yaml").read_text())
        raw.pop("resolved_methods", None)
        raw.pop("resolved_methods_by_dataset", None)
        registered = raw.pop("registered_scenarios", None)
        cfg = from_dict(PaperConfig, raw, raw.get("id", "run"))

        def csv(name: str) -> pd.DataFrame | None:  # a reference run's tables are gzipped (name.csv.gz)
            f = next((f for f in (path / name, path / f"{name}.gz") if f.exists()), None)
            return pd.read_csv(f, keep_default_na=True) if f is not None else None

        return cls(path, cfg, csv("metrics.csv"), csv("timings.csv"), json.loads((path / "env.json").read_text()),
                   csv("traces.csv"), csv("ensemble.csv"), registered, csv("cells.csv"))

    @property
    def reference(self) -> str | None:
        """The run's reference method (the one that trains from scratch: retrain), by the ``reference`` column."""
        return reference_of(self.metrics)

    @property
    def kinds(self) -> list[str]:
        """The scenario kinds of the run, in table order."""
        present = set(self.metrics.kind)
        return [k for k in KIND_ORDER if k in present]

    def runs_on(self, method: str, kind: str) -> bool:
        """Whether ``method`` runs on this kind's scenarios in this run (the ``run_on`` column). A configured method
        without any row was not selected for this run (``methods=``): not left out of a kind, shown without numbers."""
        rows = self.metrics.run_on[self.metrics.method == method]
        return not len(rows) or kind in str(rows.iloc[0]).split()

    @property
    def profile(self) -> str:
        return self.config.profile

    @property
    def stamp(self) -> str:
        """Short label stamped on every table and figure."""
        return f"{self.profile} profile: {', '.join(self.datasets)}, {_models(self.config)}"

    def data_summary(self) -> pd.DataFrame:
        """The data of the run (one column per dataset), its scenarios, seeds, device and executor."""
        per = self.env.get("datasets") or {self.env.get("data", {}).get("dataset", "data"): self.env.get("data", {})}
        df = pd.DataFrame({name: {k: _no_abs_path(v) for k, v in d.items()} for name, d in per.items()})
        common = {"forget scenarios": ", ".join(sorted(set(self.metrics.scenario))),
                  "seeds": ", ".join(str(x) for x in self.env.get("seeds", [])),
                  "device": f"{self.env.get('device')} ({self.env.get('device_name')})",
                  "executor": self.env.get("executor", ""),
                  "torch threads per cell": ", ".join(str(t) for t in self.env.get("cpu_threads", []))}
        for k, v in common.items():
            df.loc[k] = [v] + [""] * (len(df.columns) - 1)
        return df

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.metrics.dataset)) or [self.config.settings.dataset]

    def per_seed(self, method: str, metric: str, model: str | None = None, dataset: str | None = None,
                 kind: str = "") -> pd.Series:
        """One value per training seed, pooled over the scenarios (of one ``kind``) as the paper pools them."""
        return per_seed(self.metrics, method, metric, model, dataset, kind)


KIND_ORDER = SCENARIO_KINDS  # the order of the results table's row groups
_LEGACY_REFERENCE = "retrain"  # runs written before the reference column and cells.csv knew it by this name only


def describe_rows(run: Run) -> None:
    """Give a run written before issue 23 (no ``kind``, ``reference``, ``run_on`` columns; no registered kinds) the
    columns the reader groups by, derived once, here: the kind from the scenario tag's prefix, the reference from
    ``cells.csv``'s ``trains_from_scratch`` (else by its name), ``run_on`` from the kinds where the method has rows,
    the registered kinds as those it ran on plus the ones ``method_scenarios`` left out."""
    if run.metrics is None or run.timings is None:
        raise FileNotFoundError(f"no results in {run.path}")
    c = run.cells
    scratch = (set(c[c.trains_from_scratch.astype(bool) & (c.kind == "method")].method)
               if c is not None and "trains_from_scratch" in c else {_LEGACY_REFERENCE})
    run.metrics, run.timings = run.metrics.copy(), run.timings.copy()  # the caller's frames stay as they were
    for df in (run.metrics, run.timings):
        if df.empty:
            for col in ("kind", "reference", "run_on"):
                if col not in df:
                    df[col] = pd.Series(dtype=bool if col == "reference" else object)
            continue
        if "kind" not in df or df.kind.isna().all():
            df["kind"] = [next((k for k in KIND_ORDER if str(t).startswith(k)), "") for t in df.scenario]
        df["kind"] = df["kind"].fillna("").astype(str)
        if "reference" not in df or df.reference.isna().all():
            ref = next((m for m in dict.fromkeys(df.method) if m in scratch), None)
            df["reference"] = df.method == ref
        df["reference"] = df["reference"].fillna(False).astype(bool)
    m = run.metrics
    if "run_on" not in m or m.run_on.isna().all():
        ran = m.groupby("method").kind.agg(lambda ks: " ".join(k for k in KIND_ORDER if k in set(ks)))
        m["run_on"] = m.method.map(ran)
        if "original" in set(m.method):
            m.loc[m.method == "original", "run_on"] = " ".join(KIND_ORDER)
    if run.registered is None:
        s = run.config.settings
        run.registered = {name: [k for k in KIND_ORDER if run.runs_on(name, k) or
                                 (name in s.method_scenarios and k not in s.method_scenarios[name])]
                          for name in s.methods}


def reference_of(metrics: pd.DataFrame) -> str | None:
    """The method the rows mark as the run's reference (``reference`` column), or None."""
    ref = metrics.method[metrics.reference.astype(bool)]
    return str(ref.iloc[0]) if len(ref) else None


def load_run(paper: str, profile: str) -> Run:
    return Run.load(results_root() / paper / profile)


def latest_runs(paper: str) -> list[Run]:
    out = []
    for prof in ("paper", "fast", "cpu", "smoke"):
        p = results_root() / paper / prof
        if (p / "metrics.csv").exists():
            try:
                out.append(Run.load(p))
            except Exception as e:  # noqa: BLE001 - an old, incompatible or damaged run must not break the book
                first = next(iter(str(e).splitlines()), "")
                logging.getLogger(__name__).warning(
                    "results/%s/%s: not loaded (%s: %s); shown as not run. Run it again: make reproduce PAPER=%s "
                    "PROFILE=%s", paper, prof, type(e).__name__, first[:160], paper, prof)
    return out




def _no_abs_path(v) -> str:
    """A data summary value as the book may print it: an absolute folder (the dataset's system copy, e.g.
    ``/usr/share/datasets/fashion-mnist``) by its last component only: no path of the building machine."""
    s = str(v)
    return f"a local copy (.../{Path(s).name})" if s.startswith("/") else s


def _models(cfg: PaperConfig) -> str:
    def sizes(v) -> str:
        extra = "".join(f", {k} {getattr(v, k)}" for k in ("depth", "heads", "patch") if getattr(v, k) is not None)
        return f"width {v.width or 'full'}{extra}"

    return ", ".join(f"{m} ({sizes(v)})" for m, v in cfg.settings.models.items())
