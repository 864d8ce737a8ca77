"""Equal-budget tuning (issue 20): one Optuna study per tuned method, scenario kind and dataset, whose trials are
cells.

Every study gets the paper's ``tuning.trials`` trials over the same shared space (the method's learning rate,
log-uniform within ``tuning.lr``; its steps or epochs from 1 up to ``tuning.budget_share`` of the original's
training) plus the method's own knobs (its ``TUNING``, declared next to its ``Config``). A trial is the method with
the trial's options on the validation request of its kind (never the reported request: another class, another
random subset, other poisoned samples), from the original of every tuning seed (never a reporting seed); its
objective is the weighted mean absolute gap to the same seed's retrain (forget, retain, test accuracy, the loss-LR
MIA; the backdoor's attack success), averaged over the tuning seeds. Lower is better.

The driver is a batched ask/tell loop: each round asks ``tuning.batch`` trials of every study (the studies run side
by side, so the executor's workers are busy), runs them as cells of the plan with the run's executor (local or
Ray), then tells their objectives. The samplers are seeded TPE, and what they are told comes from stored cells, so a
rerun asks the same trials, finds their cells stored and trains nothing new. The best trial of each study (the first
of equal ones) gives the tuned options, run on the reported requests and seeds as the row ``<method> (tuned)``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from ..config import config_hash
from ..methods import Knob, method_spec
from .plan import TUNING_PART, RunPlan, build_plan, trial_name, tuned_datasets, tuned_methods, tuned_name
from .report import pending_cells
from .store import Store

TUNING_COLUMNS = ["method", "kind", "dataset", "model", "trial", "params", "state", "objective", "seconds"]


@dataclass
class Study:
    """One study: a method on one scenario kind of one dataset (the run's first model)."""

    method: str
    kind: str
    dataset: str
    model: str
    study: Any  # optuna.Study
    space: dict[str, tuple]  # Config field -> ("float"|"int", low, high, log) or ("choice", choices)
    trials: list[tuple[Any, str, dict]] = field(default_factory=list)  # (optuna trial, cell name, options)
    told: list[dict] = field(default_factory=list)  # one row of tuning.csv per finished trial


def _field_type(config: type, name: str) -> str:
    hint = typing.get_type_hints(config).get(name)
    if hint is None:
        raise ValueError(f"{config.__module__}.Config has no field {name!r}")
    args = typing.get_args(hint) or (hint,)
    return "int" if int in args and float not in args else "float"


def budget_cap(plan: RunPlan, dataset: str, unit: str, n_forget: int = 0, batch_size: int = 1) -> int:
    """The most a trial may take: ``budget_share`` of the original's training on ``dataset``, at least 1 — in
    ``epochs``, that share of its epochs; in ``steps``, of its optimiser steps (epochs x batches of the train pool);
    in ``forget_epochs`` (passes over the ``n_forget`` forget images at ``batch_size``), as many as that share of
    its steps allows."""
    s = plan.cfg.settings_for(dataset)
    epochs, share = s.train.epochs, s.tuning.budget_share
    if unit == "epochs":
        return max(1, int(share * epochs))
    steps = share * epochs * math.ceil(len(plan.part(dataset).train_pool) / s.train.batch_size)
    if unit == "forget_epochs":
        return max(1, int(steps / max(1, math.ceil(n_forget / batch_size))))
    return max(1, int(steps))


def search_space(plan: RunPlan, method: str, dataset: str, n_forget: int = 0) -> dict[str, tuple]:
    """The method's space on ``dataset`` (``n_forget``: the validation request's forget images): the shared
    learning rate and budget, then its knobs."""
    spec, t = method_spec(method), plan.settings.tuning
    space: dict[str, tuple] = {}
    if spec.tuning.lr:
        space[spec.tuning.lr] = ("float", float(t.lr[0]), float(t.lr[1]), True)
    if spec.tuning.budget:
        batch = getattr(plan.part(dataset).method_cfgs[method], "batch_size", 1)
        cap = budget_cap(plan, dataset, spec.tuning.budget_unit, n_forget, batch)
        space[spec.tuning.budget] = ("int", 1, cap, spec.tuning.budget_unit != "epochs")
    for name, knob in spec.tuning.knobs.items():
        space[name] = knob_range(spec.Config, name, knob)
    return space


def knob_range(config: type, name: str, knob: Knob) -> tuple:
    """A knob as a search range of its Config field's type."""
    if knob.choices:
        return ("choice", tuple(knob.choices))
    kind = _field_type(config, name)
    cast = int if kind == "int" else float
    return (kind, cast(knob.low), cast(knob.high), knob.log)


def _suggest(trial, space: dict[str, tuple]) -> dict:
    out = {}
    for name, r in space.items():
        if r[0] == "choice":
            out[name] = trial.suggest_categorical(name, list(r[1]))
        elif r[0] == "int":
            out[name] = trial.suggest_int(name, r[1], r[2], log=r[3])
        else:
            out[name] = trial.suggest_float(name, r[1], r[2], log=r[3])
    return out


def make_studies(plan: RunPlan) -> list[Study]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t = plan.settings.tuning
    studies = []
    model = next(iter(plan.settings.models))
    for ds in tuned_datasets(plan):
        kinds = list(plan.part(TUNING_PART + ds).splits.values())
        for method in tuned_methods(plan):
            for split in kinds:
                if split.kind not in method_spec(method).scenarios or not _runs(plan, method, split.kind):
                    continue
                seed = int(config_hash(t.sampler_seed, method, split.kind, ds, model)[:8], 16)
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=t.startup_trials)
                study = optuna.create_study(direction="minimize", sampler=sampler)
                space = search_space(plan, method, ds, len(split.forget_train))
                studies.append(Study(method, split.kind, ds, model, study, space))
    return studies


