"""Figures of a run: accuracies, traces, per-class/per-layer values, times."""

from __future__ import annotations

from ..metrics.spec import metric_label
from .run import Run

# ----------------------------------------------------------------------------------------------
# figures


def plot_accuracy(run: Run, methods: list[str] | None = None, metrics: list[str] | None = None):
    """Accuracies per scenario for the original, the given methods and retrain: one panel per metric (rows) and
    model (columns), one bar per method in the same colour everywhere."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    m = run.metrics
    first = next(iter(run.config.settings.methods))
    methods = methods or ["original", first, run.reference]
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
