"""The reading side of equal-budget tuning (issue 20): a run's ``tuning.csv`` (every trial) and ``tuned.yaml`` (the
chosen options), the defaults-and-tuned pairs of the leaderboard, the table of chosen options and the caption that
states the trial budget and the validation requests. Reads only the run folder (no method or harness module)."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from .run import Run

TUNED = " (tuned)"  # the suffix of a tuned row's method name (the harness writes it so)


def is_tuned(method: str) -> bool:
    return method.endswith(TUNED)


def base_name(method: str) -> str:
    """The method a (tuned) row belongs to."""
    return method[: -len(TUNED)] if is_tuned(method) else method


def with_tuned(run: Run, methods: list[str]) -> list[str]:
    """``methods`` with each one's tuned row right after it, where the run has one."""
    present = set(run.metrics.method)
    return [x for m in methods for x in (m, m + TUNED) if x == m or x in present]


def tuning_trials(run: Run) -> pd.DataFrame | None:
    """tuning.csv: one row per trial (method, scenario kind, dataset, model, trial, params as JSON, state,
    objective, its gap parts, seconds); None for a run without tuning."""
    p = run.path / "tuning.csv"
    return pd.read_csv(p) if p.exists() else None


def tuned_options(run: Run) -> dict | None:
    p = run.path / "tuned.yaml"
    return yaml.safe_load(p.read_text()) if p.exists() else None


def _defaults(run: Run) -> dict:
    """Each method's resolved default options, as the run recorded them."""
    raw = yaml.safe_load((run.path / "config.resolved.yaml").read_text())
    return raw.get("resolved_methods") or {}


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def chosen_options_frame(run: Run) -> pd.DataFrame:
    """Per dataset, scenario kind and method: each tuned option as 'default → chosen', the trial that chose it and
    its objective (the weighted mean gap to retrain on the validation request), and the best objective's trial
    count."""
    tuned = tuned_options(run)
    if not tuned:
        return pd.DataFrame(columns=["dataset", "kind", "method", "options (default → tuned)", "trial", "objective"])
    defaults, rows = _defaults(run), []
    for ds, kinds in (tuned.get("chosen") or {}).items():
        for kind, methods in kinds.items():
            for m, c in methods.items():
                d = defaults.get(m, {})
                opts = ", ".join(f"{k} {_fmt(d[k]) + ' → ' if k in d else ''}{_fmt(v)}"
                                 for k, v in c["options"].items())
                rows.append({"dataset": ds, "kind": kind, "method": m, "options (default → tuned)": opts,
                             "trial": int(c["trial"]), "objective": round(float(c["objective"]), 2)})
    return pd.DataFrame(rows)


def tuning_caption(run: Run) -> str:
    """The protocol in one sentence: trials per study, the shared space, the validation requests, the seeds."""
    t = tuned_options(run)
    if not t:
        return "Every method with its default options (no tuning in this run)."
    val = "; ".join(f"{ds}: {', '.join(v)}" for ds, v in t["validation"].items())
    return (f"'<method> (tuned)': the options of equal-budget tuning, {t['trials']} trials per method, scenario kind "
            f"and dataset (seeded TPE) over the learning rate (log-uniform {t['lr'][0]:g}..{t['lr'][1]:g}), steps or "
            f"epochs up to {t['budget_share']:.0%} of the original's training and the method's own knobs, scored by "
            f"the mean gap to retrain ({', '.join(t['weights'])}) on validation requests that are not reported ({val}; "
            f"split seed {t['validation_split_seed']}) with tuning seeds {t['tuning_seeds']}, never reporting seeds "
            f"({t['reporting_seeds']}); its interval is over the reporting seeds.")


def chosen_options_table(run: Run):
    """The chosen options (a Styler) with the protocol as its caption."""
    df = chosen_options_frame(run)
    trials = tuning_trials(run)
    spent = ""
    if trials is not None and len(trials):
        failed = int((trials.state != "complete").sum())
        spent = (f" {len(trials)} trials in all, {trials.seconds.sum():.0f} s of cells"
                 + (f"; {failed} diverged (told to the sampler as failed)" if failed else "") + ".")
    wall = run.env.get("tuning_wall_s")
    if wall is not None and run.env.get("wall_s"):
        spent += (f" The study took {wall / 60:.1f} min of the run's {run.env['wall_s'] / 60:.1f} min wall time "
                  f"(executor: {run.env.get('executor') or 'local'}).")
    return df.style.hide(axis="index").set_caption(
        f"Tuned options [{run.stamp}]. {tuning_caption(run)}{spent}")


def tuned_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(default row, tuned row) method names present in a leaderboard frame."""
    names = set(df.method)
    return [(m, m + TUNED) for m in dict.fromkeys(df.method) if not is_tuned(m) and m + TUNED in names]


def trial_params(trials: pd.DataFrame) -> pd.DataFrame:
    """tuning.csv with its params expanded into columns (one per searched option)."""
    expanded = pd.DataFrame([json.loads(p) for p in trials.params], index=trials.index)
    return pd.concat([trials.drop(columns=["params"]), expanded], axis=1)
