"""The claims, results, ensemble and deviations tables."""

from __future__ import annotations

import html
import math

import pandas as pd

from ..claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    INTERVAL_NOTE,
    evaluate_claim,
    per_seed,
    select,
    t_interval,
)
from ..metrics.spec import has_gap_to_retrain, metric_label
from ..paper import PaperConfig
from .budget import BUDGET_COLUMNS, BUDGET_NOTE, budget_cells, budget_values, drop_unrecorded, no_op_sentences
from .compare import gap_to_retrain, retrain_floor
from .run import KIND_ORDER, Run

# ----------------------------------------------------------------------------------------------
# claims


def claims_frame(run: Run) -> pd.DataFrame:
    """Every claim for every model and dataset of the run: estimate, 95 % interval, seeds, verdict."""
    datasets = run.datasets
    rows = [evaluate_claim(run.metrics, run.profile, c, model, ds) | {"id": c.id, "metric": c.metric}
            for c in run.config.claims for ds in datasets for model in run.config.settings.models]
    cols = ["id", "claim", "dataset", "model", "metric", "estimate", "ci_low", "ci_high", "seeds", "scenarios",
            "target", "verdict", "source"]
    return pd.DataFrame(rows, columns=cols)


_VERDICT_STYLE = {HOLDS: "background-color:#d4edda", FAILS: "background-color:#f8d7da",
                  INCONCLUSIVE: "background-color:#fff3cd"}


def _verdict_style(v: str) -> str:
    return _VERDICT_STYLE.get(v, "color:#6c757d")


def _num(v: float) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def claims_table(run: Run):
    """The claims table: estimate, 95 % interval, seeds and scenarios, the check, the verdict."""
    df = claims_frame(run)
    out = pd.DataFrame({
        "claim": df.claim, "dataset": df.dataset, "model": df.model,
        "estimate": [_num(v) for v in df.estimate],
        "95% CI": ["–" if math.isnan(lo) else f"[{lo:.3g}, {hi:.3g}]" for lo, hi in zip(df.ci_low, df.ci_high,
                                                                                           strict=True)],
        "seeds × scenarios": [f"{a} × {b}" if a else "–" for a, b in zip(df.seeds, df.scenarios, strict=True)],
        "check": df.target, "verdict": df.verdict})
    # the source goes under the claim, in small type: one column less, so the table fits the page
    out["claim"] = [f'{html.escape(c)}<br><span class="ul-source">{html.escape(s)}</span>' if s else html.escape(c)
                    for c, s in zip(df.claim, df.source, strict=True)]
    if out.dataset.nunique() <= 1:
        out = out.drop(columns=["dataset"])
    return (out.style.map(_verdict_style, subset=["verdict"]).hide(axis="index")
            .set_properties(subset=["claim"], **{"min-width": "22em"})
            .set_properties(subset=["check"], **{"min-width": "12em"})
            .set_caption(f"Claims, verdicts from this run [{run.stamp}]. Estimate: {INTERVAL_NOTE}. "
                         f"Under each claim, in small type: its source."))


# ----------------------------------------------------------------------------------------------
# the results table