def _runs(plan: RunPlan, method: str, kind: str) -> bool:
    from ..config import runs_on

    return runs_on(plan.settings, method, kind)


def objective(plan: RunPlan, store: Store, st: Study, name: str) -> tuple[float, dict, float, str]:
    """(objective, its parts averaged over the tuning seeds, the trial's seconds, "complete" | "fail: ...") of the
    trial ``name``, from its stored cells and the validation retrains'."""
    weights = plan.settings.tuning.weights
    ref = {c.seed: c for c in plan.cells if c.part == TUNING_PART + st.dataset and c.kind == "method"
           and method_spec(c.method).trains_from_scratch and plan.part(c.part).splits[c.scenario].kind == st.kind
           and c.model == st.model}
    parts: dict[str, list[float]] = {m: [] for m in weights}
    seconds = 0.0
    for cell in (c for c in plan.cells if c.method == name):
        rec = store.load_record(cell.key) or {}
        seconds += float((rec.get("cell_seconds") or {}).get("wall") or 0.0)
        if rec.get("failed"):
            return math.inf, {}, seconds, f"fail: {rec['failed']}"
        mine = {r["metric"]: r["value"] for r in rec.get("rows", [])}
        theirs = {r["metric"]: r["value"] for r in (store.load_record(ref[cell.seed].key) or {}).get("rows", [])}
        for m in weights:
            if m in mine and m in theirs and not (math.isnan(mine[m]) or math.isnan(theirs[m])):
                parts[m].append(abs(mine[m] - theirs[m]))
    means = {m: sum(v) / len(v) for m, v in parts.items() if v}
    total = sum(weights[m] for m in means)
    if not means or not total:
        return math.inf, means, seconds, "fail: no objective part was computed"
    return sum(weights[m] * v for m, v in means.items()) / total, means, seconds, "complete"


def _spec_tuning(studies: list[Study], tuned: dict | None = None) -> dict:
    out: dict = {}
    for st in studies:
        trials = out.setdefault(st.dataset, {"trials": {}, "tuned": {}})["trials"]
        for _, name, opts in st.trials:
            trials[name] = {"kind": st.kind, "model": st.model, "options": opts}
    for ds, names in (tuned or {}).items():
        out.setdefault(ds, {"trials": {}, "tuned": {}})["tuned"] = names
    return out


