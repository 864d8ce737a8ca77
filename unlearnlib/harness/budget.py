"""The budget of a method call, measured by the harness (methods are never asked to count).

- **steps**: optimiser steps over the model's parameters, counted by torch's global optimiser step hook
  (``register_optimizer_step_post_hook``) while the call runs; steps of an optimiser over other tensors only
  (UNSIR's error-maximising noise, the versatile method's discriminator) are counted apart (``other_steps``).
  A step that a gradient scaler skips is not a step.
- **passes** over the forget and the retain set: samples drawn from the loaders the harness handed over (and from
  every loader derived from them), divided by the set's size. Every draw counts, whatever it was for: a training
  batch, an importance estimate or a stopping rule's accuracy check.
- **changed**: the share of the model's parameter elements that differ (``!=``) from the model before the call,
  in percent; the floating-point buffers (BatchNorm's running statistics) apart (``buffers_changed_pct``). A call is a
  **no-op** when neither changed: the model it returns computes what the original computed.

The diagnosis a method may give (:mod:`unlearnlib.diagnosis`) is collected beside it. Both are stored with the
call's metadata, so a call reused from the cell store keeps them.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..diagnosis import diagnosing
from ..methods import expected_steps, method_spec
from .plan import ENSEMBLE

# the metric rows of a budget (their specs: unlearnlib.metrics.spec.HARNESS_ROWS)
BUDGET_ROWS = ("budget_steps", "budget_other_steps", "budget_forget_passes", "budget_retain_passes",
               "budget_changed_pct", "budget_buffers_changed_pct")
DIAGNOSIS_COLUMNS = ["paper", "profile", "dataset", "model", "scenario", "method", "seed", "selected", "of",
                     "reason", "paper_setting"]


@dataclass
class Budget:
    steps: int  # optimiser steps over the model's parameters
    other_steps: int  # optimiser steps over other tensors only
    forget_passes: float  # samples drawn from the forget loader / forget-set size
    retain_passes: float  # samples drawn from the retain loader / retain-set size
    changed_pct: float  # % of parameter elements that differ from the model before the call
    buffers_changed_pct: float  # % of floating-point buffer elements that differ

    @property
    def no_op(self) -> bool:
        return self.changed_pct == 0.0 and self.buffers_changed_pct == 0.0

    def rows(self) -> dict[str, float]:
        return {f"budget_{k}": float(v) for k, v in asdict(self).items()}


def changed_shares(before: torch.nn.Module, after: torch.nn.Module) -> tuple[float, float]:
    """(% of parameter elements, % of floating-point buffer elements) of ``after`` that differ from ``before``'s
    (matched by name; an element whose shape changed counts as changed)."""
    ref = before.state_dict()
    params = {k for k, _ in after.named_parameters()}
    n = {True: [0, 0], False: [0, 0]}  # is parameter -> [changed, total]
    for k, v in after.state_dict().items():
        if not v.is_floating_point() and k not in params:
            continue  # integer buffers (BatchNorm's num_batches_tracked) count calls, not weights
        old = ref.get(k)
        diff = v.numel() if old is None or old.shape != v.shape else int((v.detach() != old.to(v.device)).sum())
        n[k in params][0] += diff
        n[k in params][1] += v.numel()
    return tuple(100.0 * c / t if t else 0.0 for c, t in (n[True], n[False]))


class _StepCounter:
    def __init__(self, model: torch.nn.Module) -> None:
        self.params = {id(p) for p in model.parameters()}
        # optimiser -> whether it steps the model's parameters (weak keys: an optimiser's id is reused once it is
        # freed, e.g. UNSIR's noise optimiser and the impair phase's that follows it)
        self.mine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.steps = self.other = 0

    def __call__(self, opt: torch.optim.Optimizer, args, kwargs) -> None:
        if opt not in self.mine:
            self.mine[opt] = any(id(p) in self.params for g in opt.param_groups for p in g["params"])
        if self.mine[opt]:
            self.steps += 1
        else:
            self.other += 1


@contextlib.contextmanager
def measuring(original: torch.nn.Module, model: torch.nn.Module, retain, forget) -> Iterator[dict]:
    """``with measuring(original, model, retain, forget) as out:`` around one method call on ``model`` (a copy of
    ``original``); afterwards ``out["result"]`` must be set to the model the call returned, and ``out["budget"]``
    (a :class:`Budget`) and ``out["diagnosis"]`` (the method's last :class:`~unlearnlib.diagnosis.Diagnosis`, or
    None) are filled in. The comparison of the weights runs after the block (outside any timer inside it)."""
    counter = _StepCounter(model)
    drawn = {name: loader.drawn for name, loader in (("retain", retain), ("forget", forget))}
    out: dict = {}
    handle = register_optimizer_step_post_hook(counter)
    try:
        with diagnosing() as found:
            yield out
    finally:
        handle.remove()
    if "result" not in out:
        raise RuntimeError("measuring(): set out['result'] to the model the method returned")

    def passes(loader, name: str) -> float:
        return (loader.drawn - drawn[name]) / loader.num_samples if loader.num_samples else 0.0

    changed, buffers = changed_shares(original, out["result"])
    out["budget"] = Budget(counter.steps, counter.other, passes(forget, "forget"), passes(retain, "retain"),
                           changed, buffers)
    out["diagnosis"] = found[-1] if found else None


def paper_steps(method: str, cfg) -> tuple[int | None, str]:
    """(the optimiser steps that ``cfg`` takes in the method's paper's setting, that setting in words); (None, "")
    where the method declares none."""
    spec = method_spec(method)
    if spec.setting is None:
        return None, ""
    return expected_steps(method, cfg, spec.setting.retain, spec.setting.forget), spec.setting.describe()


def budget_rows(meta: dict) -> dict[str, float]:
    """The metric rows of a call's stored metadata (none for a call stored before budgets were recorded)."""
    b = meta.get("budget") or {}
    rows = {f"budget_{k}": float(v) for k, v in b.items() if f"budget_{k}" in BUDGET_ROWS}
    if meta.get("paper_steps") is not None:
        rows["budget_paper_steps"] = float(meta["paper_steps"])
    return rows


def diagnosis_row(base: dict, meta: dict) -> dict | None:
    """One row of ``diagnoses.csv`` (what the method said and its paper's setting) from a call's metadata."""
    d = meta.get("diagnosis") or {}
    if not d and not meta.get("paper_setting"):
        return None
    return {**base, "selected": d.get("selected"), "of": d.get("of"), "reason": d.get("reason", ""),
            "paper_setting": meta.get("paper_setting", "")}


def collect_diagnoses(plan, store) -> list[dict]:
    """The diagnosis rows of the plan's method cells, in plan order (the ensemble's cells left out, as in
    ``metrics.csv``)."""
    run = {"paper": plan.paper, "profile": plan.profile}
    out = []
    for cell in plan.cells:
        if cell.kind != "method" or cell.part == ENSEMBLE:
            continue
        rec = store.load_record(cell.key) or {}
        out += [{**run, **d} for d in rec.get("diagnoses", [])]
    return out


def write_diagnoses(folder: Path, rows: list[dict]) -> None:
    """``diagnoses.csv``: one row per method call that said something (and its paper's setting)."""
    pd.DataFrame(rows, columns=DIAGNOSIS_COLUMNS).to_csv(folder / "diagnoses.csv", index=False)


__all__ = ["Budget", "BUDGET_ROWS", "DIAGNOSIS_COLUMNS", "measuring", "changed_shares", "paper_steps",
           "budget_rows", "diagnosis_row", "collect_diagnoses", "write_diagnoses"]
