"""Your run against our reference run of the same paper and profile: did it reproduce?

Verdicts (``compare``):

- **identical**: every non-timing value of ``metrics`` is equal (the same rows, the same numbers; timings and
  speed-ups always move from machine to machine and are left out);
- **within noise**: not identical, but every claim's estimate lies inside the other run's 95 % interval, both ways
  (a claim on a time, a speed-up, is shown but not judged: times move from machine to machine)
  (a paper without claims, the benchmark: every method's per-seed mean of every metric, per model, dataset and
  scenario kind, stands in for the claims);
- **differs**: some estimate lies outside the other run's interval; the claims (or metrics) that do are listed.

Beside the verdict: per claim both estimates and intervals, per metric group (a metric and its per-class or
per-layer variants, ``forget_prediction[3]`` -> ``forget_prediction``) the largest difference, and what differs
between the two environments (``env.json``: threads, torch, CPU, device, ...).
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from ..claims import TIME_METRICS, t_interval
from ..paths import reference_root, shown
from .reference import has_run, reference_dir
from .run import Run
from .tables import claims_frame

IDENTICAL, WITHIN_NOISE, DIFFERS = "identical", "within noise", "differs"
KEYS = ["dataset", "model", "scenario", "method", "seed", "metric"]
ENV_COMPARED = {"cpu_threads": "torch threads", "torch": "torch version", "cpu_model": "CPU", "device": "device",
                "device_name": "device name", "python": "Python", "numpy": "NumPy", "executor": "executor",
                "git_commit": "commit"}


@dataclass
class Reproduction:
    verdict: str
    claims: pd.DataFrame  # per claim (or method x metric): both estimates and intervals, inside both ways
    groups: pd.DataFrame  # per metric group: the largest |difference| and where
    environment: pd.DataFrame  # what differs between the two env.json files
    differing: list[str] = field(default_factory=list)  # the claims and metric groups that differ


def metric_group(metric: str) -> str:
    """A metric's family: its per-class or per-layer part dropped (``forget_prediction[3]``,
    ``weight_distance_original[layer1.0.conv1]``, ``forget_prediction_3``)."""
    return re.sub(r"(\[.*\]|_\d+)$", "", str(metric)) or str(metric)


def _estimates(run: Run) -> pd.DataFrame:
    """The numbers compared within noise: the claims, or for a run without claims every method's metrics."""
    if run.config.claims:
        df = claims_frame(run)
        return pd.DataFrame({"what": [f"{c} ({m}{', ' + d if len(run.datasets) > 1 else ''})" for c, m, d in
                                      zip(df.claim, df.model, df.dataset, strict=True)],
                             "estimate": df.estimate, "ci_low": df.ci_low, "ci_high": df.ci_high,
                             "timing": df.metric.isin(TIME_METRICS)})
    m = run.metrics[~run.metrics.metric.isin(TIME_METRICS)].dropna(subset=["value"])
    rows = []
    for (method, metric, model, dataset, kind), g in m.groupby(["method", "metric", "model", "dataset", "kind"],
                                                               sort=True):
        seeds = g.groupby("seed").value.mean()
        mean, lo, hi = t_interval(seeds.values)
        rows.append({"what": f"{method}: {metric} ({model}, {dataset}, {kind or 'all'})", "estimate": mean,
                     "ci_low": lo, "ci_high": hi, "timing": False})
    return pd.DataFrame(rows, columns=["what", "estimate", "ci_low", "ci_high", "timing"])


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _inside(x: float, est: float, lo: float, hi: float) -> bool:
    """Whether ``x`` lies inside the other run's interval [lo, hi] (one seed, no interval: equal to its estimate)."""
    if _nan(x) or _nan(est):
        return _nan(x) and _nan(est)
    if _nan(lo) or _nan(hi):
        return x == est
    return lo <= x <= hi


