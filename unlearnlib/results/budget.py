"""The budget of the method calls of a stored run, as the tables and the generated text show it.

Read from the run folder alone (the ``budget_*`` rows of ``metrics.csv``, which the harness measures, and
``diagnoses.csv``, what the methods said about their calls): optimiser steps, passes over the forget and retain
sets, the share of weights changed; a call that changed no weight and no buffer is a **no-op**, and the text says
so with the method's own reason where it gave one. Where the text says a method does not forget, it says so with
its defaults *at this size*: the steps it took here beside the steps the same options take in its paper's setting,
so that a smaller protocol is not read as the method's failure.
"""

from __future__ import annotations

import math

import pandas as pd

from ..claims import per_seed, select
from .run import Run
from .tuning import is_tuned

BUDGET_COLUMNS = ("steps", "passes F/R", "changed %")  # how the tables head them (compact: 1,400 px pages)
BUDGET_NOTE = ("steps: optimiser steps of one call; passes F/R: samples drawn from the forget / retain set over the "
               "set's size (every draw: training, importance estimates, stopping checks); changed %: the share of "
               "weight elements that differ from the original's (means over seeds and scenarios)")
_VALUES = {"steps": "budget_steps", "forget_passes": "budget_forget_passes", "retain_passes": "budget_retain_passes",
           "changed_pct": "budget_changed_pct", "buffers_changed_pct": "budget_buffers_changed_pct",
           "paper_steps": "budget_paper_steps"}


def budget_values(run: Run, method: str, model: str | None, dataset: str | None, kind: str) -> dict[str, float]:
    """The method's budget on one kind of scenario: each quantity's mean over seeds (scenarios pooled within a seed);
    NaN where the run has no such row (a method that is not called, a run from before budgets were recorded)."""
    out = {}
    for key, metric in _VALUES.items():
        v = per_seed(run.metrics, method, metric, model, dataset, kind)
        out[key] = float(v.mean()) if len(v) else math.nan
    return out


def _num(x: float) -> str:
    if math.isnan(x):
        return "–"
    if float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.1f}" if x >= 10 else f"{x:.2g}"


def _pct(x: float) -> str:
    if math.isnan(x):
        return "–"
    if x == 0:
        return "0"
    return f"{x:.2g}" if x < 1 else f"{x:.0f}" if x >= 99.5 else f"{x:.1f}"


def budget_cells(values: dict[str, float]) -> dict[str, str]:
    """The three compact columns of :data:`BUDGET_COLUMNS` from :func:`budget_values`."""
    f, r = values.get("forget_passes", math.nan), values.get("retain_passes", math.nan)
    changed = _pct(values.get("changed_pct", math.nan))
    if changed == "0" and values.get("buffers_changed_pct", 0.0) == 0:
        changed = "0 (no-op)"
    return {"steps": _num(values.get("steps", math.nan)),
            "passes F/R": "–" if math.isnan(f) and math.isnan(r) else f"{_num(f)} / {_num(r)}",
            "changed %": changed}


