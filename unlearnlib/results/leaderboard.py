"""The benchmark chapter: every method under one protocol, one leaderboard per kind of forget scenario.

Everything here is read from a stored run (``results/benchmark/<profile>/``):

- :func:`leaderboard_frame` — per dataset and method: forget, retain and test accuracy as the *signed* gap to
  retraining (method − retrain, the same seed's retrain; mean and 95 % t-interval over seeds) next to the
  retrain-vs-retrain noise floor; the membership attacks and the backdoor's attack success rate with retrain's value
  beside; the linear probe (class scenarios); the per-example scores of the run's ensemble (NeurIPS F with its floor,
  U-LiRA, KLOM) where the ensemble's scenario is; the median time and the speed-up;
- :func:`leaderboard_table` — that frame formatted, one table per scenario kind;
- :func:`plot_pareto` / :func:`plot_ranking` — forget-quality gap against utility gap (time as the marker's size),
  and the methods ranked by each gap with its interval;
- :func:`scenario_summary` — a few generated sentences per dataset: who is at retrain's level, who over-forgets,
  who only edits the head. The rules are :data:`RULES`; nothing here is written by hand.

No composite score: the gaps are shown side by side, never summed into one number.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..claims import per_seed, t_interval
from ..metrics.spec import metric_label
from .budget import (
    BUDGET_COLUMNS,
    BUDGET_NOTE,
    budget_cells,
    budget_values,
    does_not_forget,
    drop_unrecorded,
    no_op_sentences,
)
from .compare import diff_to_retrain, retrain_floor
from .run import KIND_ORDER, Run
from .tuning import base_name, is_tuned, tuned_pairs, tuning_caption, with_tuned

KIND_TITLES = {"class": "one class", "random": "a random subset", "backdoor": "a backdoor"}
GAP_METRICS = ("forget_acc", "retain_acc", "test_acc")  # signed gap to retrain, with interval and floor
# the forget-quality axis of each kind: how far from retrain the forget set is treated. For a backdoor that is
# the attack success rate (the trigger's effect), not the accuracy on the poisoned training images
FORGET_AXIS = {"class": "forget_acc", "random": "forget_acc", "backdoor": "asr"}
# the utility axis: for a class, accuracy on the retained training images (test accuracy counts the forgotten
# class's test images, which retrain gets wrong: a method that does not forget would look better than retrain)
UTILITY_AXIS = {"class": "retain_acc", "random": "test_acc", "backdoor": "test_acc"}
BESIDE_RETRAIN = ("mia_lr_cv", "mia_svc", "asr", "probe_forget_acc")  # shown as "method (retrain)"
RULES = (
    "at retrain's level: the mean |method − retrain| over seeds is at most the retrain-vs-retrain floor; "
    "over-forgets / forgets too little: the whole 95 % interval of the signed gap is below / above ∓ the floor; "
    "loses utility: the interval of the utility gap (class: retain accuracy; otherwise test accuracy) is entirely "
    "below −floor; forgets in the head only (class scenarios): forgets to retrain's level, but a linear probe on its "
    "features recovers the class closer to the original's probe than to retrain's")


def _kinds(run: Run) -> list[str]:
    return run.kinds


def _kind_of(run: Run, scenario: str) -> str:
    """The kind of one of the run's scenarios (its rows say it)."""
    kinds = run.metrics.kind[run.metrics.scenario == scenario]
    return str(kinds.iloc[0]) if len(kinds) else ""


def _model(run: Run) -> str:
    return next(iter(run.config.settings.models))


def signed_gap(metrics: pd.DataFrame, method: str, metric: str, model: str, dataset: str, kind: str) -> pd.Series:
    """Per seed: the mean over the kind's scenarios of (method − retrain), each against the same seed's retrain."""
    return diff_to_retrain(metrics, method, metric, model, dataset, kind).groupby(level="seed").mean()


