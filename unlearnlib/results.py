"""Tidy results: load a run, paper-vs-ours tables, claim verdicts, figures for the book."""

from __future__ import annotations

import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from .claims import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    INTERVAL_NOTE,
    NOT_COMPARABLE,
    PIPELINE_ONLY,
    evaluate_claim,
    per_seed,
    select,
    t_interval,
)
from .config import SCENARIO_KINDS, PaperConfig, from_dict, load_paper, supported_kinds
from .metrics.spec import has_gap_to_retrain, metric_label
from .paths import results_root


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

    @classmethod
    def load(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / "metrics.csv").exists():
            raise FileNotFoundError(f"no results in {path}; run `make reproduce PAPER=...` first")
        raw = yaml.safe_load((path / "config.resolved.yaml").read_text())
        raw.pop("resolved_methods", None)
        raw.pop("resolved_methods_by_dataset", None)
        cfg = from_dict(PaperConfig, raw, raw.get("id", "run"))
        traces = pd.read_csv(path / "traces.csv") if (path / "traces.csv").exists() else None
        ensemble = pd.read_csv(path / "ensemble.csv") if (path / "ensemble.csv").exists() else None
        return cls(path, cfg, pd.read_csv(path / "metrics.csv"), pd.read_csv(path / "timings.csv"),
                   json.loads((path / "env.json").read_text()), traces, ensemble)

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
        df = pd.DataFrame({name: {k: str(v) for k, v in d.items()} for name, d in per.items()})
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


def load_run(paper: str, profile: str) -> Run:
    return Run.load(results_root() / paper / profile)


def latest_runs(paper: str) -> list[Run]:
    out = []
    for prof in ("paper", "cpu", "smoke"):
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


KIND_ORDER = SCENARIO_KINDS  # the order of the results table's row groups


def scenario_kind(tag: str) -> str:
    return next((k for k in KIND_ORDER if tag.startswith(k)), tag)


