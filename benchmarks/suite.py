"""Where the suite's wall time goes: ``make test``'s parts, and each paper's run split by what it computes.

    python benchmarks/suite.py                                # make test's parts, then every paper's cpu run
    python benchmarks/suite.py --parts runs --papers deep_unlearning --profile cpu
    python benchmarks/suite.py --parts test                   # lint, test-unit, test-notebooks, test-book
    python benchmarks/suite.py --smoke --out /tmp/b           # one smoke run with two methods: checks the script
    python benchmarks/suite.py --from-run results/unsir/cpu   # a finished run's split, from its cells.csv

``make test``'s parts are the Makefile's own recipe lines (``lint``, ``test-unit``, ``test-notebooks``,
``test-book``), run with this Python (``setup`` is not timed).

A paper's run is ``run_paper`` in this process with an empty cell store and results folder of its own (so every
cell is computed; ``--keep-cache`` uses the ordinary cell store instead, and reused cells then cost nothing),
timed per cell by wrapping the harness's cell runner (nothing in the harness changes). The split:

- ``originals``: original cells (training and saving the original models, the ensemble's included);
- ``retrains``: the timed call of each method that trains from scratch;
- ``methods``: the timed calls of every other method (all repeats and the warm-up pass included);
- ``evaluation``: evaluate cells, and the rest of each method cell (logits, metrics, the store);
- ``plan and tables``: the rest of the run (data, splits, plan, writing the tables);
- ``notebook``: the paper's notebook executed afterwards (its cells all reused: figures and tables);
- ``book``: a strict book build of that chapter in a scratch copy of the book.

Writes ``suite.csv`` (one row per part or phase, with its share of the run).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common  # before unlearnlib: puts this checkout first on sys.path

TEST_PARTS = ("lint", "test-unit", "test-notebooks", "test-book")
PHASES = ("originals", "retrains", "methods", "evaluation", "plan and tables", "notebook", "book")


def make_recipe(target: str, makefile: Path = _common.REPO / "Makefile") -> list[str]:
    """The commands of ``target`` as make expands them (``make -n``: JOBS, the test threads and every variable
    resolved), with ``$(PY)`` this Python and ``$(VENV)`` its environment."""
    exe = Path(sys.executable)
    proc = subprocess.run(["make", "-s", "--no-print-directory", "-n", "-f", str(makefile), target,
                           f"PY={shlex.quote(str(exe))}", f"VENV={shlex.quote(str(exe.parent.parent))}"],
                          cwd=makefile.parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"Makefile target {target}: make -n failed: {proc.stderr.strip()}")
    return [line for line in proc.stdout.splitlines() if line.strip()]


def time_test_parts(say) -> list[dict]:
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_common.REPO), *filter(None,
                                                                                 [os.environ.get("PYTHONPATH")])]))
    for part in TEST_PARTS:
        t0 = time.perf_counter()
        for cmd in make_recipe(part):
            proc = subprocess.run(cmd, shell=True, cwd=_common.REPO, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                say(proc.stdout[-3000:] + proc.stderr[-3000:])
                raise SystemExit(f"make {part} failed: {cmd}")
        t = time.perf_counter() - t0
        rows.append({"part": "make test", "paper": "", "phase": part, "seconds": t})
        say(f"   make {part}: {t:.1f} s")
    total = sum(r["seconds"] for r in rows)
    for r in rows:
        r["share"] = r["seconds"] / total
    rows.append({"part": "make test", "paper": "", "phase": "total", "seconds": total, "share": 1.0})
    return rows


class CellClock:
    """Wraps CellRunner.run and CellRunner._timed for a block; collects seconds per phase."""

    def __init__(self) -> None:
        self.by: dict[str, float] = defaultdict(float)
        self.cells = 0

    def __enter__(self) -> "CellClock":
        from unlearnlib.harness.cells import CellRunner
        from unlearnlib.methods import method_spec

        self._run, self._timed_fn = CellRunner.run, CellRunner._timed
        clock, run, timed = self, CellRunner.run, CellRunner._timed
        inner: dict[str, float] = {}

        def _timed(runner, cell, original, threads):
            t0 = time.perf_counter()
            try:
                return timed(runner, cell, original, threads)
            finally:
                inner[cell.key] = time.perf_counter() - t0

        def _run(runner, cell):
            t0 = time.perf_counter()
            try:
                return run(runner, cell)
            finally:
                dt = time.perf_counter() - t0
                clock.cells += 1
                if cell.kind == "original":
                    clock.by["originals"] += dt
                elif cell.kind == "evaluate":
                    clock.by["evaluation"] += dt
                else:
                    call = inner.pop(cell.key, 0.0)
                    scratch = method_spec(cell.method).trains_from_scratch
                    clock.by["retrains" if scratch else "methods"] += call
                    clock.by["evaluation"] += dt - call

        CellRunner.run, CellRunner._timed = _run, _timed
        return self

    def __exit__(self, *exc) -> None:
        from unlearnlib.harness.cells import CellRunner

        CellRunner.run, CellRunner._timed = self._run, self._timed_fn


def time_run(paper: str, profile: str, seeds: str, methods: list[str] | None, keep_cache: bool, book: bool,
             say) -> list[dict]:
    from unlearnlib import harness

    with tempfile.TemporaryDirectory(prefix="suite-") as tmp:
        roots = {"UNLEARNLIB_RESULTS": Path(tmp) / "results"}
        if not keep_cache:
            roots["UNLEARNLIB_CACHE"] = Path(tmp) / "cache"
        old = {k: os.environ.get(k) for k in roots}
        os.environ.update({k: str(v) for k, v in roots.items()})
        try:
            with CellClock() as clock:
                t0 = time.perf_counter()
                harness.run_paper(paper, profile, seeds=seeds or None, device="cpu", methods=methods, progress=False)
                total = time.perf_counter() - t0
            by = dict(clock.by)
            by["plan and tables"] = total - sum(by.values())
            if book:
                by["notebook"], by["book"] = notebook_and_book(paper, profile, seeds, Path(tmp))
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    whole = sum(by.values())
    rows = [{"part": f"{profile} run", "paper": paper, "phase": ph, "seconds": by[ph], "share": by[ph] / whole,
             "cells": clock.cells} for ph in PHASES if ph in by]
    rows.append({"part": f"{profile} run", "paper": paper, "phase": "total", "seconds": whole, "share": 1.0,
                 "cells": clock.cells})
    say(f"   {paper} {profile}: " + ", ".join(f"{r['phase']} {r['seconds']:.1f} s ({100 * r['share']:.0f} %)"
                                             for r in rows))
    return rows


def split_of_run(folder: Path, say) -> list[dict]:
    """The split of a finished run from its ``cells.csv`` (each cell's wall time and its method calls' total,
    recorded when the cell was computed): originals, retrains, methods, evaluation. The run's own wall time
    (plan, tables, notebook, book) is not in it."""
    import pandas as pd
    import yaml

    path = Path(folder) / "cells.csv"
    if not path.is_file():
        raise SystemExit(f"--from-run {folder}: no cells.csv (a run folder results/<paper>/<profile> of this "
                         f"version of the suite)")
    c = pd.read_csv(path)
    cfg = yaml.safe_load((Path(folder) / "config.resolved.yaml").read_text())
    paper, profile = cfg["id"], cfg["profile"]
    if c.wall_s.isna().any():
        say(f"   {paper} {profile}: {int(c.wall_s.isna().sum())} cells were computed before times were recorded "
            f"(left out)")
    meth = c[c.kind == "method"]
    by = {"originals": c[c.kind == "original"].wall_s.sum(),
          "retrains": meth[meth.trains_from_scratch].call_s.sum(),
          "methods": meth[~meth.trains_from_scratch].call_s.sum(),
          "evaluation": c[c.kind == "evaluate"].wall_s.sum() + (meth.wall_s - meth.call_s).sum()}
    whole = sum(by.values())
    part = f"{profile} run (its cells.csv)"
    rows = [{"part": part, "paper": paper, "phase": ph, "seconds": float(v), "share": float(v) / whole,
             "cells": len(c)} for ph, v in by.items()]
    rows.append({"part": part, "paper": paper, "phase": "total", "seconds": float(whole), "share": 1.0,
                 "cells": len(c)})
    say(f"   {paper} {profile} (cells.csv, {int(c.reused.sum())} of {len(c)} cells reused from earlier runs): "
        + ", ".join(f"{r['phase']} {r['seconds']:.1f} s ({100 * r['share']:.0f} %)" for r in rows))
    return rows


def notebook_and_book(paper: str, profile: str, seeds: str, tmp: Path) -> tuple[float, float]:
    """The paper's notebook (every cell reused from the run just made) into a scratch copy of the book, then a
    strict build of that book: (notebook s, book s)."""
    from unlearnlib import book
    from unlearnlib.cli import execute_notebook

    scratch = tmp / "book"
    shutil.copytree(book.BOOK_DIR, scratch, ignore=shutil.ignore_patterns("_build", "papers", "_generated",
                                                                           "_toc.yml"))
    _, t_nb = _common.timed(execute_notebook, paper, profile, scratch / "papers", seeds, "cpu")
    _, t_book = _common.timed(book.build, scratch, True)
    return t_nb, t_book


def main(argv=None) -> int:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--parts", default="test,runs", help="test, runs or both")
    p.add_argument("--papers", default="", help="comma-separated (default: every paper)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--seeds", default="")
    p.add_argument("--methods", default="", help="comma-separated subset of the papers' methods")
    p.add_argument("--keep-cache", action="store_true", help="use the ordinary cell store (reused cells cost 0)")
    p.add_argument("--no-book", action="store_true", help="skip the notebook and the book build")
    p.add_argument("--from-run", action="append", default=[], type=Path, metavar="FOLDER",
                   help="a finished run folder (results/<paper>/<profile>): its split from its cells.csv, "
                        "without running anything (repeatable; with it --parts defaults to none)")
    args = p.parse_args(argv)
    if args.smoke:
        args.parts, args.papers, args.profile = "runs", args.papers or "deep_unlearning", "smoke"
        args.methods, args.no_book, args.seeds = args.methods or "retrain,deep_unlearning", True, args.seeds or "42"
    out = _common.out_dir(args)
    if args.threads:
        os.environ["UNLEARNLIB_THREADS"] = str(args.threads)
    from unlearnlib.config import available_papers

    parts = {s.strip() for s in args.parts.split(",")} if not (args.from_run and args.parts == "test,runs") else set()
    rows = []
    for folder in args.from_run:
        rows += split_of_run(folder, _common.say)
    if "test" in parts:
        rows += time_test_parts(_common.say)
    if "runs" in parts:
        papers = [s.strip() for s in args.papers.split(",") if s.strip()] or available_papers()
        methods = [s.strip() for s in args.methods.split(",") if s.strip()] or None
        for paper in papers:
            rows += time_run(paper, args.profile, args.seeds, methods, args.keep_cache, not args.no_book,
                             _common.say)
    env = _common.machine()
    env.pop("threads")  # the runs take the fair share of the cores (recorded in their timings)
    path = _common.write_csv(out / "suite.csv", [{**r, "profile": args.profile, **env} for r in rows])
    _common.say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
