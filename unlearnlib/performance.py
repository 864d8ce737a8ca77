"""The book's Performance page, from the benchmark CSVs in ``results/benchmarks/`` (``benchmarks/*.py`` write them).

``page(bench_dir, out_dir) -> (markdown, figure files)`` draws the figures into ``out_dir`` (referenced by file name
from the markdown, so the page belongs in ``out_dir`` too); ``write_page(out_dir)`` also writes
``out_dir/performance.md``. A benchmark that has not been run is named with the command that runs it; with no CSV
at all the page says how to make them. Nothing here measures: the page reports what the CSVs hold, with the
machine, thread count, date and commit each was measured with.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .paths import reference_root, results_root

TITLE = "# Performance"
DU_VARIANTS = ["official", "exact", "lowrank", "lowrank+gram_eigh", "lowrank+gram_solve", "floor", "floor_gram"]
DU_LABEL = {"official": "official code", "exact": "exact (d x d, SVD)", "lowrank": "low-rank (SVD)",
            "lowrank+gram_eigh": "low-rank, Gram eigh", "lowrank+gram_solve": "low-rank, Gram solve (default)",
            "floor": "floor: forward + SVDs", "floor_gram": "floor: forward + Gram + Cholesky"}
DU_PHASES = ["forward", "patches", "decomposition", "projection"]


def bench_root() -> Path:
    """Your benchmark CSVs (``results/benchmarks/``) when there are any, else our reference copy
    (``reference/benchmarks/``, ``make reference PAPER=benchmarks``)."""
    mine = results_root() / "benchmarks"
    ref = reference_root() / "benchmarks"
    if not any(mine.rglob("*.csv")) and ref.is_dir() and any(ref.rglob("*.csv.gz")):
        return ref
    return mine


def _read(path: Path) -> pd.DataFrame | None:
    if not path.exists() and path.with_name(path.name + ".gz").exists():  # a reference copy is gzipped
        path = path.with_name(path.name + ".gz")
    try:
        df = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    return df if len(df) else None


def _num(v, digits: int = 2) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(x):
        return "–"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.1e}"
    return f"{x:,.{digits}f}"


def table(header: list[str], rows: list[list], align: str | None = None) -> str:
    """A markdown pipe table (cells given as strings or numbers)."""
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    head = "| " + " | ".join(header) + " |"
    align = align or "l" * len(header)
    sep = "|" + "|".join("---:" if align[i] == "r" else "---" for i in range(len(header))) + "|"
    return "\n".join([head, sep] + ["| " + " | ".join(r) + " |" for r in esc]) + "\n"


def measured_on(df: pd.DataFrame) -> str:
    """One line: where and when the rows were measured (every distinct value of each column)."""
    def vals(col):
        return ", ".join(sorted({str(v) for v in df[col].dropna()})) if col in df else "?"

    threads = f", {vals('threads')} thread(s)" if "threads" in df else ""
    cores = f" ({vals('cores')} cores)" if "cores" in df else ""
    dates = ", ".join(sorted({str(v)[:10] for v in df["date"].dropna()})) if "date" in df else "?"
    return (f"*Measured on {vals('device')} ({vals('device_name')}){cores}{threads}, torch {vals('torch')}, "
            f"{dates}, commit {vals('git_commit')}.*\n")


# ------------------------------------------------------------------------------------------------------------
# Deep Unlearning


def du_section(bench: Path, out: Path) -> tuple[str, list[Path]]:
    phases = _read(bench / "deep_unlearning_phases.csv")
    if phases is None:
        return ("## Deep Unlearning: time per phase\n\nNot measured yet: `python benchmarks/deep_unlearning.py` "
                "(add `--official PATH` with a checkout of sangamesh-kodge/class_forgetting).\n\n"
                + _du_numerics(bench), [])
    md = ["## Deep Unlearning: time per phase\n",
          "Each layer's retain and forget bases from one forward pass each (900 + 900 samples), then one weight "
          "update. *Phases*: the forward passes, the im2col patches, the decompositions (thin SVDs, Gram "
          "eigendecompositions, or Gram products) and the projection (for the Gram solve it includes the Cholesky "
          "factorisations). The *floor* is the forward passes plus the decompositions alone. Random weights and "
          "images (timing does not depend on the values). "
          + ("Layers of the same shape cost the same: one layer of each shape is timed and counted as many times "
             "as the shape occurs (the `scope` column of the CSV); the forward passes and patches are measured "
             "in full. " if (phases.get("scope", pd.Series(dtype=str)).astype(str).str.contains("one layer")).any()
             else "") + "\n"]
    figs = []
    models = list(dict.fromkeys(phases.model))
    for model in models:
        d = phases[phases.model == model]
        width = d.width.iloc[0]
        pivot = {v: {p: s for p, s in zip(d[d.variant == v].phase, d[d.variant == v].seconds, strict=True)}
                 for v in DU_VARIANTS if (d.variant == v).any()}
        exact = pivot.get("exact", {}).get("total", math.nan)
        floor = pivot.get("floor", {}).get("total", math.nan)
        official = pivot.get("official", {}).get("total", math.nan)
        rows = []
        for v, ph in pivot.items():
            tot = ph.get("total", math.nan)
            rows.append([DU_LABEL.get(v, v)] + [_num(ph.get(p, math.nan)) for p in DU_PHASES] + [
                _num(tot), _num(tot / exact), _num(tot / floor), _num(tot / official)])
        md.append(f"### {model}, width {width}, input {d.input.iloc[0]}, {int(d.samples.iloc[0])} samples, "
                  f"at most {int(d.max_patches.iloc[0])} patches per layer\n")
        md.append(table(["variant", "forward s", "patches s", "decomposition s", "projection s", "total s",
                         "x exact", "x floor", "x official"], rows, "lrrrrrrrr"))
        e2e = d[d.phase == "end_to_end"]
        if len(e2e):
            md.append("Timed whole (the method's own call): " + "; ".join(
                f"{DU_LABEL.get(v, v)} {_num(s)} s (peak {_num(m, 0)} MB)"
                for v, s, m in zip(e2e.variant, e2e.seconds, e2e.get("peak_mb", [math.nan] * len(e2e)),
                                   strict=True)) + ".\n")
        if "lowrank" in pivot and "exact" in pivot:
            low = pivot["lowrank"]["total"]
            line = f"**{model}**: low-rank / exact {_num(low / exact)}, low-rank / floor {_num(low / floor)}"
            if "official" in pivot:
                line += f", low-rank / official {_num(low / official)}"
            if "lowrank+gram_solve" in pivot:
                g = pivot["lowrank+gram_solve"]["total"]
                line += (f"; Gram solve / exact {_num(g / exact, 3)}, Gram solve / floor {_num(g / floor, 3)}"
                         + (f", Gram solve / official {_num(g / official, 3)}" if "official" in pivot else ""))
            md.append(line + ".\n")
    fig = out / "performance_deep_unlearning.png"
    _du_figure(phases, models, fig)
    figs.append(fig)
    md.append(_figure(fig.name, "Deep Unlearning: time per phase of each variant (seconds); the floors are the "
                      "forward passes plus the decompositions alone."))
    md.append(measured_on(phases))
    layers = _read(bench / "deep_unlearning_layers.csv")
    if layers is not None:
        md.append("### Per layer shape\n")
        md.append("Times of one layer's retain rows (`d` inputs, `n` rows; `count`: layers of that shape). "
                  "*Gram solve vs SVD*: relative Frobenius distance of the retain projector M from the two; "
                  "*redraw*: the same, between two draws of the patches (the method's own run-to-run variation).\n")
        rows = []
        for _, r in layers.iterrows():
            rows.append([r.model, r.layer, int(r.d), int(r.n), int(r["count"]), _num(r.get("svd_s")),
                         _num(r.get("gram_eigh_s")), _num(r.get("gram_s", math.nan) / 2 + r.get("cholesky_s", 0)),
                         _num(r.get("official_fcp_s", math.nan)), _num(r.get("gram_solve_vs_svd"), 3),
                         _num(r.get("redraw_vs_first"), 3)])
        md.append(table(["model", "layer", "d", "n", "count", "SVD s", "Gram eigh s", "Gram + Cholesky s",
                         "official s", "Gram solve vs SVD", "redraw"], rows, "llrrrrrrrrr"))
    md.append(_du_numerics(bench))
    return "\n".join(md), figs


def _du_numerics(bench: Path) -> str:
    """The decompositions against the method's run-to-run variation (``deep_unlearning_numerics.csv``)."""
    num = _read(bench / "deep_unlearning_numerics.csv")
    if num is None:
        return ""
    md = []
    md.append("### Decompositions against the method's run-to-run variation\n")
    md.append(f"The method on the `{num.profile.iloc[0]}` original ({num.model.iloc[0]}, width "
              f"{num.width.iloc[0]}, forgetting {num.scenario.iloc[0]}) with {num.seed.nunique()} method seeds. "
              "*vs SVD*: distance of the projected weights to the SVD run of the same seed, relative to the size "
              "of the update; *seed to seed*: the SVD runs' distance to the first seed's, the same way.\n")
    rows = []
    svd_var = num[(num.decomposition == "svd") & num["svd_vs_seed0"].notna()] if "svd_vs_seed0" in num \
        else num.iloc[:0]
    for dec, g in num.groupby("decomposition", sort=False):
        rows.append([dec, _num(g.forget_acc.mean()), _num(g.forget_acc.max() - g.forget_acc.min()),
                     _num(g.retain_acc.mean()), _num(g.retain_acc.max() - g.retain_acc.min()),
                     _num(g.vs_svd_same_seed.max(), 3), _num(g.seconds.median(), 3)])
    md.append(table(["decomposition", "forget acc %", "range over seeds", "retain acc %", "range over seeds",
                     "max vs SVD (same seed)", "median s"], rows, "lrrrrrr"))
    if len(svd_var):
        md.append(f"Seed to seed (SVD): {_num(svd_var.svd_vs_seed0.min(), 3)} to "
                  f"{_num(svd_var.svd_vs_seed0.max(), 3)}.\n")
    return "\n".join(md)