def _fmt(mean: float, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def _fmt_interval(values) -> str:
    mean, lo, _hi = t_interval(values)
    return _fmt(mean, None if math.isnan(lo) else mean - lo)


def results_frame(run: Run, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per scenario kind (never pooled across kinds), dataset, model and method: ours (mean ± 95 % half-width over
    seeds, scenarios pooled within a seed) and the gap to retrain |method - retrain| with its interval, next to the
    paper's numbers; a "retrain vs retrain" row gives the noise floor of the gaps (pairs of seeds)."""
    cfg, m = run.config, run.metrics
    wanted = cfg.table_metrics or ["test_retain_acc", "test_forget_acc", "mia_svc", "unlearn_time_s",
                                   "speedup_vs_retrain"]
    metrics = metrics or [x for x in wanted if x in set(m.metric)]
    kinds = run.kinds
    methods = ["original", *cfg.settings.methods]
    ref = run.reference
    has_retrain = ref is not None
    rows = []
    for kind in kinds:
        n_scen = m[m.kind == kind].scenario.nunique()
        for ds in run.datasets:
            for model in cfg.settings.models:
                exp = next((e for e in cfg.expected if e.model == model and e.dataset == ds), None)
                exp = exp or next((e for e in cfg.expected if e.model == model), None)
                for method in methods:
                    if method != "original" and not run.runs_on(method, kind):
                        continue  # method_scenarios: not run on this kind (the caption says so)
                    rows.append(_result_row(run, kind, n_scen, ds, model, method, metrics, exp, has_retrain))
                if has_retrain:
                    rows.append(_floor_row(run, kind, n_scen, ds, model, metrics))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if not any(c.startswith("paper: ") for c in df.columns):
        df["paper"] = "not available"  # no confirmed number for any model of the run
    if df.dataset.nunique() <= 1:
        df = df.drop(columns=["dataset"])
    return drop_unrecorded(df.fillna("n/a"))


def _result_row(run: Run, kind: str, n_scen: int, ds: str, model: str, method: str, metrics: list[str], exp,
                has_retrain: bool) -> dict:
    row = {"scenarios": f"{kind} ({n_scen})", "dataset": ds, "model": model, "method": method}
    for metric in metrics:
        label = metric_label(metric)
        row[f"ours: {label}"] = _fmt_interval(per_seed(run.metrics, method, metric, model, ds, kind).to_numpy())
        if has_retrain and has_gap_to_retrain(metric):
            gap = gap_to_retrain(run.metrics, method, metric, model, ds, kind)
            row[f"|Δ retrain|: {label}"] = "0" if method == run.reference else _fmt_interval(gap.to_numpy())
        if exp is not None and metric in (exp.rows.get(method) or {}):
            vals = exp.rows[method][metric]
            row[f"paper: {label}"] = _fmt(vals[0], vals[1] if len(vals) > 1 else None)
        elif exp is not None and any(metric in r for r in exp.rows.values()):
            row[f"paper: {label}"] = "–"
    # the call's budget (the original is trained, not unlearned: no call)
    row.update(budget_cells(budget_values(run, method, model, ds, kind)) if method != "original"
               else dict.fromkeys(BUDGET_COLUMNS, "–"))
    return row


def _floor_row(run: Run, kind: str, n_scen: int, ds: str, model: str, metrics: list[str]) -> dict:
    row = {"scenarios": f"{kind} ({n_scen})", "dataset": ds, "model": model, "method": "retrain vs retrain (floor)"}
    for metric in metrics:
        if has_gap_to_retrain(metric):
            floor = retrain_floor(run.metrics, metric, model, ds, kind)
            has_retrain = not select(run.metrics, run.reference, metric, model, ds, kind).empty
            row[f"|Δ retrain|: {metric_label(metric)}"] = (
                _fmt(float(floor.mean())) if not floor.empty else "one seed" if has_retrain else "–")
    return row


def _stacked(df: pd.DataFrame) -> pd.DataFrame:
    """For display: each metric's "ours" and "|Δ retrain|" columns as one column of two lines (the gap in small
    type under the value), so the table is half as wide; the floor row shows its gap alone."""
    out = {}
    for col in df.columns:
        if col.startswith("|Δ retrain|: "):
            continue
        if not col.startswith("ours: "):
            out[col] = df[col]
            continue
        label = col.removeprefix("ours: ")
        gap = df.get(f"|Δ retrain|: {label}")
        if gap is None:
            out[label] = df[col]
            continue
        out[label] = [v if g in ("n/a", "–") or v == "–" else f'<span class="ul-gap">Δ {g}</span>' if v == "n/a"
                      else f'{v}<br><span class="ul-gap">Δ {g}</span>' for v, g in zip(df[col], gap, strict=True)]
    return pd.DataFrame(out, index=df.index)


def results_table(run: Run):
    df = results_frame(run)
    stacked = not df.empty and any(c.startswith("|Δ retrain|: ") for c in df.columns)
    if stacked:
        df = _stacked(df)
    models = list(run.config.settings.models)
    exp = [e for e in run.config.expected if e.model in models]
    src = "; ".join(f"paper columns: {e.dataset}/{e.model}, {e.source}" for e in exp) or (
        "The paper has no confirmed numbers for these models")
    if not exp and "paper" in df.columns:
        df = df.drop(columns=["paper"])  # "not available" on every row says nothing the caption does not
    missing = [m for m in models if not any(e.model == m for e in exp)]
    if exp and missing:
        src += f". n/a: the paper has no confirmed numbers for {', '.join(missing)}"
    if exp:
        src += ". –: the paper's table has the metric but not the method"
    gaps = ("; under it, in small type, Δ: the gap to retraining |method − retrain| with its interval, and in "
            "each group's last row the retrain-vs-retrain noise floor of that gap" if stacked else "")
    only = left_out_note(run)
    noops = " ".join(s.replace("**", "").replace("`", "") for k in run.kinds for s in no_op_sentences(run, k))
    budget = f" Budget: {BUDGET_NOTE}." if any(c == "steps" for c in df.columns) else ""
    caption = (f"Ours [{run.stamp}]: mean ± half-width of the 95 % interval over seeds{gaps}. {src}.{budget}{only}"
               + (f" {noops}" if noops else ""))
    return split_table(df, caption, f"Continued (the same rows, more metrics) [{run.stamp}]: the notes of the table "
                                    f"above apply.")


def split_table(df: pd.DataFrame, caption: str, continued: str, max_columns: int | None = None,
                together: tuple[tuple[str, ...], ...] = ()):
    """``df`` as one Styler with ``caption``, or, wider than ``max_columns``, as ``Tables`` of the ``column_parts``
    (the row labels repeated), the first with ``caption`` and the others with ``continued``."""
    parts = column_parts(list(df.columns), max_columns or MAX_COLUMNS, together)
    if len(parts) == 1:
        return df.style.hide(axis="index").set_caption(caption)
    return Tables([df[cols].style.hide(axis="index").set_caption(caption if i == 0 else continued)
                   for i, cols in enumerate(parts)])


MAX_COLUMNS = 9  # a results table wider than this scrolls sideways on a 1,400 px page: it is split


def column_parts(columns: list[str], max_columns: int = MAX_COLUMNS,
                 together: tuple[tuple[str, ...], ...] = ()) -> list[list[str]]:
    """The results table's columns in tables of at most ``max_columns``: the row labels (scenarios, dataset, model,
    method) repeated in each, a metric's own column kept beside its paper column and the columns of each
    ``together`` group (those present) in one table."""
    ids = [c for c in columns if c in ("scenarios", "dataset", "model", "method")]
    groups: list[list[str]] = []
    for c in columns:
        if c in ids:
            continue
        if c.startswith("paper: ") and groups and groups[-1][0] == c.removeprefix("paper: "):
            groups[-1].append(c)
        elif any(c in t and groups and groups[-1][-1] in t for t in together):
            groups[-1].append(c)
        else:
            groups.append([c])
    parts: list[list[str]] = [[]]
    for g in groups:
        if parts[-1] and len(ids) + len(parts[-1]) + len(g) > max_columns:
            parts.append([])
        parts[-1] += g
    return [ids + p for p in parts]


class Tables:
    """Several tables shown one below the other (a results table split to fit the page)."""

    def __init__(self, stylers: list) -> None:
        self.stylers = stylers

    @property
    def caption(self) -> str:
        """The first table's caption (the whole table's notes)."""
        return self.stylers[0].caption

    def _repr_html_(self) -> str:
        return "\n".join(s.to_html() for s in self.stylers)


def left_out_note(run: Run) -> str:
    """Which methods were left out of which scenario kinds of the run, and why (their registered support, or the
    run's ``method_scenarios``): the sentence the tables put in their captions."""
    s = run.config.settings
    kinds = run.kinds
    notes = []
    for m in s.methods:
        missing = [k for k in kinds if not run.runs_on(m, k)]
        if not missing:
            continue
        supported = run.registered.get(m, KIND_ORDER)
        if any(k not in supported for k in missing):
            notes.append(f" {m} is defined for {' and '.join(supported)} forgetting only (as it registered): "
                         f"not run on {' and '.join(k for k in missing if k not in supported)} scenarios.")
        chosen = [k for k in missing if k in supported]
        if chosen:
            notes.append(f" {m} runs on {' and '.join(s.method_scenarios[m])} scenarios only (`method_scenarios`).")
    return "".join(notes)


ENSEMBLE_SHOWN = {  # (metric, variant) -> column
    ("F", "marginal"): "F marginal", ("F", "conditional"): "F conditional", ("score", "marginal"): "score marginal",
    ("ulira_accuracy", "marginal"): "U-LiRA acc", ("ulira_auc", "marginal"): "U-LiRA AUC",
    ("ulira_tpr_at_fpr_0.01", "marginal"): "U-LiRA TPR@1%FPR", ("klom_forget_mean", "marginal"): "KLOM forget",
    ("klom_retain_mean", "marginal"): "KLOM retain", ("klom_test_mean", "marginal"): "KLOM test",
}


def ensemble_frame(run: Run) -> pd.DataFrame:
    """One row per method (and the retrain-vs-retrain floor): F, its final score, U-LiRA and KLOM."""
    e = run.ensemble
    if e is None or e.empty:
        return pd.DataFrame()
    floor = e[e.method == "retrain vs retrain"]
    rows = []
    for method in [*[m for m in dict.fromkeys(e.method) if m != "retrain vs retrain"], "retrain vs retrain"]:
        d = floor if method == "retrain vs retrain" else e[e.method == method]
        row = {"method": method, "N": int(d.n_models.max())}
        for (metric, variant), col in ENSEMBLE_SHOWN.items():
            hit = d[(d.metric == metric) & ((d.variant == variant) | (d.variant == "floor"))]
            row[col] = _num(float(hit.value.iloc[0])) if len(hit) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def ensemble_table(run: Run):
    """The per-example scores of the run's ensemble; a note when the profile has none."""
    from IPython.display import Markdown

    df = ensemble_frame(run)
    if df.empty:
        return Markdown("*This profile has no ensemble (`ensemble:` in the paper YAML): no per-example scores.*")
    e = run.config.settings.ensemble
    model = e.model or next(iter(run.config.settings.models))
    cond = "" if e.conditional else ", not run in this profile (`ensemble.conditional: false`)"
    if not e.conditional:
        df = df.drop(columns=["F conditional"], errors="ignore")
    return df.style.hide(axis="index").set_caption(
        f"Per-example forgetting scores [{run.profile} profile; ensemble: N = {e.n} models per side on "
        f"{e.dataset or run.config.settings.dataset} {e.scenario}, {model}; its own recipe: "
        f"{e.overrides or 'the profile'}]. "
        f"F (NeurIPS 2023): mean points of the per-example ε, higher is better, read against the 'retrain vs retrain' "
        f"row (two independent retrain sets of the same N: identical distributions do not score 1 at small N). "
        f"Marginal: N originals unlearned once each; conditional: one original, N method seeds (a deterministic "
        f"method's N outputs coincide and score 0){cond}. Score: F × RA_u/RA_r × TA_u/TA_r. U-LiRA: per-example "
        f"Gaussian "
        f"likelihood-ratio attack, ideal accuracy/AUC 0.5. KLOM: mean per-example KL of margins to the retrains, "
        f"ideal: the floor row.")


def deviations_table(cfg: PaperConfig):
    """Every deviation and interpretation, whole (a Styler: no cell is cut short). The texts are plain text, escaped
    for HTML: a switch such as ``methods.<baseline>`` must not be read as a tag and vanish."""
    df = pd.DataFrame([{"what": d.what, "upstream code": d.upstream, "this suite (default)": d.ours,
                        "switch": d.switch} for d in cfg.deviations])
    return df.style.format(escape="html").hide(axis="index").set_caption(
        "Deviations and interpretations: the default is the paper's behaviour; the switch selects the alternative")