def diff_to_retrain(metrics: pd.DataFrame, method: str, metric: str, model: str, dataset: str,
                    kind: str) -> pd.Series:
    """Per (seed, scenario): method - retrain, each against the same seed's retrain (pairs both have)."""
    a = select(metrics, method, metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    b = select(metrics, "retrain", metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    both = a.index.intersection(b.index)
    return a.loc[both] - b.loc[both]


def gap_to_retrain(metrics: pd.DataFrame, method: str, metric: str, model: str, dataset: str,
                   kind: str) -> pd.Series:
    """Per seed: the mean over the scenarios of |method - retrain| (the same seed's original and retrain)."""
    return diff_to_retrain(metrics, method, metric, model, dataset, kind).abs().groupby(level="seed").mean()


def retrain_floor(metrics: pd.DataFrame, metric: str, model: str, dataset: str, kind: str) -> pd.Series:
    """Retrain vs retrain: per pair of seeds, the mean over the scenarios of |retrain_s - retrain_s'|."""
    r = select(metrics, "retrain", metric, model, dataset, kind).set_index(["seed", "scenario"]).value
    seeds = sorted(set(r.index.get_level_values("seed")))
    out = {}
    for i, s in enumerate(seeds):
        for t in seeds[i + 1:]:
            a, b = r.xs(s, level="seed"), r.xs(t, level="seed")
            both = a.index.intersection(b.index)
            out[f"{s}-{t}"] = float((a.loc[both] - b.loc[both]).abs().mean())
    return pd.Series(out, dtype=float)


def results_frame(run: Run, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per scenario kind (never pooled across kinds), dataset, model and method: ours (mean ± 95 % half-width over
    seeds, scenarios pooled within a seed) and the gap to retrain |method - retrain| with its interval, next to the
    paper's numbers; a "retrain vs retrain" row gives the noise floor of the gaps (pairs of seeds)."""
    cfg, m = run.config, run.metrics
    wanted = cfg.table_metrics or ["test_retain_acc", "test_forget_acc", "mia_svc", "unlearn_time_s",
                                   "speedup_vs_retrain"]
    metrics = metrics or [x for x in wanted if x in set(m.metric)]
    kinds = [k for k in KIND_ORDER if any(scenario_kind(t) == k for t in set(m.scenario))]
    methods = ["original", *cfg.settings.methods]
    has_retrain = (m.method == "retrain").any()
    rows = []
    for kind in kinds:
        n_scen = m[m.scenario.map(scenario_kind) == kind].scenario.nunique()
        for ds in run.datasets:
            for model in cfg.settings.models:
                exp = next((e for e in cfg.expected if e.model == model and e.dataset == ds), None)
                exp = exp or next((e for e in cfg.expected if e.model == model), None)
                for method in methods:
                    if method != "original" and not cfg.settings.runs_on(method, kind):
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
    return df.fillna("n/a")


def _result_row(run: Run, kind: str, n_scen: int, ds: str, model: str, method: str, metrics: list[str], exp,
                has_retrain: bool) -> dict:
    row = {"scenarios": f"{kind} ({n_scen})", "dataset": ds, "model": model, "method": method}
    for metric in metrics:
        label = metric_label(metric)
        row[f"ours: {label}"] = _fmt_interval(per_seed(run.metrics, method, metric, model, ds, kind).to_numpy())
        if has_retrain and has_gap_to_retrain(metric):
            gap = gap_to_retrain(run.metrics, method, metric, model, ds, kind)
            row[f"|Δ retrain|: {label}"] = "0" if method == "retrain" else _fmt_interval(gap.to_numpy())
        if exp is not None and metric in (exp.rows.get(method) or {}):
            vals = exp.rows[method][metric]
            row[f"paper: {label}"] = _fmt(vals[0], vals[1] if len(vals) > 1 else None)
        elif exp is not None and any(metric in r for r in exp.rows.values()):
            row[f"paper: {label}"] = "–"
    return row


def _floor_row(run: Run, kind: str, n_scen: int, ds: str, model: str, metrics: list[str]) -> dict:
    row = {"scenarios": f"{kind} ({n_scen})", "dataset": ds, "model": model, "method": "retrain vs retrain (floor)"}
    for metric in metrics:
        if has_gap_to_retrain(metric):
            floor = retrain_floor(run.metrics, metric, model, ds, kind)
            has_retrain = not select(run.metrics, "retrain", metric, model, ds, kind).empty
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
    return df.style.hide(axis="index").set_caption(
        f"Ours [{run.stamp}]: mean ± half-width of the 95 % interval over seeds{gaps}. {src}.{only}")


def left_out_note(run: Run) -> str:
    """Which methods were left out of which scenario kinds of the run, and why (their registered support, or the
    run's ``method_scenarios``): the sentence the tables put in their captions."""
    s = run.config.settings
    kinds = [k for k in KIND_ORDER if any(scenario_kind(t) == k for t in set(run.metrics.scenario))]
    notes = []
    for m in s.methods:
        missing = [k for k in kinds if not s.runs_on(m, k)]
        if not missing:
            continue
        supported = supported_kinds(m)
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


# ----------------------------------------------------------------------------------------------
# figures


def plot_accuracy(run: Run, methods: list[str] | None = None, metrics: list[str] | None = None):
    """Accuracies per scenario for the original, the given methods and retrain: one panel per metric (rows) and
    model (columns), one bar per method in the same colour everywhere."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = run.metrics
    first = next(iter(run.config.settings.methods))
    methods = methods or ["original", first, "retrain"]
    if metrics is None:
        present = set(m.dropna(subset=["value"]).metric)
        metrics = [k for k in ("test_forget_acc", "test_retain_acc", "forget_acc", "test_acc", "asr") if k in present]
        if "test_forget_acc" in metrics:
            metrics = [k for k in metrics if k not in ("forget_acc", "test_acc")] or metrics
    keep = m[m.method.isin(methods) & m.metric.isin(metrics)].dropna(subset=["value"])
    metrics = [k for k in metrics if k in set(keep.metric)] or metrics[:1]
    panels = _panels(run)
    # one panel per (metric, model[, dataset]): x = scenario, one bar per method (its mean over seeds, with the
    # seeds' 95 % interval when there are several), the same colour per method everywhere
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=False))
    width = 4.6 * len(panels) + 1.6  # 1.6 in on the right for the legend
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(width, 2.3 * len(metrics) + 0.6), squeeze=False,
                             sharey=True)
    errorbar = ("ci", 95) if keep.seed.nunique() > 1 else None
    for i, metric in enumerate(metrics):
        for j, (title, sel) in enumerate(panels):
            ax = axes[i][j]
            d = keep[sel(keep) & (keep.metric == metric)]
            if len(d):
                sns.barplot(data=d, x="scenario", y="value", hue="method", hue_order=methods, palette=palette, ax=ax,
                            errorbar=errorbar, legend=False)
            ax.set(ylim=(0, 100), xlabel="forget scenario" if i == len(metrics) - 1 else "",
                   ylabel=metric_label(metric) if j == 0 else "")
            ax.yaxis.label.set_size(8)
            if i == 0:
                ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[k]) for k in methods]
    fig.legend(handles, methods, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"Before (original) and after ({', '.join(x for x in methods if x != 'original')})\n[{run.stamp}]",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / width, 1))
    return fig



def _panels(run: Run) -> list[tuple[str, object]]:
    """(title, row selector) per model, and per dataset when the run has several: figures never pool datasets."""
    models, datasets = list(run.config.settings.models), run.datasets
    if len(datasets) == 1:
        return [(m, lambda d, m=m: d.model == m) for m in models]
    return [(f"{m} · {ds}", lambda d, m=m, ds=ds: (d.model == m) & (d.dataset == ds))
            for ds in datasets for m in models]


def plot_traces(run: Run, method: str, prefix: str = ""):
    """A method's logged per-iteration statistic(s) (e.g. a stopping rule), one line per scenario."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = run.traces
    if t is None or t.empty:
        raise ValueError(f"no traces in {run.path}")
    t = t[(t.method == method) & t.name.str.startswith(prefix)]
    if t.empty:
        raise ValueError(f"method {method!r} logged no trace starting with {prefix!r}")
    names = sorted(t.name.unique())
    datasets = sorted(t.dataset.unique()) if "dataset" in t.columns else []
    panels = [(n, ds) for n in names for ds in datasets] if len(datasets) > 1 else [(n, None) for n in names]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False)
    for ax, (name, ds) in zip(axes[0], panels, strict=True):  # one panel per dataset: traces never pooled
        d = t[(t.name == name) & ((t.dataset == ds) if ds is not None else True)]
        sns.lineplot(data=d, x="step", y="value", hue="scenario", style="model", ax=ax, marker="o", markersize=3)
        ax.set(title=name if ds is None else f"{name} · {ds}", xlabel="step", ylabel=name)
    fig.suptitle(f"{method}: logged statistics [{run.stamp}]", fontsize=10)
    fig.tight_layout()
    return fig


def plot_prefixed(run: Run, prefix: str, methods: list[str] | None = None, xlabel: str = ""):
    """Bars of every ``<prefix>[k]`` metric (e.g. ``forget_prediction[k]``, ``weight_distance_original[layer]``),
    mean over scenarios and seeds, one panel per model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = run.metrics
    d = m[m.metric.str.startswith(prefix + "[")].dropna(subset=["value"])
    if methods is not None:
        d = d[d.method.isin(methods)]
    if d.empty:
        raise ValueError(f"no {prefix}[...] metrics in this run")
    d = d.assign(key=d.metric.str.slice(len(prefix) + 1, -1))
    panels = _panels(run)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.4 * len(panels)), squeeze=False)
    for ax, (title, sel) in zip(axes[:, 0], panels, strict=True):
        dm = d[sel(d)]
        sns.barplot(data=dm, x="key", y="value", hue="method", ax=ax, errorbar=None)
        ax.set(title=title, xlabel=xlabel or prefix, ylabel=metric_label(prefix))
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"{metric_label(prefix)} [{run.stamp}]", fontsize=10)
    fig.tight_layout()
    return fig


def plot_times(run: Run):
    """Unlearning time per method (log axis): the median over scenarios and seeds, the bar spans min to max."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = run.metrics[run.metrics.metric == "unlearn_time_s"]
    if len(run.datasets) > 1:  # times on different datasets are not pooled either
        t = t.assign(model=t.model + " · " + t.dataset)
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.4 * t.method.nunique() * max(1, t.model.nunique())))
    sns.barplot(data=t, y="method", x="value", hue="model", ax=ax, estimator="median", errorbar=("pi", 100),
                orient="h")
    ax.set_xscale("log")
    ax.set(xlabel="unlearning time (s, log scale; median, bar from min to max; evaluation excluded)", ylabel="")
    ax.set_title(f"Time per method\n[{run.stamp}; device {run.env.get('device')}]", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _models(cfg: PaperConfig) -> str:
    def sizes(v) -> str:
        extra = "".join(f", {k} {getattr(v, k)}" for k in ("depth", "heads", "patch") if getattr(v, k) is not None)
        return f"width {v.width or 'full'}{extra}"

    return ", ".join(f"{m} ({sizes(v)})" for m, v in cfg.settings.models.items())


def banner(cfg: PaperConfig | Run, device: str = "auto") -> str:
    if isinstance(cfg, Run):
        cfg = cfg.config
    s = cfg.settings
    return (f"{cfg.title} ({cfg.id}) — {cfg.profile_label}\n"
            f"dataset{'s' if len(cfg.datasets) > 1 else ''} {', '.join(cfg.datasets)}; models {_models(cfg)}; "
            f"{s.train.epochs} training epochs; {len(s.split.all_scenarios())} forget scenario(s); seeds {s.seeds}; "
            f"device {device}")


def paper_status(paper: str) -> dict:
    """One row of the book's status table."""
    cfg = load_paper(paper, "paper")
    runs = latest_runs(paper)
    row = {"paper": cfg.title, "id": paper, "status": "not run yet", "profile": "–", "claims": "–", "date": "–"}
    if runs:
        run = runs[0]
        row.update(status="run", profile=run.profile, date=run.env.get("created", "")[:10])
        if run.profile == "smoke":
            row["claims"] = PIPELINE_ONLY
        elif not cfg.claims:  # the benchmark: a leaderboard, no claims of its own
            n_methods = run.metrics[run.metrics.method != "original"].method.nunique()
            row["claims"] = (f"no claims: a leaderboard of {n_methods} methods on "
                             f"{run.metrics.scenario.nunique()} scenarios × {len(run.datasets)} dataset(s)")
        else:
            v = claims_frame(run).verdict
            row["claims"] = (f"{(v == HOLDS).sum()} hold, {(v == FAILS).sum()} fail, {(v == INCONCLUSIVE).sum()} "
                             f"inconclusive, {(v == NOT_COMPARABLE).sum()} not comparable")
    return row


def header(cfg: PaperConfig | Run):
    """What was available, what the paper claims, and which profile this is, before any number."""
    from IPython.display import Markdown

    if isinstance(cfg, Run):
        cfg = cfg.config
    label = cfg.profile_label.removeprefix(f"{cfg.profile} profile: ")
    leaderboard = not cfg.claims and not cfg.expected  # the benchmark: no paper, no claims
    warn = "" if cfg.profile == "paper" else (
        f"\n\n> **{cfg.profile} profile.** {label[:1].upper() + label[1:]}. Every number on this page comes from "
        f"this profile; " + ("the leaderboards compare the methods *in this run*, not in any paper's setting."
                             if leaderboard else "verdicts say whether the claim holds *in this run*, not in the "
                                                 "paper's setting."))
    if leaderboard:
        return Markdown(f"**Protocol.** {cfg.title}: {cfg.venue}. Code: {cfg.code}.\n\n**What it shows.** "
                        f"{cfg.headline}\n\n**Why.** {cfg.availability}{warn}")
    return Markdown(f"**Paper.** {cfg.title}. {cfg.authors}. {cfg.venue}. arXiv {cfg.arxiv}. "
                    f"Code: {cfg.code}.\n\n**Claim.** {cfg.headline}\n\n**Sources.** {cfg.availability}{warn}")