def tune(plan: RunPlan, store: Store, run_cells: Callable[[RunPlan, list], None],
         say: Callable[[str], None] = print) -> tuple[RunPlan, pd.DataFrame, dict]:
    """Run every study of ``plan``'s tuning block; returns the plan with the trials and the tuned rows, tuning.csv's
    table and tuned.yaml's contents. ``run_cells(plan, cells)`` runs cells with the run's executor."""
    t = plan.settings.tuning
    studies = make_studies(plan)
    say(f"== tuning: {len(studies)} studies (method x scenario kind x dataset), {t.trials} trials each on the "
        f"validation requests, tuning seeds {t.seeds}")
    base, t0, rounds = dict(plan.spec), time.perf_counter(), math.ceil(t.trials / t.batch)
    for r in range(rounds):
        asked = []
        for st in studies:
            for _ in range(min(t.batch, t.trials - len(st.trials))):
                trial = st.study.ask()
                name = trial_name(st.method, st.kind, st.dataset, st.model, len(st.trials))
                opts = _suggest(trial, st.space)
                st.trials.append((trial, name, opts))
                asked.append((st, trial, name, opts))
        plan = build_plan(**{**base, "tuning": _spec_tuning(studies)})
        # the validation requests' cells only: the reported ones run after the studies, so tuning's time is its own
        todo = [c for c in pending_cells(plan, store)[0] if c.part.startswith(TUNING_PART)]
        say(f"   tuning round {r + 1} of {rounds}: {len(asked)} trials, {len(todo)} cells to compute")
        run_cells(plan, todo)
        for st, trial, name, opts in asked:
            value, parts, seconds, state = objective(plan, store, st, name)
            if state == "complete":
                st.study.tell(trial, value)
            else:
                import optuna

                st.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            st.told.append({"method": st.method, "kind": st.kind, "dataset": st.dataset, "model": st.model,
                            "trial": trial.number, "params": json.dumps(opts),
                            "state": state, "objective": value, **{f"gap_{m}": v for m, v in parts.items()},
                            "seconds": seconds})
    say(f"== tuning done in {time.perf_counter() - t0:.0f} s (this run's wall time; cells stored before are reused)")
    chosen = choose(studies)
    tuned = {ds: {tuned_name(m, k): opts for (d, m, k), (opts, _) in chosen.items() if d == ds}
             for ds in tuned_datasets(plan)}
    plan = build_plan(**{**base, "tuning": _spec_tuning(studies, tuned)})
    return plan, tuning_table(studies), tuned_yaml(plan, chosen)


def choose(studies: list[Study]) -> dict[tuple[str, str, str], tuple[dict, dict]]:
    """(dataset, method, kind) -> (the options of the study's best trial, its row); a study whose every trial failed
    keeps no tuned row."""
    out = {}
    for st in studies:
        done = [r for r in st.told if r["state"] == "complete"]
        if not done:
            continue
        best = min(done, key=lambda r: r["objective"])  # min keeps the first of equal ones
        out[(st.dataset, st.method, st.kind)] = (json.loads(best["params"]), best)
    return out


def tuning_table(studies: list[Study]) -> pd.DataFrame:
    rows = [r for st in studies for r in st.told]
    gaps = sorted({k for r in rows for k in r if k.startswith("gap_")})
    return pd.DataFrame(rows, columns=[*TUNING_COLUMNS[:8], *gaps, "seconds"])


def tuned_yaml(plan: RunPlan, chosen: dict) -> dict:
    """tuned.yaml: the protocol (trials, space bounds, validation requests, seeds) and per dataset, scenario kind and
    method the chosen options with the trial and objective that chose them."""
    t = plan.settings.tuning
    out: dict = {"trials": t.trials, "tuning_seeds": list(t.seeds), "reporting_seeds": list(plan.seeds),
                 "lr": list(t.lr), "budget_share": t.budget_share, "weights": dict(t.weights),
                 "validation": {ds: sorted(plan.part(TUNING_PART + ds).splits) for ds in tuned_datasets(plan)},
                 "validation_split_seed": t.validation.split_seed, "chosen": {}}
    for (ds, m, k), (opts, row) in chosen.items():
        out["chosen"].setdefault(ds, {}).setdefault(k, {})[m] = {
            "options": opts, "trial": int(row["trial"]), "objective": float(row["objective"])}
    return out


def write_tuning(folder: Path, table: pd.DataFrame, tuned: dict) -> None:
    table.to_csv(folder / "tuning.csv", index=False)
    (folder / "tuned.yaml").write_text(yaml.safe_dump(tuned, sort_keys=False, width=110))


@contextlib.contextmanager
def ray_session(executor, plan: RunPlan):
    """For the Ray executor: one Ray instance for every round (the executor would start and stop one per call)."""
    if executor.name != "ray":
        yield
        return
    from .executors import import_ray, ray_init

    ray = import_ray(local=not executor.address)
    if ray.is_initialized():
        yield
        return
    cuda = plan.device.type == "cuda"
    ray_init(executor.workers or executor._workers(cuda), executor.address, cuda)
    try:
        yield
    finally:
        ray.shutdown()