def _du_figure(phases: pd.DataFrame, models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(models), 1, figsize=(10.5, 3.0 * len(models) + 0.4), squeeze=False)  # a row a model
    colours = {"forward": "#1565c0", "patches": "#6a1b9a", "decomposition": "#c62828", "projection": "#ef6c00"}
    for ax, model in zip(axes[:, 0], models, strict=True):
        d = phases[phases.model == model]
        variants = [v for v in DU_VARIANTS if (d.variant == v).any()]
        for i, v in enumerate(variants):
            dv = d[d.variant == v]
            left = 0.0
            if v.startswith("floor"):
                tot = float(dv[dv.phase == "total"].seconds.iloc[0])
                ax.barh(i, tot, color="#9e9e9e", hatch="//", edgecolor="white")
                continue
            for p in DU_PHASES:
                s = dv[dv.phase == p].seconds
                val = float(s.iloc[0]) if len(s) and math.isfinite(float(s.iloc[0])) else 0.0
                ax.barh(i, val, left=left, color=colours[p], label=p if i == 0 else None)
                left += val
        ax.set_yticks(range(len(variants)), [DU_LABEL[v] for v in variants], fontsize=9)
        ax.invert_yaxis()
        ax.set_xlabel("seconds")
        ax.set_title(f"{model}, width {d.width.iloc[0]}", fontsize=10)
    axes[0][0].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------------