def drop_unrecorded(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the budget columns where no row has a value (a run stored before budgets were recorded)."""
    empty = [c for c in BUDGET_COLUMNS if c in df and df[c].isin(["–", "", "n/a"]).all()]
    return df.drop(columns=empty)


def diagnoses(run: Run) -> pd.DataFrame:
    """``diagnoses.csv`` of the run (empty for a run without one)."""
    path = run.path / "diagnoses.csv"
    cols = ["dataset", "model", "scenario", "method", "seed", "selected", "of", "reason", "paper_setting"]
    if not path.exists():
        return pd.DataFrame(columns=cols)
    df = pd.read_csv(path, keep_default_na=False, na_values={"selected": [""], "of": [""]})
    return df


def paper_setting(run: Run, method: str) -> str:
    """The method's paper's setting in words, as the run recorded it ("" where none was declared)."""
    d = diagnoses(run)
    hit = d[(d.method == method) & (d.paper_setting.astype(str) != "")]
    return str(hit.paper_setting.iloc[0]) if len(hit) else ""


def at_this_size(values: dict[str, float], setting: str = "") -> str:
    """"17 steps; about 548 in its paper's setting: CIFAR-10 class forgetting, 45,000 retain / 5,000 forget": the
    steps its defaults took here beside those in its paper's setting (computed from its options and that setting's
    set sizes, never typed)."""
    steps, paper = values.get("steps", math.nan), values.get("paper_steps", math.nan)
    if math.isnan(steps):
        return "its steps were not recorded"
    here = f"{_num(steps)} step{'' if steps == 1 else 's'}"
    if steps == 0 and (math.isnan(paper) or paper == 0):  # a weight edit (SSD, Fisher, Deep Unlearning): no steps
        return ("a weight edit: no optimiser steps, its options are not counted in steps"
                + (f"; its paper's setting: {setting}" if setting else ""))
    if math.isnan(paper):
        return here
    return f"{here}; about {_num(paper)} in its paper's setting" + (f": {setting}" if setting else "")


def does_not_forget(run: Run, method: str, values: dict[str, float]) -> str:
    """The phrase for a method whose forgetting falls short: never the method's fault alone, the protocol's size is
    named with it."""
    if is_tuned(method):  # its options are the tuned ones, not its paper's: no paper setting to compare with
        here = at_this_size({**values, "paper_steps": math.nan})
        return f"does not forget with its tuned options at this size ({here})"
    return f"does not forget with its defaults at this size ({at_this_size(values, paper_setting(run, method))})"


def no_op_calls(run: Run, method: str, model: str | None, dataset: str | None, kind: str) -> tuple[int, int]:
    """(calls that changed no weight and no buffer, calls with a recorded budget) of the method on one kind."""
    m = run.metrics
    p = select(m, method, "budget_changed_pct", model, dataset, kind)
    b = select(m, method, "budget_buffers_changed_pct", model, dataset, kind)
    if p.empty:
        return 0, 0
    keys = ["scenario", "seed"]
    both = p[keys + ["value"]].merge(b[keys + ["value"]], on=keys, how="left", suffixes=("", "_b"))
    noop = (both.value == 0) & (both.value_b.fillna(0) == 0)
    return int(noop.sum()), len(both)


def _reason(run: Run, method: str, dataset: str | None, kind_scenarios: set[str]) -> str:
    d = diagnoses(run)
    d = d[(d.method == method) & d.scenario.isin(kind_scenarios) & ((d.dataset == dataset) if dataset else True)]
    if d.empty:
        return ""
    row = d.iloc[0]
    sel, of = row.get("selected"), row.get("of")
    counted = ""
    if sel is not None and not (isinstance(sel, float) and math.isnan(sel)):
        selected = d.selected.astype(float)
        counted = (f"its rule selected {int(selected.max()):,} of {int(float(of)):,} weights" if selected.max() == 0
                   else f"its rule selected {int(selected.min()):,}–{int(selected.max()):,} of {int(float(of)):,} "
                        f"weights")
    reason = str(row.get("reason") or "")
    return "; ".join(x for x in (counted, reason) if x)


def no_op_sentences(run: Run, kind: str, dataset: str | None = None, model: str | None = None) -> list[str]:
    """One sentence per method with calls that changed nothing on this kind: called a no-op, with its reason where it
    gave one."""
    m = run.metrics
    scen = set(m.scenario[m.kind == kind])
    methods = list(dict.fromkeys(m.method[(m.kind == kind) & (m.metric == "budget_changed_pct")]))
    out = []
    for method in methods:
        n, total = no_op_calls(run, method, model, dataset, kind)
        if not n:
            continue
        where = ("here: its call" if total == 1 else f"in all {total} of its calls here: they" if n == total
                 else f"in {n} of its {total} calls here: those")
        why = _reason(run, method, dataset, scen).rstrip(".")
        out.append(f"`{method}` is a **no-op** {where} changed no weight, so its numbers are the original's"
                   + (f" ({why})." if why else " (it states no reason)."))
    return out


__all__ = ["BUDGET_COLUMNS", "BUDGET_NOTE", "budget_values", "budget_cells", "drop_unrecorded", "diagnoses",
           "paper_setting", "at_this_size", "does_not_forget", "no_op_calls", "no_op_sentences"]
