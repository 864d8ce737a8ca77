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
LADDER_COMMAND = "make ladder EXECUTOR=ray WORKERS=2"


def ladder_runs(paper: str = "benchmark", root: Path | None = None) -> list[tuple[int, Run]]:
    """(training images, run) of every finished ladder rung of ``paper``, smallest first: from ``root`` alone when
    given, else your runs (``results/``) and, for a size you have not run, our committed reference run of it
    (``reference/``), so the chapter shows the ladder from a clone without rerunning it."""
    from ..paths import reference_root
    from .reference import has_run

    found: dict[int, Run] = {}
    for base in ([root] if root else [results_root(), reference_root()]):
        base = base / paper
        for d in sorted(base.glob(f"{LADDER}*")) if base.exists() else []:
            size = d.name[len(LADDER):]
            if not size.isdigit() or int(size) in found or not has_run(d):
                continue
            try:
                found[int(size)] = Run.load(d)
            except Exception as e:  # noqa: BLE001 - a damaged rung is left out with a warning, never breaks the chapter
                logging.getLogger(__name__).warning("%s: not loaded (%s: %s)", d.name, type(e).__name__, str(e)[:160])
    return sorted(found.items(), key=lambda x: x[0])


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


def _size(profile: str) -> int:
    tail = profile[len(LADDER):]
    return int(tail) if profile.startswith(LADDER) and tail.isdigit() else 0


def stopped_early(df: pd.DataFrame) -> dict[str, int]:
    """method -> the largest size it ran at, for the methods that stop before the ladder's top."""
    if df.empty:
        return {}
    top = df["size"].max()
    last = df[~df.tuned].groupby("base")["size"].max()
    return {m: int(s) for m, s in last.items() if s < top}


def plot_ladder(paper: str = "benchmark", kind: str = "class", root: Path | None = None):
    """Per scenario kind, one small panel per method (shared axes): its forget-quality gap and its utility loss to
    retrain against the training-set size (log axis), defaults dashed with hollow markers, tuned solid with filled
    ones, the utility's interval over seeds as a bar and the retrain noise floor shaded. Without a ladder run: a
    note with the command that makes one."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown

    df = ladder_frame(paper, kind, root)
    if df.empty:
        return Markdown(f"*No scale-ladder run yet (forgetting {KIND_TITLES[kind]}): `{LADDER_COMMAND}` runs "
                        f"the benchmark's `ladder-*` profiles (65 min on 2 cores with Ray, measured), then this "
                        f"section shows it.*")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    methods = list(dict.fromkeys(df.base))
    early = stopped_early(df)
    ncol = min(5, len(methods))
    nrow = math.ceil(len(methods) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.9 * ncol + 0.4, 2.3 * nrow + 1.3), sharex=True, sharey=True,
                             squeeze=False)
    colour = {"forget_gap": "#1565c0", "utility_gap": "#e65100"}
    sizes = sorted(df["size"].unique())
    floor = df.groupby("size")["forget_floor"].first()
    for ax, m in zip(axes.flat, methods, strict=False):
        ax.fill_between(floor.index, 0 * floor.values, floor.values, color="#2e7d32", alpha=0.12, lw=0)
        for tuned in (False, True):
            d = df[(df.base == m) & (df.tuned == tuned)].sort_values("size")
            if d.empty:
                continue
            for col, c in colour.items():
                ax.plot(d["size"], d[col], ls="-" if tuned else "--", lw=1.5 if tuned else 1.0, marker="o", ms=4,
                        color=c, markerfacecolor=c if tuned else "white")
            ax.vlines(d["size"], d["utility_lo"], d["utility_hi"], color=colour["utility_gap"], lw=0.8,
                      alpha=0.6 if tuned else 0.35)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(m + (f" (stops at {early[m]})" if m in early else ""), fontsize=9)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(x) for x in sizes], fontsize=7)
        ax.minorticks_off()
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    for i, ax in enumerate(list(axes.flat)[:len(methods)]):
        if i + ncol >= len(methods):  # the lowest panel of its column: its size labels
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("training images (log)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("gap to retrain (points)", fontsize=8)
    fx, ux = metric_label(FORGET_AXIS[kind]), metric_label(UTILITY_AXIS[kind])
    handles = [Line2D([], [], color=colour["forget_gap"], lw=1.5, label=f"forget-quality gap |Δ {fx}|"),
               Line2D([], [], color=colour["utility_gap"], lw=1.5, label=f"utility loss: retrain − method, {ux} "
                                                                          f"(bar: 95 % interval over seeds)"),
               Line2D([], [], color="grey", ls="--", marker="o", markerfacecolor="white", label="defaults"),
               Line2D([], [], color="grey", ls="-", marker="o", label="tuned"),
               Patch(color="#2e7d32", alpha=0.25, label="retrain noise floor (forget axis)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Scale ladder, forgetting {KIND_TITLES[kind]}: each method's gaps to retrain against the "
                 f"training-set size, defaults and tuned\n[{', '.join(sorted(set(df.profile), key=_size))}: "
                 f"Fashion-MNIST, means over seeds; not any paper's setting]", fontsize=10)
    fig.tight_layout(rect=(0, 0.09 if nrow < 3 else 0.06, 1, 1))
    plt.close(fig)  # shown once, as the cell's value
    return fig