# methods, suite, concurrency, GPU


def methods_section(bench: Path, out: Path) -> tuple[str, list[Path]]:
    df = _read(bench / "methods.csv")
    head = "## Every method on one original\n"
    if df is None:
        return head + "\nNot measured yet: `python benchmarks/methods.py`.\n", []
    r0 = df.iloc[0]
    md = [head, f"Each registered method once on the `{r0.profile}` original of {r0.paper} ({r0.model}, width "
                f"{r0.width}, seed {r0.seed}, forgetting {r0.scenario}: {r0.retain_n} retain and {r0.forget_n} "
                "forget images). Median of the runs (a call under 5 s is repeated), each from a fresh copy of the "
                "original; *in fit*: the share of the call spent in the training loop.\n"]
    rows = [[r.method, _num(r.seconds, 3), f"{_num(r.seconds_min, 3)} – {_num(r.seconds_max, 3)}", int(r.repeats),
             _num(r.speedup_vs_retrain, 1), f"{_num(100 * r.fit_share, 0)} %", r.config_from]
            for r in df.sort_values("seconds").itertuples()]
    md.append(table(["method", "median s", "min – max s", "runs", "speed-up vs retrain", "in fit", "options from"],
                    rows, "lrrrrrl"))
    fig = out / "performance_methods.png"
    _methods_figure(df, fig)
    md.append(_figure(fig.name, "Speed-up against retraining from scratch (retrain time / method time, median "
                      "of the runs; log axis)."))
    md.append(measured_on(df))
    return "\n".join(md), [fig]


