"""From finished cells to the run folder: the log line of each cell, the tidy tables, the files."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from ..config import SCENARIO_KINDS, runs_on, supported_kinds, to_dict
from ..data import save_splits
from ..methods import method_spec
from ..metrics import speedup
from ..paths import REPO_ROOT
from .cells import CellRunner, original_timing
from .plan import ENSEMBLE, TUNING_PART, Cell, RunPlan, reference_method, shown_method
from .reference import cpu_model
from .store import Store, read_json

# what a row is, written with it so that the reader needs no registry (issue 23): the scenario's kind (class |
# random | backdoor; "" for an original trained on clean data, shared by the scenarios), whether the method is the
# run's trains-from-scratch reference, and the scenario kinds the method runs on in this run (space-separated)
DESCRIBE_COLUMNS = ["kind", "reference", "run_on"]
METRIC_COLUMNS = ["paper", "profile", "dataset", "model", "scenario", "method", "seed", "metric", "value",
                  *DESCRIBE_COLUMNS]
TIMING_COLUMNS = [*METRIC_COLUMNS[:7], "seconds", "seconds_min", "seconds_max", "repeats", "cached", "device",
                  "threads", "speed", "gpu", *DESCRIBE_COLUMNS]
TRACE_COLUMNS = [*METRIC_COLUMNS[:7], "name", "step", "value"]
# one row per cell; "kind" is the cell's (original | evaluate | method), "scenario_kind" its scenario's
CELL_COLUMNS = ["cell", "part", "kind", "dataset", "model", "scenario", "method", "seed", "trains_from_scratch",
                "wall_s", "call_s", "reused", "scenario_kind"]


def pending_cells(plan: RunPlan, store: Store) -> tuple[list[Cell], list[Cell]]:
    """(cells still to run, cells whose outputs are stored and intact), each in plan order."""
    finished = CellRunner(plan, store, progress=False, say=store.say).finished
    done = [c for c in plan.cells if finished(c)]
    keys = {c.key for c in done}
    return [c for c in plan.cells if c.key not in keys], done


def banner_line(plan: RunPlan, executor: str) -> str:
    data = "\n".join(f"   data: {p.name} ({p.data.source}); train pool {len(p.train_pool)}, unseen {len(p.unseen)}, "
                     f"test pool {len(p.test_pool)}; scenarios: {', '.join(p.splits)}" for p in plan.parts.values())
    return (f"== {plan.cfg.title} ({plan.paper}) | {plan.cfg.profile_label} | device {plan.device} | seeds "
            f"{plan.seeds} | {executor}\n{data}\n   {len(plan.cells)} cells")


_SHOWN = {"test_forget_acc": "forget", "test_retain_acc": "retain", "forget_acc": "forget(train)",
          "retain_acc": "retain(train)", "test_acc": "test", "asr": "ASR", "mia_svc": "MIA", "mia_lr_cv": "LR-MIA"}


def cell_line(plan: RunPlan, store: Store, cell: Cell, reused: bool = False) -> str:
    """One log line: which cell, computed or reused, its time and its headline numbers."""
    n = f"[{plan.cells.index(cell) + 1}/{len(plan.cells)}]"
    ds = f"{cell.dataset} " if len(plan.parts) > 1 else ""
    head = f"   {n:9s} [{plan.profile}] {ds}{cell.model:9s} s{cell.seed} {cell.scenario:14s} {cell.method:16s}"
    tail = f" (reused from the cell store, {cell.key})" if reused else ""
    if cell.kind == "original":
        meta = read_json(store.checkpoint_path(cell.model_key).with_suffix(".json"))
        return f"{head} trained in {meta['seconds']:7.2f} s on {meta['device']}{tail}"
    rec = store.load_record(cell.key) or {}
    if cell.kind == "group":
        call = (rec.get("cell_seconds") or {}).get("call", 0.0)
        return (f"{head} {len(rec.get('trained', []))} of {len(cell.members)} members trained as one grouped "
                f"network in {call:7.2f} s{tail}")
    res = {r["metric"]: r["value"] for r in rec.get("rows", [])}
    t = res.get("unlearn_time_s")
    parts = [f"{label} {res[k]:5.1f}" for k, label in _SHOWN.items() if k in res and res[k] == res[k]][:4]
    if res.get("stopped_by_rule") == 0.0:
        parts.append("[its stopping rule never fired: it ran to its maximum]")
    if "budget_steps" in res:
        parts.append(f"{res['budget_steps']:.0f} step{'' if res['budget_steps'] == 1 else 's'}")
    if res.get("budget_changed_pct") == 0.0 and res.get("budget_buffers_changed_pct") == 0.0:
        parts.append("[a no-op: no weight changed]")
    return f"{head} {'' if t is None else f'{t:8.2f} s':11s} " + "  ".join(parts) + tail


def collect(plan: RunPlan, store: Store, reused: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                                  pd.DataFrame, pd.DataFrame]:
    """metrics, timings and traces of every cell of the plan, in plan order, with the speed-ups; the metrics of
    the ensemble's models (kept apart: another recipe, other seeds); and where the run's time went, one row per
    cell (``cells.csv``), as it was spent when the cell was computed (a reused cell keeps the times of the run that
    computed it; ``reused`` says so): ``wall_s`` the whole cell (an original: data and training; a method: its
    timed calls, repeats and warm-up included, then the evaluation), ``call_s`` the method's calls alone. Empty
    values: a cell computed before these times were recorded."""
    rows, timings, traces, ensemble, cells = [], [], [], [], []
    run = {"paper": plan.paper, "profile": plan.profile}
    reference = reference_method(plan.methods)
    for cell in plan.cells:
        scratch = cell.kind == "method" and method_spec(cell.method).trains_from_scratch
        split = plan.part(cell.part or cell.dataset).splits.get(cell.scenario)
        base = cell.method.partition("@")[0] if shown_method(cell.method) != cell.method else cell.method
        what = {"kind": split.kind if split is not None else "", "reference": cell.method == reference,
                "run_on": " ".join(k for k in SCENARIO_KINDS if cell.kind != "method" or
                                   runs_on(plan.settings, base, k))}
        validation = cell.part.startswith(TUNING_PART)  # a validation request's cell: tuning.csv reports it
        times = {"cell": cell.key, "part": cell.part or cell.dataset, "kind": cell.kind, "dataset": cell.dataset,
                 "model": cell.model, "scenario": cell.scenario, "method": cell.method, "seed": cell.run_seed,
                 "trains_from_scratch": scratch, "wall_s": None, "call_s": None, "reused": cell.key in reused,
                 "scenario_kind": what["kind"]}
        cells.append(times)
        if cell.kind == "original":
            meta = read_json(store.checkpoint_path(cell.model_key).with_suffix(".json"))
            times["wall_s"] = meta.get("wall_s")
            if cell.part != ENSEMBLE and not validation:
                timings.append({**run, **original_timing(cell, meta, cell.key in reused), **what})
            continue
        rec = store.load_record(cell.key)
        if rec is None:
            raise RuntimeError(f"cell '{cell.label}' ({cell.key}) has no intact record after the run")
        spent = rec.get("cell_seconds") or {}
        times["wall_s"], times["call_s"] = spent.get("wall"), spent.get("call")
        if cell.part == ENSEMBLE:
            ensemble += [{**run, **r, "original_seed": cell.seed, "cell": cell.key} for r in rec.get("rows", [])]
            continue
        if validation:
            continue
        rows += [{**run, **r, **what} for r in rec.get("rows", [])]
        timings += [{**run, **t, "cached": bool(t["cached"] or cell.key in reused), **what}
                    for t in rec.get("timings", [])]
        traces += [{**run, **t} for t in rec.get("traces", [])]
    rows, timings, traces = (_shown_names(x) for x in (rows, timings, traces))
    metrics = add_speedups(pd.DataFrame(rows, columns=METRIC_COLUMNS))
    return (metrics, pd.DataFrame(timings, columns=TIMING_COLUMNS), pd.DataFrame(traces, columns=TRACE_COLUMNS),
            pd.DataFrame(ensemble, columns=[*METRIC_COLUMNS[:9], "original_seed", "cell"]),
            pd.DataFrame(cells, columns=CELL_COLUMNS))


def _shown_names(rows: list[dict]) -> list[dict]:
    """Rows of a tuned variant under the name a reader sees: ``<method> (tuned)``."""
    return [{**r, "method": shown_method(r["method"])} for r in rows]


def add_speedups(metrics: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_retrain = the reference's time / method time (the reference: the method that trains from
    scratch, the ``reference`` column), in the same run, per model/scenario/seed."""
    times = metrics[metrics.metric == "unlearn_time_s"]
    keys = ["paper", "profile", "dataset", "model", "scenario", "seed"]
    retrain = times[times.reference.astype(bool)][keys + ["value"]].rename(columns={"value": "retrain_s"})
    if retrain.empty:
        return metrics
    merged = times.merge(retrain, on=keys)
    merged["value"] = [speedup(r, m) for r, m in zip(merged.retrain_s, merged.value, strict=True)]
    merged["metric"] = "speedup_vs_retrain"
    return pd.concat([metrics, merged[METRIC_COLUMNS]], ignore_index=True)


