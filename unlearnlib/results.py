"""Tidy results: load a run, paper-vs-ours tables, claim verdicts, figures for the book."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .config import Claim, PaperConfig, from_dict, load_paper
from .paths import results_root

METRIC_LABELS = {
    "test_retain_acc": "ACC_r test (%)",
    "test_forget_acc": "ACC_f test (%)",
    "train_retain_acc": "ACC_r train (%)",
    "train_forget_acc": "ACC_f train (%)",
    "mia_svc": "SVC MIA (%)",
    "mia_svc_augmented": "SVC MIA, augmented train features (%)",
    "unlearn_time_s": "time (s)",
    "speedup_vs_retrain": "speed-up vs retrain (x)",
    "forget_acc": "forget samples acc (%)",
    "retain_acc": "retain samples acc (%)",
    "test_acc": "test acc (%)",
    "unseen_acc": "unseen acc (%)",
    "asr": "attack success rate (%)",
    "mia_lr_cv": "loss-LR MIA acc (%)",
    "relearn_epochs": "relearn time (epochs)",
    "weight_distance_original": "weight distance to original",
    "weight_distance_retrain": "weight distance to retrain",
    "forget_prediction": "forget-class test images predicted as class (%)",
}
HOLDS, FAILS, NOT_COMPARABLE = "holds", "fails", "not comparable on this profile"


@dataclass
class Run:
    """One stored run: ``results/<paper>/<profile>/``."""

    path: Path
    config: PaperConfig
    metrics: pd.DataFrame
    timings: pd.DataFrame
    env: dict
    traces: pd.DataFrame | None = None

    @classmethod
    def load(cls, path: Path) -> "Run":
        path = Path(path)
        if not (path / "metrics.csv").exists():
            raise FileNotFoundError(f"no results in {path}; run `make reproduce PAPER=...` first")
        raw = yaml.safe_load((path / "config.resolved.yaml").read_text())
        raw.pop("resolved_methods", None)
        cfg = from_dict(PaperConfig, raw, raw.get("id", "run"))
        traces = pd.read_csv(path / "traces.csv") if (path / "traces.csv").exists() else None
        return cls(path, cfg, pd.read_csv(path / "metrics.csv"), pd.read_csv(path / "timings.csv"),
                   json.loads((path / "env.json").read_text()), traces)

    @property
    def profile(self) -> str:
        return self.config.profile

    @property
    def stamp(self) -> str:
        """Short label stamped on every table and figure."""
        return f"{self.profile} profile: {self.config.settings.dataset}, {_models(self.config)}"

    def data_summary(self) -> pd.DataFrame:
        d = dict(self.env.get("data", {}))
        d["forget scenarios"] = ", ".join(sorted(set(self.metrics.scenario)))
        d["seeds"] = ", ".join(str(x) for x in self.env.get("seeds", []))
        d["device"] = f"{self.env.get('device')} ({self.env.get('device_name')})"
        return pd.DataFrame({"value": [str(v) for v in d.values()]}, index=list(d.keys()))

    def mean(self, method: str, metric: str, model: str | None = None, kind: str = "") -> float:
        """Mean over scenarios (of one ``kind``: class, random, backdoor) and seeds (the paper's protocol
        averages over forget classes)."""
        m = self.metrics
        sel = (m.method == method) & (m.metric == metric)
        if model is not None:
            sel &= m.model == model
        if kind:
            sel &= m.scenario.str.startswith(kind)
        v = m.loc[sel, "value"].dropna()
        return float(v.mean()) if len(v) else float("nan")

    def summary(self, metrics: list[str] | None = None) -> pd.DataFrame:
        """mean and std over scenarios x seeds, per model and method."""
        m = self.metrics
        if metrics is not None:
            m = m[m.metric.isin(metrics)]
        g = m.groupby(["model", "method", "metric"], sort=False)["value"]
        return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def load_run(paper: str, profile: str) -> Run:
    return Run.load(results_root() / paper / profile)


def latest_runs(paper: str) -> list[Run]:
    out = []
    for prof in ("paper", "cpu", "smoke"):
        p = results_root() / paper / prof
        if (p / "metrics.csv").exists():
            try:
                out.append(Run.load(p))
            except Exception:  # an old, incompatible run must not break the book
                continue
    return out


# ----------------------------------------------------------------------------------------------
# claims

_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def evaluate_claim(run: Run, claim: Claim, model: str) -> dict:
    """Verdict of one claim for one model, from the run's numbers."""
    out = {"claim": claim.text, "model": model, "source": claim.source, "ours": float("nan"),
           "target": "", "verdict": NOT_COMPARABLE}
    if run.profile not in claim.profiles:
        out["target"] = f"checked on: {', '.join(claim.profiles)}"
        return out
    k = claim.scenario_kind
    if claim.requires_metric:
        pre = run.mean(claim.requires_method, claim.requires_metric, model, k)
        if math.isnan(pre) or not _OPS[claim.requires_op](pre, claim.requires_threshold):
            out["target"] = (f"precondition not met: {claim.requires_method} {claim.requires_metric} = "
                             f"{pre:.3g}, needs {claim.requires_op} {claim.requires_threshold:g}")
            return out
    value = run.mean(claim.method, claim.metric, model, k)
    if claim.kind == "threshold":
        target = claim.threshold
        desc = f"{claim.op} {target:g}"
    elif claim.kind == "vs_method":
        ref = run.mean(claim.reference, claim.metric, model, k)
        value = {"diff": value - ref, "drop": ref - value, "abs_diff": abs(value - ref)}[claim.transform]
        target = claim.threshold
        word = {"diff": f"{claim.method} - {claim.reference}", "drop": f"{claim.reference} - {claim.method}",
                "abs_diff": f"|{claim.method} - {claim.reference}|"}[claim.transform]
        desc = f"{word} {claim.op} {target:g}"
    else:  # vs_best
        refs = {r: run.mean(r, claim.metric, model, k) for r in claim.references}
        refs = {r: v for r, v in refs.items() if not math.isnan(v)}
        if not refs:
            out["target"] = "no baseline in this run"
            return out
        best = min(refs, key=refs.get) if claim.op in ("<", "<=") else max(refs, key=refs.get)
        target = refs[best]
        desc = f"{claim.op} best baseline ({best}: {target:.3g})"
    out["ours"], out["target"] = value, desc
    if math.isnan(value) or target is None or math.isnan(target):
        out["verdict"] = NOT_COMPARABLE
        out["target"] = desc + " (missing in this run)"
    else:
        out["verdict"] = HOLDS if bool(_OPS[claim.op](value, target)) else FAILS
    return out