def _methods_figure(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = df[df.method != "retrain"].sort_values("speedup_vs_retrain")
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(d) + 1.2))
    colours = ["#2e7d32" if s >= 1 else "#c62828" for s in d.speedup_vs_retrain]
    ax.barh(d.method, d.speedup_vs_retrain, color=colours)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", ls="--", lw=1)
    ax.set_xlabel("speed-up vs retrain (x, log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _csv_section(bench: Path, name: str, head: str, command: str, intro, header: list[str], align: str,
                 row) -> str:
    """A section of one CSV of ``bench``: its heading, "Not measured yet: `command`" while the CSV is missing, else
    ``intro`` (text, or a function of the frame), one table row per CSV row (``row``) and what it was measured on."""
    df = _read(bench / name)
    if df is None:
        return head + f"\nNot measured yet: `{command}`.\n"
    rows = [row(r) for r in df.itertuples()]
    return "\n".join([head, intro(df) if callable(intro) else intro, table(header, rows, align), measured_on(df)])


def suite_section(bench: Path) -> str:
    return _csv_section(
        bench, "suite.csv", "## Where the suite's time goes\n", "python benchmarks/suite.py",
        "`make test`'s parts, and each paper's run split by what it computes (originals, retrains, the other "
        "methods' calls with their timing repeats, evaluation, the rest of the run, the notebook and the book "
        "build): either run again with an empty cell store, or, where the part says *its cells.csv*, read from the "
        "per-cell times a finished run recorded (its plan, tables, notebook and book are not in those).\n",
        ["part", "paper", "phase", "seconds", "share"], "lllrr",
        lambda r: [r.part, r.paper if isinstance(r.paper, str) else "", r.phase, _num(r.seconds, 1),
                   f"{_num(100 * r.share, 0)} %"])


def concurrency_section(bench: Path) -> str:
    return _csv_section(
        bench, "concurrency.csv", "## Two runs at once\n", "python benchmarks/concurrency.py",
        "Each run a fresh process computing every cell; the threads divided by the suite (each process takes the "
        "cores divided by the processes computing). Target: two runs together within 2.5x the time of one.\n",
        ["", "runs", "profile", "wall s", "x slowest alone"], "lllrr",
        lambda r: [r.mode, r.papers, r.profile, _num(r.seconds, 1),
                   _num(getattr(r, "ratio_to_slowest_alone", math.nan))])


def _grouped_intro(df: pd.DataFrame) -> str:
    first = df.iloc[0]
    return (f"The ensemble's {int(first.n)} members ({first.model}, width {int(first.width)}, {first.dataset}: "
            f"{int(first.images)} images, {int(first.epochs)} epochs, {int(first.steps)} steps each) trained one "
            "by one (N calls of `fit`) or as one network of N members (grouped convolutions, per-member "
            "BatchNorm and heads, each member's own data order): the whole training, data included. The mean "
            "test accuracy of the members says the modes train the same models. Goal: grouped >= 3x one by "
            "one at N = 16.\n")


def grouped_section(bench: Path) -> str:
    """The ensemble's N models trained as one grouped network against one by one (``benchmarks/grouped.py``)."""
    label = {"one_by_one": "one by one", "grouped": "grouped", "grouped_cl": "grouped, channels_last (default)"}
    return _csv_section(
        bench, "grouped.csv", "## Many models at once: the grouped ensemble\n", "python benchmarks/grouped.py",
        _grouped_intro, ["", "N", "s", "s a member", "x one by one", "mean test acc"], "lrrrrr",
        lambda r: [label.get(r.mode, r.mode), int(r.n), _num(r.seconds, 1), _num(r.seconds_per_member),
                   _num(r.speedup_vs_one_by_one), _num(r.test_acc_mean, 3)])