def _ensemble_values(run: Run, kind: str, dataset: str) -> dict[str, dict[str, float]]:
    """method -> {F, ulira_accuracy, klom_forget_mean} (the marginal scores; "retrain vs retrain": the floor) when
    the run's ensemble is on this kind and dataset."""
    e, s = run.ensemble, run.config.settings
    if e is None or e.empty or not s.ensemble.n:
        return {}
    if _kind_of(run, s.ensemble.scenario) != kind or (s.ensemble.dataset or s.dataset) != dataset:
        return {}
    def scores(d: pd.DataFrame) -> dict[str, float]:
        return {m: float(d[d.metric == m].value.iloc[0]) for m in ("F", "ulira_accuracy", "klom_forget_mean")
                if (d.metric == m).any()}

    out = {method: scores(e[(e.method == method) & (e.variant == "marginal")])
           for method in set(e.method) - {"retrain vs retrain"}}
    out["retrain vs retrain"] = scores(e[e.method == "retrain vs retrain"])
    return out


def leaderboard_frame(run: Run, kind: str) -> pd.DataFrame:
    """One row per dataset and method (original and retrain first) for one scenario kind; numbers, not strings.

    Columns: ``<m>_gap`` / ``_lo`` / ``_hi`` (signed gap to retrain, mean and 95 % interval over seeds) and
    ``<m>_floor`` (retrain vs retrain) for forget/retain/test accuracy and the kind's forget axis; ``<m>`` and
    ``<m>_retrain`` for the attacks and the probe; ``probe_original``; ``F``, ``F_floor``, ``ulira_accuracy``,
    ``klom_forget_mean`` where the ensemble is; ``time_s`` (median), ``speedup`` (median retrain time / median
    method time); the call's budget (:func:`~unlearnlib.results.budget.budget_values`: ``steps``,
    ``forget_passes``, ``retain_passes``, ``changed_pct``, ``buffers_changed_pct``, ``paper_steps``);
    ``supported`` (False: the method is not run on this kind, ``note`` says why)."""
    if kind not in KIND_ORDER:
        raise ValueError(f"scenario kind {kind!r}; valid: {', '.join(KIND_ORDER)}")
    if kind not in _kinds(run):
        raise ValueError(f"this run has no {kind} scenario; its kinds: {', '.join(_kinds(run))}")
    m, s, model = run.metrics, run.config.settings, _model(run)
    gap_metrics = list(dict.fromkeys([*GAP_METRICS, FORGET_AXIS[kind]]))
    rows = []
    for ds in run.datasets:
        floors = {g: retrain_floor(m, g, model, ds, kind) for g in gap_metrics}
        ens = _ensemble_values(run, kind, ds)
        rt = per_seed(m, run.reference, "unlearn_time_s", model, ds, kind)
        retrain_time = float(np.median(rt)) if len(rt) else math.nan
        tuned_here = set(m.method[(m.dataset == ds) & m.method.map(is_tuned)])
        for method in ["original", *with_tuned(run, list(s.methods))]:  # a tuned row right after its defaults
            if is_tuned(method) and method not in tuned_here:
                continue  # a dataset the tuning block leaves out (tuning.datasets) has no tuned rows
            row: dict = {"dataset": ds, "method": method, "supported": True, "note": "",
                         "reference": method == run.reference, "tuned": is_tuned(method)}
            if method != "original" and not run.runs_on(method, kind):
                sup = run.registered.get(method, KIND_ORDER)
                row.update(supported=False, note=(f"not run: defined for {' and '.join(sup)} forgetting only"
                                                  if kind not in sup else "not run: `method_scenarios`"))
                rows.append(row)
                continue
            for g in gap_metrics:
                gap = signed_gap(m, method, g, model, ds, kind).to_numpy()
                mean, lo, hi = t_interval(gap)
                fl = floors[g]
                row.update({f"{g}_gap": mean, f"{g}_lo": lo, f"{g}_hi": hi, f"{g}_abs": float(np.mean(np.abs(gap)))
                            if len(gap) else math.nan, f"{g}_floor": float(fl.mean()) if len(fl) else math.nan})
            for g in dict.fromkeys([*gap_metrics, *BESIDE_RETRAIN]):  # the backdoor's asr is in both
                v = per_seed(m, method, g, model, ds, kind)
                r = per_seed(m, run.reference, g, model, ds, kind)
                row[g] = float(v.mean()) if len(v) else math.nan
                row[f"{g}_retrain"] = float(r.mean()) if len(r) else math.nan
            po = per_seed(m, "original", "probe_forget_acc", model, ds, kind)
            row["probe_original"] = float(po.mean()) if len(po) else math.nan
            t = per_seed(m, method, "unlearn_time_s", model, ds, kind)
            row["time_s"] = float(np.median(t)) if len(t) else math.nan
            row["speedup"] = retrain_time / row["time_s"] if row["time_s"] and row["time_s"] > 0 else math.nan
            row.update(budget_values(run, method, model, ds, kind))
            row.update(ens.get(method, {}))
            if "F" in ens.get("retrain vs retrain", {}):
                row["F_floor"] = ens["retrain vs retrain"]["F"]
            rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# the table