def environment(plan: RunPlan) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    import sklearn
    import torchvision

    dev = plan.device
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": plan.profile,
        "seeds": plan.seeds,
        "device": str(dev),
        "speed": plan.settings.speed,  # the run's speed switch: exact (float32) | fast (bf16, channels_last)
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
        or platform.machine(),
        "cpu_model": cpu_model(),  # the reference banner names it (platform.processor() is often just the arch)
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def write_run(folder: Path, plan: RunPlan, metrics: pd.DataFrame, timings: pd.DataFrame, traces: pd.DataFrame,
              ensemble: pd.DataFrame, cells: pd.DataFrame, scores: pd.DataFrame, executor: str = "") -> None:
    resolved = to_dict(plan.cfg)
    resolved["settings"]["seeds"] = plan.seeds
    first = plan.parts[plan.settings.dataset]
    resolved["resolved_methods"] = {k: to_dict(v) for k, v in first.method_cfgs.items()}
    # the scenario kinds each method registered (the reader says why a method was left out of a kind without
    # asking the registry, which may have changed since)
    resolved["registered_scenarios"] = {k: list(supported_kinds(k)) for k in first.method_cfgs}
    for name, part in plan.parts.items():
        if name.startswith(TUNING_PART):  # its trials' options are in tuning.csv, the chosen ones in tuned.yaml
            continue
        if part is not first:  # what differs (retrain's recipe) is visible per dataset
            resolved.setdefault("resolved_methods_by_dataset", {})[name] = {
                k: to_dict(v) for k, v in part.method_cfgs.items()}
    (folder / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, width=110))
    env = environment(plan)
    env["executor"] = executor
    env["cpu_threads"] = sorted({int(t) for t in timings.threads.dropna()}) if len(timings) else []
    summaries = {}
    for name, part in plan.parts.items():
        if name == ENSEMBLE or name.startswith(TUNING_PART):
            continue
        summaries[name] = {**part.data.summary(), "train pool": int(len(part.train_pool)),
                           "unseen (held out)": int(len(part.unseen)), "test pool": int(len(part.test_pool))}
    env["data"] = summaries[first.name]
    if len(plan.parts) > 1:
        env["datasets"] = summaries
    (folder / "env.json").write_text(json.dumps(env, indent=1))
    splits, pools = {}, {}
    for name, part in plan.parts.items():
        prefix = "" if part is first else f"{name}/"  # the first dataset keeps the single-dataset layout
        splits.update({f"{prefix}{tag}": sp for tag, sp in part.splits.items()})
        pools.update({f"{prefix}train": part.train_pool, f"{prefix}unseen": part.unseen,
                      f"{prefix}test": part.test_pool})
    save_splits(folder / "splits.npz", splits, pools)
    metrics.to_csv(folder / "metrics.csv", index=False)
    timings.to_csv(folder / "timings.csv", index=False)
    traces.to_csv(folder / "traces.csv", index=False)
    cells.to_csv(folder / "cells.csv", index=False)
    if len(ensemble):
        ensemble.to_csv(folder / "ensemble_models.csv", index=False)
        scores.to_csv(folder / "ensemble.csv", index=False)