def claims_frame(run: Run) -> pd.DataFrame:
    rows = [evaluate_claim(run, c, model) | {"id": c.id, "metric": c.metric}
            for c in run.config.claims for model in run.config.settings.models]
    return pd.DataFrame(rows, columns=["id", "claim", "model", "metric", "ours", "target", "verdict", "source"])


def _verdict_style(v: str) -> str:
    return {HOLDS: "background-color:#d4edda", FAILS: "background-color:#f8d7da"}.get(v, "color:#6c757d")


def claims_table(run: Run):
    """The claims table: our value, the check, the verdict — computed from the run's numbers."""
    df = claims_frame(run).drop(columns=["id"])
    df["ours"] = [f"{v:.3g}" if not math.isnan(v) else "n/a" for v in df.ours]
    return (df.style.map(_verdict_style, subset=["verdict"]).hide(axis="index")
            .set_caption(f"Claims, verdicts from this run [{run.stamp}]"))


def _fmt(mean: float, std: float | None = None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def results_frame(run: Run, metrics: list[str] | None = None) -> pd.DataFrame:
    """Ours (mean ± std over forget scenarios and seeds) next to the paper's numbers, per model/method."""
    cfg = run.config
    wanted = cfg.table_metrics or ["test_retain_acc", "test_forget_acc", "mia_svc", "unlearn_time_s",
                                   "speedup_vs_retrain"]
    metrics = metrics or [m for m in wanted if m in set(run.metrics.metric)]
    summ = run.summary(metrics)
    rows = []
    methods = ["original", *[m for m in cfg.settings.methods], *cfg.pending]
    for model in cfg.settings.models:
        exp = next((e for e in cfg.expected if e.model == model and e.dataset == cfg.settings.dataset), None)
        exp = exp or next((e for e in cfg.expected if e.model == model), None)
        for method in methods:
            row = {"model": model, "method": method}
            for metric in metrics:
                hit = summ[(summ.model == model) & (summ.method == method) & (summ.metric == metric)]
                label = METRIC_LABELS.get(metric, metric)
                row[f"ours: {label}"] = "pending" if method in cfg.pending else (
                    _fmt(hit["mean"].iloc[0], hit["std"].iloc[0]) if len(hit) else "–")
                if exp is not None and metric in (exp.rows.get(method) or {}):
                    vals = exp.rows[method][metric]
                    row[f"paper: {label}"] = _fmt(vals[0], vals[1] if len(vals) > 1 else None)
                elif exp is not None and any(metric in r for r in exp.rows.values()):
                    row[f"paper: {label}"] = "–"
            rows.append(row)
    df = pd.DataFrame(rows)
    if not any(c.startswith("paper: ") for c in df.columns):
        df["paper"] = "not available"  # no confirmed number for any model of the run
    return df.fillna("n/a")


def results_table(run: Run):
    df = results_frame(run)
    models = list(run.config.settings.models)
    exp = [e for e in run.config.expected if e.model in models]
    src = "; ".join(f"paper columns: {e.dataset}/{e.model}, {e.source}" for e in exp) or (
        "The paper has no confirmed numbers for these models: its column reads 'not available'")
    missing = [m for m in models if not any(e.model == m for e in exp)]
    if exp and missing:
        src += f". n/a: the paper has no confirmed numbers for {', '.join(missing)}"
    if exp:
        src += ". –: the paper's table has the metric but not the method"
    return df.style.hide(axis="index").set_caption(f"Ours [{run.stamp}] vs the paper. {src}.")


def deviations_table(cfg: PaperConfig) -> pd.DataFrame:
    return pd.DataFrame([{"what": d.what, "upstream code": d.upstream, "this suite (default)": d.ours,
                          "switch": d.switch} for d in cfg.deviations])


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
    models = list(run.config.settings.models)
    # one panel per (metric, model): x = scenario, one bar per method, the same colour per method everywhere
    palette = dict(zip(methods, sns.color_palette("tab10", len(methods)), strict=False))
    width = 4.6 * len(models) + 1.6  # 1.6 in on the right for the legend
    fig, axes = plt.subplots(len(metrics), len(models), figsize=(width, 2.3 * len(metrics) + 0.6), squeeze=False,
                             sharey=True)
    for i, metric in enumerate(metrics):
        for j, model in enumerate(models):
            ax = axes[i][j]
            d = keep[(keep.model == model) & (keep.metric == metric)]
            if len(d):
                sns.barplot(data=d, x="scenario", y="value", hue="method", hue_order=methods, palette=palette, ax=ax,
                            errorbar=None, legend=False)
            ax.set(ylim=(0, 100), xlabel="forget scenario" if i == len(metrics) - 1 else "",
                   ylabel=METRIC_LABELS.get(metric, metric) if j == 0 else "")
            ax.yaxis.label.set_size(8)
            if i == 0:
                ax.set_title(model)
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[k]) for k in methods]
    fig.legend(handles, methods, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(f"Before (original) and after ({', '.join(x for x in methods if x != 'original')})\n[{run.stamp}]",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / width, 1))
    return fig



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
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        d = t[t.name == name]
        sns.lineplot(data=d, x="step", y="value", hue="scenario", style="model", ax=ax, marker="o", markersize=3)
        ax.set(title=name, xlabel="step", ylabel=name)
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
    models = list(run.config.settings.models)
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 3.4 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models, strict=True):
        dm = d[d.model == model]
        sns.barplot(data=dm, x="key", y="value", hue="method", ax=ax, errorbar=None)
        ax.set(title=model, xlabel=xlabel or prefix, ylabel=METRIC_LABELS.get(prefix, prefix))
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(f"{METRIC_LABELS.get(prefix, prefix)} [{run.stamp}]", fontsize=10)
    fig.tight_layout()
    return fig