def fit_section(bench: Path) -> str:
    """The shared training loop against a bare PyTorch loop (``benchmarks/fit_overhead.py``)."""
    return _csv_section(
        bench, "fit_overhead.csv", "## The training loop against a bare loop\n", "python benchmarks/fit_overhead.py",
        "`fit` (its checks and bookkeeping; on CUDA the sync-free step) against a plain PyTorch loop over the same "
        "loader, the same model and steps, each warmed up, median over the repeats. Goal on the CPU: `fit` within "
        "1.05x of the bare loop. On CUDA also `fit` at `speed: fast` and a ceiling (batches prebuilt on the GPU, no "
        "reads, bf16 + channels_last).\n",
        ["model", "batch", "variant", "seconds", "images/s", "x bare"], "lrlrrr",
        lambda r: [f"{r.model} w{r.width}", r.batch_size, r.variant, _num(r.seconds, 3), _num(r.images_per_s, 0),
                   _num(r.ratio_to_bare, 3)])


def gpu_section(bench: Path) -> str:
    df = next((d for d in (_read(bench / "gpu_check.csv"), _read(bench / "gpu" / "gpu_check.csv")) if d is not None),
              None)
    head = "## On a GPU\n"
    if df is None:
        return head + "\nNot run on a GPU yet: `scripts/gpu_check.sh results/benchmarks/gpu` on a machine with CUDA.\n"
    cols = [c for c in ("paper", "model", "width", "what", "options", "seconds", "images_per_s") if c in df]
    rows = [[_num(getattr(r, c)) if c in ("seconds", "images_per_s") else getattr(r, c) for c in cols]
            for r in df.itertuples()]
    return "\n".join([head, table(cols, rows), measured_on(df)])


def plan_section(bench: Path) -> str:
    """``make plan``'s projection (benchmarks/plan_projection.py): every paper's ``fast`` and ``paper`` profiles on
    one H200 from the stated assumptions, and on this CPU where its throughputs were measured."""
    df = _read(bench / "plan_projection.csv")
    head = "## How long a run takes: `make plan`'s projection\n"
    if df is None:
        return head + "\nNot projected yet: `python benchmarks/plan_projection.py` (runs nothing; seconds).\n"
    total = df[df.kind == "total"]
    shown = total[total.profile.isin(["fast", "paper"])]
    shown = shown if len(shown) else total
    md = [head, "Estimated from the configs alone (`make plan PAPER=<id> PROFILE=<p>`): each cell's image-passes "
                "times its model's training FLOPs, divided by an effective rate. **The H200 column is an "
                "assumption, not a measurement** (the rate per speed is stated in `unlearnlib/harness/estimate.py`, "
                "from airbench's public A100 figures scaled to an H200); the CPU column uses the throughputs "
                "`benchmarks/throughput.py` measured. One device, cells one after another.\n"]
    rows = [[r.paper, r.profile, r.speed, int(r.cells), _num(r.pflop, 1), _num(r.h200_hours_assumed, 2),
             _num(r.h200_tflops_assumed, 0), _num(r.cpu_hours, 1)] for r in shown.itertuples()]
    md.append(table(["paper", "profile", "speed", "cells", "PFLOP", "H200 h (assumed)", "assumed TFLOP/s", "CPU h"],
                    rows, "lllrrrrr"))
    for profile in ("fast", "paper"):
        sel = total[total.profile == profile]
        if len(sel):
            md.append(f"All chapters, `{profile}`: {_num(sel.h200_hours_assumed.sum(), 1)} h on one H200 (assumed).\n")
    dates = ", ".join(sorted({str(v)[:10] for v in df["date"].dropna()})) if "date" in df else "?"
    commits = ", ".join(sorted({str(v) for v in df.get("git_commit", pd.Series(dtype=str)).dropna()}))
    md.append(f"*Projected {dates}, commit {commits}.*\n")
    return "\n".join(md)


