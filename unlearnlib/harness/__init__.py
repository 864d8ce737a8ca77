"""Run a paper as a plan of cells: plan, run the unfinished cells with an executor, store the tables.

``run_paper(paper, profile, seeds, device, executor="local"|"ray", workers=N)`` writes
``results/<paper>/<profile>/`` atomically, 10 files: ``config.resolved.yaml`` (with each method's resolved options
and registered scenario kinds), ``env.json``, ``splits.npz``, ``metrics.csv`` (long form; each row with its
scenario's ``kind``, ``reference`` and the method's ``run_on`` kinds), ``timings.csv`` (the same columns),
``traces.csv``, ``cells.csv`` (where the run's time went, one row per cell) and, for a run with an ensemble,
``ensemble_models.csv`` (its models' metrics) and ``ensemble.csv`` (the per-example scores); ``diagnoses.csv``
(what each method call said about itself, e.g. SSD's selected weights and why none, and its paper's setting).
Every finished cell is kept in the cell store (``$UNLEARNLIB_CACHE``), so a killed run resumes where it stopped
and a second run reuses what the first computed; the log has one line per cell, computed or reused.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from .. import threads as _threads
from ..paths import shown
from ..schema import ConfigError
from .budget import collect_diagnoses, write_diagnoses
from .ensemble import ensemble_scores
from .executors import make_executor
from .plan import Cell, RunPlan, build_plan, resolve_device, seed_everything
from .report import METRIC_COLUMNS, banner_line, cell_line, collect, pending_cells, write_run
from .store import RunFolder, RunLockedError, Store
from .tuning import ray_session, tune, write_tuning


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_paper(paper: str, profile: str = "auto", seeds: Any = None, device: str = "auto",
              methods: list[str] | None = None, progress: bool = True, executor: str = "local",
              workers: int | None = None, threads: int | None = None, cells_per_gpu: int | None = None):
    """Run ``paper`` in ``profile`` and store the results; returns a :class:`unlearnlib.results.Run`.

    executor: ``local`` (this process) or ``ray`` (``workers`` local workers, or the cluster at ``RAY_ADDRESS``);
    threads: torch threads per cell (None: the fair share of the cores, see :mod:`unlearnlib.threads`);
    cells_per_gpu: on Ray with CUDA, cells sharing one GPU (None: ``$UNLEARNLIB_CELLS_PER_GPU``, else 1).
    """
    from ..results import Run

    ex = make_executor(executor, workers, threads, progress, cells_per_gpu)  # bad parameters fail before any work
    t0 = time.perf_counter()
    threads = ex.threads_for(resolve_device(device))  # once per run: on the CPU it is part of the cells' keys
    plan = build_plan(paper, profile, seeds, device, methods, threads=threads)
    if not plan.cells:  # never replace a results folder with an empty run
        raise ConfigError(f"{paper} ({plan.profile}): the run has no cells (seeds {plan.seeds}, methods "
                          f"{plan.methods}); nothing was written")
    store = Store(say=_say)
    computing = _threads.computing() if ex.name == "local" else contextlib.nullcontext()
    with RunFolder(paper, plan.profile) as folder, computing, ray_session(ex, plan):
        _say(banner_line(plan, ex.describe()))
        tuned, early, t_tune = None, set(), None  # early: the cells the tuning rounds computed (not reused by this run)
        if plan.settings.tuning.trials:  # the studies first: their tuned rows join the plan
            def run_cells(p: RunPlan, cells: list[Cell]) -> None:
                early.update(c.key for c in cells)
                ex.run(p, store, cells, on_done=lambda cell: _say(cell_line(p, store, cell)), say=_say)

            t_tune = time.perf_counter()
            plan, *tuned = tune(plan, store, run_cells, _say)
            t_tune = time.perf_counter() - t_tune
        todo, reused = pending_cells(plan, store)
        reused = [c for c in reused if c.key not in early]
        todo_n = len(todo) + len(early)
        for cell in reused:
            _say(cell_line(plan, store, cell, reused=True))
        ex.run(plan, store, todo, on_done=lambda cell: _say(cell_line(plan, store, cell)), say=_say)
        write_run(folder.tmp, plan, *collect(plan, store, {c.key for c in reused}), ensemble_scores(plan, store),
                  executor=ex.describe())
        write_diagnoses(folder.tmp, collect_diagnoses(plan, store))
        if tuned:
            write_tuning(folder.tmp, *tuned)
        record_wall_time(folder.tmp, time.perf_counter() - t0, t_tune)
        folder.commit()
    _say(done_line(time.perf_counter() - t0, todo_n, len(reused), folder.final))
    return Run.load(folder.final)


def record_wall_time(folder: Path, seconds: float, tuning_s: float | None = None) -> None:
    """The run's wall time (planning, every cell, the tables; a resumed run: this invocation's) into its env.json:
    a reference run carries it (issue 21). ``tuning_s``: the part of it the tuning study took (its rounds of trials
    on the validation requests; the tuned rows on the reported requests are not in it), for runs that tune."""
    import json

    env = json.loads((folder / "env.json").read_text())
    env["wall_s"] = round(seconds, 1)
    if tuning_s is not None:
        env["tuning_wall_s"] = round(tuning_s, 1)
    (folder / "env.json").write_text(json.dumps(env, indent=1))


LADDER = "ladder-"  # the profiles of a scale ladder: ladder-<training images>


def ladder_profiles(paper: str) -> list[str]:
    """The paper's scale-ladder profiles (``ladder-<n>``), smallest training set first."""
    from ..config import PAPERS_DIR, read_yaml

    raw = read_yaml((PAPERS_DIR / f"{paper}.yaml").read_text(), f"{paper}.yaml")
    rungs = [p for p in raw.get("profiles", {}) if p.startswith(LADDER) and p[len(LADDER):].isdigit()]
    return sorted(rungs, key=lambda p: int(p[len(LADDER):]))


def run_ladder(paper: str = "benchmark", **kw) -> list:
    """Run every rung of ``paper``'s scale ladder (its ``ladder-<n>`` profiles, smallest first) with
    :func:`run_paper`'s options; each rung is an ordinary run (results/<paper>/ladder-<n>/), resumable, sharing
    the cell store with every other run. Returns the rungs' runs."""
    rungs = ladder_profiles(paper)
    if not rungs:
        raise ConfigError(f"{paper}: no scale ladder (profiles named ladder-<training images>)")
    runs = []
    for i, prof in enumerate(rungs):
        _say(f"== scale ladder {paper}: rung {i + 1} of {len(rungs)}, {prof}")
        runs.append(run_paper(paper, prof, **kw))
    return runs


def done_line(seconds: float, computed: int, reused: int, results: Path) -> str:
    """The run's last log line. It is printed into the notebook, and so into the published book: the results
    folder is named relative to its root (``results/unsir/cpu``, ``$UNLEARNLIB_RESULTS/unsir/cpu``), never by this
    machine's absolute path."""
    return (f"== done in {seconds:.0f} s: {computed} cells computed, {reused} reused; "
            f"results in {shown(results)}")


__all__ = ["run_paper", "run_ladder", "ladder_profiles",
           "build_plan", "RunPlan", "Cell", "Store", "RunFolder", "RunLockedError", "METRIC_COLUMNS",
           "resolve_device", "seed_everything"]
