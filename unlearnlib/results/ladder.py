"""The scale ladder (issue 20 part 4): the benchmark protocol at several training-set sizes, one run per size
(``results/<paper>/ladder-<n>/``), read together: per scenario kind, each method's forget-quality gap and utility
gap to retrain against the size (log axis), defaults and tuned, so that a reader sees which findings persist as the
scale grows toward the papers'. Reads only run folders."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from ..metrics.spec import metric_label
from ..paths import results_root
from .leaderboard import FORGET_AXIS, KIND_TITLES, UTILITY_AXIS, leaderboard_frame
from .run import Run
from .tuning import base_name, is_tuned

LADDER = "ladder-"
LADDER_COMMAND = "python -c 'import unlearnlib as ul; ul.run_ladder(\"benchmark\", executor=\"ray\", workers=2)'"


def ladder_runs(paper: str = "benchmark", root: Path | None = None) -> list[tuple[int, Run]]:
    """(training images, run) of every finished ladder rung of ``paper``, smallest first."""
    base = (root or results_root()) / paper
    out = []
    for d in sorted(base.glob(f"{LADDER}*")) if base.exists() else []:
        size = d.name[len(LADDER):]
        if not size.isdigit() or not (d / "metrics.csv").exists():
            continue
        try:
            out.append((int(size), Run.load(d)))
        except Exception as e:  # noqa: BLE001 - a damaged rung is left out with a warning, never breaks the chapter
            logging.getLogger(__name__).warning("%s: not loaded (%s: %s)", d.name, type(e).__name__, str(e)[:160])
    return sorted(out, key=lambda x: x[0])


def ladder_frame(paper: str = "benchmark", kind: str = "class", root: Path | None = None) -> pd.DataFrame:
    """One row per size and method (tuned rows too, retrain and the original left out): ``forget_gap`` (mean |Δ| of
    the kind's forget axis to retrain over seeds), ``utility_gap`` (retrain − method on its utility axis, mean over
    seeds; positive: utility lost) with its 95 % interval, and the floors."""
    rows = []
    fx, ux = FORGET_AXIS[kind], UTILITY_AXIS[kind]
    for size, run in ladder_runs(paper, root):
        if kind not in run.kinds:
            continue
        df = leaderboard_frame(run, kind)
        df = df[df.supported & ~df.reference.astype(bool) & (df.method != "original")]
        for _, r in df.iterrows():
            if math.isnan(r.get(f"{fx}_abs", math.nan)):
                continue  # configured but not run at this size
            rows.append({"size": size, "dataset": r.dataset, "method": r.method, "base": base_name(r.method),
                         "tuned": is_tuned(r.method), "forget_gap": r[f"{fx}_abs"],
                         "forget_floor": r[f"{fx}_floor"], "utility_gap": -r[f"{ux}_gap"],
                         "utility_lo": -r[f"{ux}_hi"], "utility_hi": -r[f"{ux}_lo"],
                         "utility_floor": r[f"{ux}_floor"], "profile": run.profile})
    return pd.DataFrame(rows, columns=["size", "dataset", "method", "base", "tuned", "forget_gap", "forget_floor",
                                       "utility_gap", "utility_lo", "utility_hi", "utility_floor", "profile"])


def stopped_early(df: pd.DataFrame) -> dict[str, int]:
    """method -> the largest size it ran at, for the methods that stop before the ladder's top."""
    if df.empty:
        return {}
    top = df["size"].max()
    last = df[~df.tuned].groupby("base")["size"].max()
    return {m: int(s) for m, s in last.items() if s < top}


def plot_ladder(paper: str = "benchmark", kind: str = "class", root: Path | None = None):
    """Per scenario kind: forget-quality gap (left) and utility loss (right) against the training-set size (log
    axis), one colour per method, defaults dashed with hollow markers, tuned solid with filled ones; the retrain
    noise floor shaded. Without a ladder run: a note with the command that makes one."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from IPython.display import Markdown

    df = ladder_frame(paper, kind, root)
    if df.empty:
        return Markdown(f"*No scale-ladder run yet (forgetting {KIND_TITLES[kind]}): `{LADDER_COMMAND}` runs "
                        f"the benchmark's `ladder-*` profiles (about 90 min on 2 cores), then this section shows "
                        f"it.*")
    methods = list(dict.fromkeys(df.base))
    colours = dict(zip(methods, sns.color_palette("tab20", len(methods)), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=(13.5, 5.2))
    fx, ux = metric_label(FORGET_AXIS[kind]), metric_label(UTILITY_AXIS[kind])
    for ax, col, label in ((axes[0], "forget_gap", f"forget-quality gap |Δ {fx}|"),
                           (axes[1], "utility_gap", f"utility loss: retrain − method, {ux}")):
        fl = df.groupby("size")[col.replace("gap", "floor")].first()
        ax.fill_between(fl.index, -fl.values if col == "utility_gap" else 0 * fl.values, fl.values,
                        color="#2e7d32", alpha=0.12, label="retrain noise floor")
        for (m, tuned), d in df.groupby(["base", "tuned"], sort=False):
            d = d.sort_values("size")
            ax.plot(d["size"], d[col], ls="-" if tuned else "--", lw=1.4 if tuned else 1.0, marker="o",
                    markerfacecolor=colours[m] if tuned else "white", color=colours[m],
                    label=m + (" (tuned)" if tuned else ""))
        ax.set_xscale("log")
        sizes = sorted(df["size"].unique())
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.axhline(0, color="black", lw=0.6)
        ax.set(xlabel="training images (log scale)", ylabel=label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False, ncol=1)
    early = stopped_early(df)
    note = ("; stops early (too slow for the top size): " + ", ".join(f"{m} at {s}" for m, s in early.items())
            if early else "")
    fig.suptitle(f"Scale ladder, forgetting {KIND_TITLES[kind]}: gaps to retrain against the training-set size "
                 f"(dashed/hollow: defaults; solid/filled: tuned){note}\n[{', '.join(sorted(set(df.profile)))}: "
                 f"Fashion-MNIST, means over seeds; not any paper's setting]", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    plt.close(fig)  # shown once, as the cell's value
    return fig