def cpu_costs_section(bench: Path) -> str:
    """The SVC attack and the stop checks at paper size on the CPU (benchmarks/cpu_costs.py)."""
    def row(r) -> list:
        per_run = getattr(r, "per_run_deep_unlearning_s", math.nan)
        return [r.what, r.case, int(r.n), _num(r.seconds, 3),
                "" if not isinstance(per_run, float) or math.isnan(per_run) else _num(per_run / 3600, 2)]

    return _csv_section(
        bench, "cpu_costs.csv", "## CPU work beside the GPU: the SVC attack and the stop checks\n",
        "python benchmarks/cpu_costs.py",
        "Deep Unlearning's SVC MIA is fitted on the CPU twice per method cell (~400 fits in its `paper` profile, "
        "uncapped as upstream; `metrics.mia_max_train` caps it). A stop check of lightweight or versatile fits the "
        "loss-LR attack only when its rule is `mia` (before issue 22: at every check).\n",
        ["what", "case", "n", "seconds", "DU paper run, h"], "llrrr", row)


def gpu_check_section(bench: Path) -> str:
    """The device script's CSVs (scripts/gpu_check.sh): throughput variants, processes sharing the GPU, unit costs."""
    gpu = bench / "gpu"
    frames = {n: _read(gpu / f"{n}.csv") for n in ("gpu_throughput", "gpu_sharing", "gpu_units", "gpu_smoke")}
    head = "## The device script\n"
    if all(v is None for v in frames.values()):
        return head + ("\nNo GPU was lent yet: `scripts/gpu_check.sh results/benchmarks/gpu` on a machine with CUDA "
                       "(one self-timed run, <= 9 minutes).\n")
    md = [head]
    for name, title in (("gpu_smoke", "The smoke profile through run_paper"), ("gpu_throughput", "Training "
                        "throughput at 3x32x32"), ("gpu_sharing", "Processes sharing the GPU"),
                        ("gpu_units", "Unit costs at paper width")):
        df = frames[name]
        if df is None:
            md.append(f"**{title}**: not measured.\n")
            continue
        cols = [c for c in df.columns if c not in ("device", "device_name", "cores", "threads", "torch", "git_commit",
                                                  "date", "smoke")]
        md += [f"**{title}**\n", table(cols, [[_num(v) if isinstance(v, float) else v for v in row]
                                              for row in df[cols].itertuples(index=False)]), measured_on(df)]
    return "\n".join(md)


def _figure(name: str, caption: str) -> str:
    return f"```{{figure}} {name}\n:width: 100%\n\n{caption}\n```\n"


def page(bench_dir: Path | None = None, out_dir: Path | None = None) -> tuple[str, list[Path]]:
    """(the page's markdown, its figure files): figures are drawn into ``out_dir`` (default: ``bench_dir``)."""
    bench = Path(bench_dir) if bench_dir is not None else bench_root()
    out = Path(out_dir) if out_dir is not None else bench
    out.mkdir(parents=True, exist_ok=True)
    intro = ("The papers' speed claims are decided in their chapters from each run's own timings. This page "
             "measures the implementations themselves: Deep Unlearning against the official code and the "
             "hardware floor, every method on one original, where the suite's time goes, two runs at once, and the "
             "ensemble's models trained as one grouped network. "
             "The numbers come from `benchmarks/*.py` (CSV files in `results/benchmarks/`); each table says where "
             "it was measured.\n")
    du, f1 = du_section(bench, out)
    meth, f2 = methods_section(bench, out)
    md = "\n".join([TITLE, "", intro, du, meth, suite_section(bench), concurrency_section(bench), fit_section(bench),
                    plan_section(bench), cpu_costs_section(bench), grouped_section(bench), gpu_section(bench),
                    gpu_check_section(bench)])
    return md, f1 + f2


def write_page(out_dir: Path, bench_dir: Path | None = None) -> Path:
    """``out_dir/performance.md`` and its figures (from ``bench_dir``, default ``results/benchmarks/``)."""
    md, _ = page(bench_dir, out_dir)
    path = Path(out_dir) / "performance.md"
    path.write_text(md)
    return path