def _claims(ref: Run, yours: Run) -> pd.DataFrame:
    a, b = _estimates(ref), _estimates(yours)
    df = a.merge(b.drop(columns="timing"), on="what", how="outer", suffixes=("_ref", "_yours"))
    df["timing"] = df.timing.fillna(False).astype(bool)
    df["inside"] = [_inside(y, r, lo, hi) and _inside(r, y, ylo, yhi) for r, lo, hi, y, ylo, yhi in
                    zip(df.estimate_ref, df.ci_low_ref, df.ci_high_ref, df.estimate_yours, df.ci_low_yours,
                        df.ci_high_yours, strict=True)]
    return df


def _values(run: Run) -> pd.DataFrame:
    m = run.metrics[~run.metrics.metric.isin(TIME_METRICS)]
    return m[KEYS + ["value"]]


def _groups(ref: Run, yours: Run) -> tuple[pd.DataFrame, bool]:
    """Per metric group the largest |difference| between matching rows; and whether all values are equal (the same
    rows, equal values; NaN equals NaN)."""
    a, b = _values(ref), _values(yours)
    both = a.merge(b, on=KEYS, how="outer", suffixes=("_ref", "_yours"), indicator=True)
    same_rows = bool((both["_merge"] == "both").all())
    x, y = both.value_ref, both.value_yours
    equal = (x == y) | (x.isna() & y.isna())
    both["diff"] = (x - y).abs()
    both["group"] = both.metric.map(metric_group)
    rows = []
    for group, g in both.groupby("group", sort=True):
        d = g.dropna(subset=["diff"])
        top = d.loc[d["diff"].idxmax()] if len(d) else None
        rows.append({"metric group": group, "values": len(g), "equal": int(equal[g.index].sum()),
                     "largest difference": float(top["diff"]) if top is not None else math.nan,
                     "where": ("no matching values" if top is None else "– (no difference)" if top["diff"] == 0
                               else f"{top.method}, {top.metric}, {top.scenario}, seed {top.seed}")})
    return pd.DataFrame(rows), same_rows and bool(equal.all())


def _environment(ref: Run, yours: Run) -> pd.DataFrame:
    rows = []
    for key, label in ENV_COMPARED.items():
        a, b = ref.env.get(key), yours.env.get(key)
        if a != b:
            rows.append({"": label, "reference": _env_value(a), "yours": _env_value(b)})
    return pd.DataFrame(rows, columns=["", "reference", "yours"])


def _env_value(v) -> str:
    if v is None:
        return "not recorded"
    return ", ".join(str(x) for x in v) if isinstance(v, list) else str(v)


def compare(ref: Run, yours: Run) -> Reproduction:
    """The reproduction verdict of ``yours`` against ``ref`` (the same paper and profile)."""
    if ref.config.id != yours.config.id or ref.profile != yours.profile:
        raise ValueError(f"a reproduction compares runs of one paper and profile; got {ref.config.id} "
                         f"({ref.profile}) and {yours.config.id} ({yours.profile})")
    claims = _claims(ref, yours)
    groups, identical = _groups(ref, yours)
    env = _environment(ref, yours)
    if identical:
        return Reproduction(IDENTICAL, claims, groups, env)
    # a claim on a time (a speed-up) moves with the machine: shown, never the reason for "differs"
    outside = [str(w) for w, ok, t in zip(claims.what, claims.inside, claims.timing, strict=True) if not ok and not t]
    if not outside:
        return Reproduction(WITHIN_NOISE, claims, groups, env)
    moved = [str(g) for g, d in zip(groups["metric group"], groups["largest difference"], strict=True) if d > 0]
    return Reproduction(DIFFERS, claims, groups, env, outside + [f"metric group {g}" for g in moved])


def _interval(est: float, lo: float, hi: float) -> str:
    if est is None or (isinstance(est, float) and math.isnan(est)):
        return "–"
    if isinstance(lo, float) and math.isnan(lo):
        return f"{est:.3g}"
    return f"{est:.3g} [{lo:.3g}, {hi:.3g}]"