def _f(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _gap_cell(row: pd.Series, g: str) -> str:
    if row["reference"]:
        return "0 (reference)"
    mean, lo, hi = row.get(f"{g}_gap"), row.get(f"{g}_lo"), row.get(f"{g}_hi")
    if mean is None or math.isnan(mean):
        return "–"
    iv = "" if math.isnan(lo) else f" [{lo:+.1f}, {hi:+.1f}]"
    return f"{mean:+.1f}{iv}"


def _beside(row: pd.Series, g: str) -> str:
    v, r = row.get(g, math.nan), row.get(f"{g}_retrain", math.nan)
    if v is None or math.isnan(v):
        return "–"
    return _f(v) if row["reference"] else f"{_f(v)} ({_f(r)})"


def leaderboard_display(run: Run, kind: str) -> pd.DataFrame:
    """The leaderboard of one kind as strings, one column per quantity, the floor as the last row of each dataset."""
    df = leaderboard_frame(run, kind)
    present = set(run.metrics.dropna(subset=["value"]).metric)
    gaps = [g for g in dict.fromkeys([*GAP_METRICS, FORGET_AXIS[kind]]) if g in present]
    beside = [g for g in BESIDE_RETRAIN if g in present and df[g].notna().any() and g != FORGET_AXIS[kind]]
    has_f = "F" in df.columns and df["F"].notna().any()
    out = []
    for ds, d in df.groupby("dataset", sort=False):
        for _, row in d.iterrows():
            r = {"dataset": ds, "method": row["method"]}
            if not row["supported"]:
                r.update({k: "" for k in _columns(gaps, beside, has_f)})
                r[f"Δ {metric_label(gaps[0])}"] = row["note"]
                out.append(r)
                continue
            for g in gaps:
                r[f"Δ {metric_label(g)}"] = _gap_cell(row, g)
            for g in beside:
                r[f"{metric_label(g)} (retrain)"] = _beside(row, g)
            if has_f:
                r["F marginal"] = _f(row.get("F", math.nan), 3)
                r["U-LiRA acc"] = _f(row.get("ulira_accuracy", math.nan), 3)
                r["KLOM forget"] = _f(row.get("klom_forget_mean", math.nan), 2)
            r["time (s, median)"] = _f(row["time_s"], 2)
            r["speed-up vs retrain"] = "1×" if row["reference"] else (
                "–" if math.isnan(row["speedup"]) else f"{row['speedup']:.1f}×")
            r.update(budget_cells(row))
            out.append(r)
        first = d.iloc[1] if len(d) > 1 else d.iloc[0]
        fl = {"dataset": ds, "method": "retrain vs retrain (floor)"}
        for g in gaps:
            fl[f"Δ {metric_label(g)}"] = f"±{_f(first.get(f'{g}_floor', math.nan))}"
        if has_f:
            ens = _ensemble_values(run, kind, ds)
            flo = ens.get("retrain vs retrain", {})
            fl["F marginal"] = _f(flo.get("F", math.nan), 3)
            fl["U-LiRA acc"] = _f(flo.get("ulira_accuracy", math.nan), 3)
            fl["KLOM forget"] = _f(flo.get("klom_forget_mean", math.nan), 2)
        out.append(fl)
    res = drop_unrecorded(pd.DataFrame(out).fillna(""))
    if res.dataset.nunique() <= 1:
        res = res.drop(columns=["dataset"])
    return res


ENSEMBLE_COLUMNS = ("F marginal", "U-LiRA acc", "KLOM forget")
TIME_COLUMNS = ("time (s, median)", "speed-up vs retrain")


def _columns(gaps: list[str], beside: list[str], has_f: bool) -> list[str]:
    cols = [f"Δ {metric_label(g)}" for g in gaps] + [f"{metric_label(g)} (retrain)" for g in beside]
    cols += list(ENSEMBLE_COLUMNS) if has_f else []
    return cols + [*TIME_COLUMNS, *BUDGET_COLUMNS]


def leaderboard_table(run: Run, kind: str):
    """The leaderboard of one scenario kind (a Styler, every cell whole)."""
    from .tables import left_out_note, split_table

    df = leaderboard_display(run, kind)
    s = run.config.settings
    e = s.ensemble
    ens = ""
    if e.n and _kind_of(run, e.scenario) == kind:
        ens = (f" F marginal (NeurIPS 2023; higher is better, read against the floor row: two independent sets of "
               f"{e.n} retrains), U-LiRA accuracy (ideal 0.5) and KLOM on the forget set (ideal: the floor row) come "
               f"from an ensemble of N = {e.n} originals and 2 × {e.n} retrains on {e.dataset or s.dataset} "
               f"{e.scenario} (training seeds {e.seed}…{e.seed + e.n - 1}); '–' where the ensemble is not.")
    scen = sorted(set(run.metrics.scenario[run.metrics.kind == kind]))
    lr_note = test_note = ""
    if kind == "class":
        lr_note = (" — the unseen images are of the other classes, so even retrain separates them: its value, near "
                   "100, is the target here, not 50" if s.split.unseen and s.split.unseen_classes == "retain" else "")
        test_note = (" Test acc counts the forgotten class's test images too (retrain gets them wrong); the plots' "
                     "utility axis for a class is the retain accuracy.")
    budget = f" Budget: {BUDGET_NOTE}." if "steps" in df.columns else ""
    caption = (
        f"Leaderboard: forgetting {KIND_TITLES[kind]} ({', '.join(scen)}) [{run.stamp}]. Δ: the signed gap to "
        f"retraining from scratch, method − retrain (same seed), mean and 95 % t-interval over {len(s.seeds)} "
        f"training seeds; the floor row: mean |retrain − retrain| between seeds, the gap two retrains already have. "
        f"Attacks and probe: the method's value, retrain's in brackets (loss-LR MIA: forget vs unseen training images, "
        f"50 = indistinguishable{lr_note}; SVC MIA: Kodge et al.'s class attack, %; probe: forget-class test accuracy "
        f"of a linear probe on frozen features).{test_note}{ens} Time: median call (evaluation excluded); speed-up: "
        f"retrain's median / the method's.{budget} {tuning_caption(run)}{left_out_note(run)}")
    # a page is 1,400 px wide: a wider table is split, its rows repeated; the short ensemble, time and budget
    # columns fit ten to a table
    return split_table(df, caption, f"Continued: forgetting {KIND_TITLES[kind]}, the same rows, more columns "
                                    f"[{run.stamp}]; the notes of the table above apply.", 10,
                       together=(ENSEMBLE_COLUMNS, TIME_COLUMNS, tuple(BUDGET_COLUMNS)))


# ----------------------------------------------------------------------------------------------
# figures


def _palette(methods: list[str]) -> dict[str, tuple]:
    import seaborn as sns

    colours = sns.color_palette("tab20", 20)
    return {m: colours[i % 20] for i, m in enumerate(methods)}


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the non-dominated points (lower is better on both axes), ordered by the first axis."""
    keep = []
    for name, x, y in points:
        if math.isnan(x) or math.isnan(y):
            continue
        if not any((x2 <= x and y2 <= y) and (x2 < x or y2 < y) for _, x2, y2 in points
                   if not (math.isnan(x2) or math.isnan(y2))):
            keep.append((x, name))
    return [n for _, n in sorted(keep)]


def plot_pareto(run: Run, kind: str):
    """Per dataset: forget-quality gap |Δ| (x) against utility loss (y: retrain's test accuracy − the method's), one
    marker per method, its area the unlearning time (log scale); the Pareto front of the methods (none other both
    closer on forgetting and losing less utility; retrain, the reference at the origin, left out) joined by a line."""
    import matplotlib.pyplot as plt

    df = leaderboard_frame(run, kind)
    df = df[df.supported & (df.method != "original")]
    fx, ux = FORGET_AXIS[kind], UTILITY_AXIS[kind]
    datasets = list(dict.fromkeys(df.dataset))
    methods = list(dict.fromkeys(base_name(m) for m in df.method))  # a tuned row takes its method's colour and mark
    pal = _palette(methods)
    marks = {m: "osD^vP"[i % 6] for i, m in enumerate(methods)}
    pairs = tuned_pairs(df)
    hollow = {m for m, _ in pairs}  # with a tuned row beside it, the defaults' marker is hollow
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.4 * len(datasets) + 2.6, 5.6), squeeze=False)
    times = df.time_s.replace(0, np.nan).dropna()
    lo_t, hi_t = (math.log10(times.min()), math.log10(times.max())) if len(times) else (0.0, 1.0)

    def size(t: float) -> float:
        if math.isnan(t) or t <= 0:
            return 30.0
        return 30.0 + 370.0 * (math.log10(t) - lo_t) / max(hi_t - lo_t, 1e-9)

    for ax, ds in zip(axes[0], datasets, strict=True):
        d = df[df.dataset == ds]
        pts = []
        for _, r in d.iterrows():
            x, y = r[f"{fx}_abs"], -r[f"{ux}_gap"]
            pts.append((r.method, x, y))
            c, mk = pal[base_name(r.method)], marks[base_name(r.method)]
            if r.method in hollow:
                ax.scatter([x], [y], s=size(r.time_s), facecolor="none", marker=mk, edgecolor=c, linewidth=1.4,
                           zorder=3, label=r.method)
            else:
                ax.scatter([x], [y], s=size(r.time_s), color=c, marker=mk, edgecolor="black", linewidth=0.5,
                           alpha=0.85, zorder=3, label=r.method)
        _join_tuned(ax, pts, pairs, pal)
        front = pareto_front([p for p in pts if p[0] != run.reference])  # the reference itself dominates everything
        fp = [(x, y) for n in front for (m, x, y) in pts if m == n]
        if fp:
            ax.plot(*zip(*fp, strict=True), color="grey", lw=1, ls="--", zorder=1, label="Pareto front")
        fl_x = d[f"{fx}_floor"].dropna()
        fl_y = d[f"{ux}_floor"].dropna()
        if len(fl_x) and len(fl_y):
            ax.axvspan(0, max(float(fl_x.iloc[0]), 0.5), color="#2e7d32", alpha=0.12, zorder=0)
            ax.axhspan(-float(fl_y.iloc[0]), float(fl_y.iloc[0]), color="#2e7d32", alpha=0.12, zorder=0)
        ax.axhline(0, color="black", lw=0.6)
        ax.set(title=ds, xlabel=f"forget-quality gap |Δ {metric_label(fx)}| to retrain",
               ylabel=f"utility loss: retrain − method, {metric_label(ux)}")
        ax.xaxis.label.set_size(8)
        ax.yaxis.label.set_size(8)
    from matplotlib.lines import Line2D

    keys = [Line2D([], [], marker=marks[m], color="none", markerfacecolor=pal[m], markeredgecolor="black",
                   markersize=8, label=m) for m in methods]
    if pairs:
        keys += [Line2D([], [], marker="o", color="grey", markerfacecolor="none", markersize=8, lw=0.8,
                        label="defaults (hollow) — tuned (filled)")]
    keys += [Line2D([], [], color="grey", ls="--", label="Pareto front"),
             plt.Rectangle((0, 0), 1, 1, color="#2e7d32", alpha=0.12, label="retrain noise floor")]
    keys += [Line2D([], [], marker="o", color="none", markerfacecolor="white", markeredgecolor="black",
                    markersize=math.sqrt(size(t)), label=f"{t:.2g} s")
             for t in ((10 ** lo_t, 10 ** ((lo_t + hi_t) / 2), 10 ** hi_t) if len(times) else ())]
    width = 6.4 * len(datasets) + 2.6
    fig.legend(handles=keys, loc="center right", fontsize=7, frameon=False, labelspacing=0.9,
               title="method · front · floor · time", title_fontsize=7)
    fig.suptitle(f"Forgetting {KIND_TITLES[kind]}: forget quality vs utility, marker area = time (log); lower left "
                 f"is retrain\n[{run.stamp}; means over seeds]", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.6 / width, 1))
    return fig


def _join_tuned(ax, pts: list[tuple[str, float, float]], pairs: list[tuple[str, str]], pal: dict) -> None:
    """A thin line in the method's colour from its defaults' point to its tuned point."""
    at = {m: (x, y) for m, x, y in pts}
    for d, t in pairs:
        if d in at and t in at:
            ax.plot([at[d][0], at[t][0]], [at[d][1], at[t][1]], color=pal[d], lw=1.0, zorder=2)


def plot_ranking(run: Run, kind: str):
    """Per dataset (rows) and gap (columns: the forget axis, test accuracy): the methods ranked by their signed gap
    to retrain, 95 % interval as the bar, the retrain-vs-retrain floor as the shaded band around 0."""
    import matplotlib.pyplot as plt

    df = leaderboard_frame(run, kind)
    df = df[df.supported & ~df.reference]
    cols = list(dict.fromkeys([FORGET_AXIS[kind], UTILITY_AXIS[kind]]))
    datasets = list(dict.fromkeys(df.dataset))
    n = df.method.nunique()
    fig, axes = plt.subplots(len(datasets), len(cols), figsize=(5.6 * len(cols), 0.9 + 0.27 * n * len(datasets)),
                             squeeze=False)
    for i, ds in enumerate(datasets):
        for j, g in enumerate(cols):
            ax = axes[i][j]
            d = df[df.dataset == ds].assign(order=lambda x, g=g: x[f"{g}_gap"].abs()).sort_values("order",
                                                                                               ascending=False)
            y = np.arange(len(d))
            err = np.array([[m - lo if not math.isnan(lo) else 0 for m, lo in zip(d[f"{g}_gap"], d[f"{g}_lo"],
                                                                                    strict=True)],
                            [hi - m if not math.isnan(hi) else 0 for m, hi in zip(d[f"{g}_gap"], d[f"{g}_hi"],
                                                                                   strict=True)]])
            colours = ["#9e9e9e" if mth == "original" else "#1565c0" for mth in d.method]
            ax.errorbar(d[f"{g}_gap"], y, xerr=err, fmt="none", ecolor="black", capsize=3, lw=0.8, zorder=2)
            ax.scatter(d[f"{g}_gap"], y, color=colours, zorder=3, s=22)
            fl = d[f"{g}_floor"].dropna()
            if len(fl):
                ax.axvspan(-float(fl.iloc[0]), float(fl.iloc[0]), color="#2e7d32", alpha=0.12)
            ax.axvline(0, color="black", lw=0.6)
            ax.set_yticks(y, d.method, fontsize=7)
            ax.set_xlabel(f"Δ {metric_label(g)}: method − retrain", fontsize=8)
            ax.set_title(f"{ds}: {metric_label(g)}", fontsize=9)
    fig.suptitle(f"Forgetting {KIND_TITLES[kind]}: gap to retrain with its 95 % interval over seeds (green: the "
                 f"retrain-vs-retrain floor; grey: the original, for scale)\n[{run.stamp}]", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# generated text


def classify(row: pd.Series, kind: str) -> dict[str, bool]:
    """The rules of :data:`RULES` applied to one leaderboard row."""
    fx, ux = FORGET_AXIS[kind], UTILITY_AXIS[kind]
    fl = row.get(f"{fx}_floor", math.nan)
    fl = 0.0 if math.isnan(fl) else fl
    tf = row.get(f"{ux}_floor", math.nan)
    tf = 0.0 if math.isnan(tf) else tf
    lo, hi = row.get(f"{fx}_lo", math.nan), row.get(f"{fx}_hi", math.nan)
    at_level = bool(row.get(f"{fx}_abs", math.inf) <= fl) if not math.isnan(row.get(f"{fx}_abs", math.nan)) else False
    out = {
        "at_level": at_level,
        "over": bool(not math.isnan(hi) and hi < -fl),
        "under": bool(not math.isnan(lo) and lo > fl),
        "utility_loss": bool(not math.isnan(row.get(f"{ux}_hi", math.nan)) and row[f"{ux}_hi"] < -tf),
        "utility_kept": bool(row.get(f"{ux}_abs", math.inf) <= tf),
        "head_only": False,
    }
    p, pr, po = row.get("probe_forget_acc", math.nan), row.get("probe_forget_acc_retrain", math.nan), \
        row.get("probe_original", math.nan)
    if kind == "class" and not any(math.isnan(v) for v in (p, pr, po)) and po > pr:
        forgets = at_level or (not math.isnan(hi) and hi <= fl)
        out["head_only"] = bool(forgets and p - pr > (po - pr) / 2)
    return out


def _names(rows: list[str]) -> str:
    return ", ".join(f"`{r}`" for r in rows) if rows else "none"


def scenario_summary(run: Run, kind: str):
    """Generated sentences per dataset (Markdown): which methods are within retrain's noise floor, which over-forget
    or forget too little, which lose utility, which only edit the head; the fastest at retrain's level."""
    from IPython.display import Markdown

    df = leaderboard_frame(run, kind)
    fk = FORGET_AXIS[kind]
    fx = metric_label(fk)
    ux = metric_label(UTILITY_AXIS[kind])
    smoke = run.profile == "smoke"
    lines = []
    if smoke:
        lines.append("*smoke profile: a pipeline check; these sentences are generated from its numbers, which say "
                     "nothing about the methods.*\n")
    for ds, d in df.groupby("dataset", sort=False):
        d = d[d.supported & ~d.reference & (d.method != "original")]
        tags = {r.method: classify(r, kind) for _, r in d.iterrows()}
        times = dict(zip(d.method, d.time_s, strict=True))
        level = [m for m, t in tags.items() if t["at_level"]]
        both = [m for m in level if tags[m]["utility_kept"]]
        fastest = min(both, key=lambda m: times[m]) if both else None
        floor = d[f"{fk}_floor"].dropna()
        fl = f"±{floor.iloc[0]:.1f} points" if len(floor) else "one seed: no floor"
        parts = [f"**{ds}.** On {fx}, {len(level)} of {len(tags)} methods are within retrain's noise floor "
                 f"({fl}): {_names(level)}"]
        if not level and len(d):
            gaps = d[f"{fk}_abs"]
            if gaps.notna().any():
                near = d.loc[gaps.idxmin()]
                lo, hi = near[f"{fk}_lo"], near[f"{fk}_hi"]
                parts.append(f"the closest is `{near.method}` (Δ {near[f'{fk}_gap']:+.1f}"
                             + (f" [{lo:+.1f}, {hi:+.1f}])" if not math.isnan(lo) else ")"))
        if both:
            parts.append(f"of them, {_names(both)} also keep {ux} within its floor"
                         + (f"; the fastest of these is `{fastest}` ({times[fastest]:.2g} s)" if fastest else ""))
        over = [m for m, t in tags.items() if t["over"]]
        under = [m for m, t in tags.items() if t["under"]]
        loss = [m for m, t in tags.items() if t["utility_loss"]]
        head = [m for m, t in tags.items() if t["head_only"]]
        if over:
            parts.append(f"over-forget (below retrain's level, which an attacker can see): {_names(over)}")
        if under:
            rows = {r.method: r for _, r in d.iterrows()}
            parts.append("forget too little (the whole interval above the floor): " + ", ".join(
                f"`{m}` {does_not_forget(run, m, rows[m])}" for m in under))
        if loss:
            parts.append(f"lose {ux} beyond the floor: {_names(loss)}")
        if kind == "class":
            parts.append(f"forget in the head only (a linear probe on their features still finds the class): "
                         f"{_names(head)}")
        lines.append("; ".join(parts) + ".")
        lines += no_op_sentences(run, kind, ds, _model(run))
    skipped = df[~df.supported].method.unique().tolist()
    if skipped:
        lines.append(f"\nNot run here (defined for other kinds of forgetting): {_names(skipped)}.")
    lines.append(f"\n<small>Rules: {RULES}.</small>")
    return Markdown("\n\n".join(lines))


__all__ = ["leaderboard_frame", "leaderboard_display", "leaderboard_table", "plot_pareto", "plot_ranking",
           "scenario_summary", "classify", "pareto_front", "signed_gap", "KIND_TITLES", "FORGET_AXIS", "RULES"]