def plot_times(run: Run):
    """Unlearning time per method (log axis), mean over scenarios and seeds."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    t = run.metrics[run.metrics.metric == "unlearn_time_s"]
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * t.method.nunique() * max(1, t.model.nunique())))
    sns.barplot(data=t, y="method", x="value", hue="model", ax=ax, errorbar="sd", orient="h")
    ax.set_xscale("log")
    ax.set(xlabel="unlearning time (s, log scale; evaluation excluded)", ylabel="")
    ax.set_title(f"Time per method [{run.stamp}; device {run.env.get('device')}]", fontsize=10)
    fig.tight_layout()
    return fig


def _models(cfg: PaperConfig) -> str:
    return ", ".join(f"{m} (width {v.width or 'full'})" for m, v in cfg.settings.models.items())


def banner(cfg: PaperConfig | Run, device: str = "auto") -> str:
    if isinstance(cfg, Run):
        cfg = cfg.config
    s = cfg.settings
    return (f"{cfg.title} ({cfg.id}) — {cfg.profile_label}\n"
            f"dataset {s.dataset}; models {_models(cfg)}; "
            f"{s.train.epochs} training epochs; {len(s.split.all_scenarios())} forget scenario(s); seeds {s.seeds}; "
            f"device {device}")


def paper_status(paper: str) -> dict:
    """One row of the book's status table."""
    cfg = load_paper(paper, "paper")
    runs = latest_runs(paper)
    row = {"paper": cfg.title, "id": paper, "status": "not run yet", "profile": "–", "claims": "–", "date": "–"}
    if runs:
        run = runs[0]
        c = claims_frame(run)
        row.update(status="run", profile=run.profile, date=run.env.get("created", "")[:10],
                   claims=f"{(c.verdict == HOLDS).sum()} hold, {(c.verdict == FAILS).sum()} fail, "
                          f"{(c.verdict == NOT_COMPARABLE).sum()} not comparable")
    return row


def header(cfg: PaperConfig | Run):
    """What was available, what the paper claims, and which profile this is, before any number."""
    from IPython.display import Markdown

    if isinstance(cfg, Run):
        cfg = cfg.config
    warn = "" if cfg.profile == "paper" else (
        f"\n\n> **{cfg.profile} profile.** {cfg.profile_label}. Every number on this page comes from "
        f"this profile; verdicts say whether the claim holds *in this run*, not in the paper's setting.")
    return Markdown(f"**Paper.** {cfg.title}. {cfg.authors}. {cfg.venue}. arXiv {cfg.arxiv}. "
                    f"Code: {cfg.code}.\n\n**Claim.** {cfg.headline}\n\n**Sources.** {cfg.availability}{warn}")