def report_html(rep: Reproduction, ref: Run) -> str:
    """The Reproduction section's body: the verdict, the claims side by side, the metric groups, the environment."""
    colour = {IDENTICAL: "#d4edda", WITHIN_NOISE: "#d4edda", DIFFERS: "#f8d7da"}[rep.verdict]
    what = {IDENTICAL: "every non-timing value of your run equals the reference's",
            WITHIN_NOISE: "not every value is equal, but every estimate lies inside the other run's 95% interval",
            DIFFERS: "some estimates lie outside the other run's 95% interval: "
                     + "; ".join(html.escape(d) for d in rep.differing[:12])}[rep.verdict]
    out = [f'<p style="background:{colour};padding:0.4em"><b>Verdict: {rep.verdict}</b>: {what}.</p>']
    claims = pd.DataFrame({
        "claim" if ref.config.claims else "method: metric": rep.claims.what,
        "reference": [_interval(e, lo, hi) for e, lo, hi in zip(rep.claims.estimate_ref, rep.claims.ci_low_ref,
                                                                rep.claims.ci_high_ref, strict=True)],
        "yours": [_interval(e, lo, hi) for e, lo, hi in zip(rep.claims.estimate_yours, rep.claims.ci_low_yours,
                                                            rep.claims.ci_high_yours, strict=True)],
        "each inside the other's interval": [("yes" if v else "no") + (" (a time: not judged)" if t else "")
                                             for v, t in zip(rep.claims.inside, rep.claims.timing, strict=True)]})
    out.append(claims.to_html(index=False, escape=True, classes="ul-reproduction"))
    groups = rep.groups.assign(**{"largest difference": [f"{v:.3g}" if v == v else "–"
                                                         for v in rep.groups["largest difference"]]})
    out.append("<p>Per metric group (timings left out): the values equal in both runs, and the largest difference "
               "between matching values (same dataset, model, scenario, method, seed).</p>")
    out.append(groups.to_html(index=False, escape=True, classes="ul-reproduction"))
    if len(rep.environment):
        out.append("<p>What differs between the two environments (<code>env.json</code>):</p>")
        out.append(rep.environment.to_html(index=False, escape=True, classes="ul-reproduction"))
    else:
        out.append("<p>The two environments match in threads, torch version, CPU and device.</p>")
    return "\n".join(out)


def reproduction_section(run: Run):
    """The chapter's Reproduction section for ``run``: beside our reference when ``run`` is yours and a reference of
    its profile exists; otherwise a line that says what there is to compare."""
    from IPython.display import HTML, Markdown

    paper, profile = run.config.id, run.profile
    ref_path = reference_dir(paper, profile)
    if reference_root() in run.path.resolve().parents:
        return Markdown(f"These numbers are our reference run. Run `make reproduce PAPER={paper} PROFILE={profile}` "
                        f"to compute your own: this section then compares it with ours.")
    if not has_run(ref_path):
        return Markdown(f"There is no reference run of this paper in the {profile} profile ({shown(ref_path)}) to "
                        f"compare your run with.")
    ref = Run.load(ref_path)
    rep = compare(ref, run)
    from .reference import reference_line, staleness

    stale = staleness(ref_path, paper)
    note = (f"<p><b>Our reference is stale</b>: since it ran, {len(stale)} thing(s) changed that its numbers depend "
            f"on (<code>make check-reference</code> lists them), so a difference may come from the code or config, "
            f"not from your machine.</p>" if stale else "")
    return HTML(f"<p>Your run ({html.escape(shown(run.path))}) beside ours ({html.escape(reference_line(ref))}).</p>"
                + note + report_html(rep, ref))


__all__ = ["IDENTICAL", "WITHIN_NOISE", "DIFFERS", "Reproduction", "compare", "metric_group", "reproduction_section",
           "report_html"]
