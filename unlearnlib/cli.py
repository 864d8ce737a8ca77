"""Command line: ``python -m unlearnlib.cli {list,plan,reproduce,book,book-test}`` (used by the Makefile)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .config import PROFILES, ConfigError, available_papers, load_paper, parse_seeds
from .paths import REPO_ROOT


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def execute_notebook(paper: str, profile: str, out_dir: Path, seeds: str = "", device: str = "auto",
                     executor: str = "local", workers: int = 0, threads: int = 0, source: str = "local") -> Path:
    """papermill: notebooks/<paper>.ipynb -> <out_dir>/<paper>.ipynb with the parameters injected.

    The notebook is executed into a scratch file outside the book (``build/partial/``) and moved into
    ``out_dir`` only when every cell ran: a killed run never leaves a file the book build would pick up."""
    import papermill as pm

    src = REPO_ROOT / "notebooks" / f"{paper}.ipynb"
    if not src.exists():
        _fail(f"no notebook {src.relative_to(REPO_ROOT)} for paper {paper!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{paper}.ipynb"
    scratch = REPO_ROOT / "build" / "partial"
    scratch.mkdir(parents=True, exist_ok=True)
    clear_stale_partials(scratch)
    tmp = scratch / f"{paper}.{os.getpid()}.ipynb"
    params = {"paper": paper, "profile": profile, "seeds": seeds, "device": device, "executor": executor,
              "workers": workers, "threads": threads, "source": source}
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, log_output=False, stdout_file=sys.stdout,
                            stderr_file=sys.stderr, progress_bar=False, cwd=str(REPO_ROOT), kernel_name="python3")
    except BaseException as exc:  # a failed or interrupted notebook leaves nothing behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, pm.PapermillExecutionError):
            _fail(f"notebook {paper} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
        raise
    tidy_notebook(tmp)
    shutil.move(str(tmp), str(out))  # only a fully executed notebook reaches the book
    return out


def clear_stale_partials(scratch: Path) -> list[Path]:
    """Remove the scratch notebooks of runs whose process is gone (a ``kill -9`` or a power cut leaves them)."""
    from .threads import pid_alive

    gone = []
    for f in scratch.glob("*.ipynb"):
        pid = f.suffixes[-2].lstrip(".") if len(f.suffixes) >= 2 else ""
        if pid.isdigit() and not pid_alive(int(pid)):
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def _settle(text: str) -> str:
    """What a terminal would show: each line's text after its last carriage return."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def tidy_notebook(path: Path) -> None:
    """Merge each cell's consecutive stream outputs of one kind and settle carriage returns, so the progress bars
    that ran while a cell computed leave no hundreds of empty outputs in the book (the log lines stay)."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        merged = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream" \
                    and merged[-1].name == o.name:
                merged[-1].text += o.text
            else:
                merged.append(o)
        for o in merged:
            if o.get("output_type") == "stream":
                o.text = _settle(o.text)
        if "outputs" in cell:
            cell.outputs = [o for o in merged if o.get("output_type") != "stream" or o.text.strip()]
    nbformat.write(nb, str(path))


def _int_option(name: str, value: str) -> int:
    """WORKERS/THREADS from make: empty or 0 is automatic."""
    if value in ("", None):
        return 0
    try:
        n = int(value)
    except ValueError:
        _fail(f"{name}: {value!r} is not a number; give a positive integer, or leave it empty (automatic)")
    if n < 0:
        _fail(f"{name}: {n} is negative; give a positive integer, or leave it empty (automatic)")
    return n


def _validate(a: argparse.Namespace) -> str:
    """Every parameter checked before anything runs; returns the resolved profile."""
    try:
        cfg = load_paper(a.paper, a.profile)
        parse_seeds(a.seeds, cfg.settings.seeds)
        from .harness import resolve_device
        from .harness.executors import make_executor

        resolve_device(a.device)
        make_executor(a.executor, _int_option("WORKERS", a.workers) or None,
                      _int_option("THREADS", a.threads) or None)
    except ConfigError as e:
        _fail(str(e))
    return cfg.profile


def cmd_reproduce(a: argparse.Namespace) -> None:
    from . import book

    profile = _validate(a)
    print(f"== reproducing {a.paper} in the {profile} profile with the {a.executor} executor "
          f"(notebook -> book/papers/{a.paper}.ipynb)", flush=True)
    execute_notebook(a.paper, profile, book.BOOK_DIR / "papers", a.seeds, a.device, a.executor,
                     _int_option("WORKERS", a.workers), _int_option("THREADS", a.threads))
    if not a.no_book:
        index = book.build(book.BOOK_DIR, strict=True)
        print(f"== the book is at {index}\n   open it in a browser (works offline): file://{index}")


def cmd_ladder(a: argparse.Namespace) -> None:
    """The benchmark's scale ladder: every ``ladder-<n>`` profile, smallest first, each an ordinary resumable run
    (results/benchmark/ladder-<n>/); ``make book`` then shows it in the benchmark chapter."""
    from .harness import run_ladder

    if a.executor not in ("local", "ray"):
        _fail(f"EXECUTOR: {a.executor!r} is not an executor; valid: local, ray")
    t0 = time.perf_counter()
    try:
        runs = run_ladder("benchmark", executor=a.executor, workers=_int_option("WORKERS", a.workers) or None,
                          threads=_int_option("THREADS", a.threads) or None)
    except ConfigError as e:
        _fail(str(e))
    print(f"== scale ladder done in {time.perf_counter() - t0:.0f} s: {', '.join(r.profile for r in runs)}; "
          f"make reference PAPER=benchmark PROFILE=<rung> commits a rung, make book shows them", flush=True)


def cmd_reproduce_all(a: argparse.Namespace) -> None:
    """Every paper. Local executor: one after the other in this process's children. Ray: one Ray instance for
    all (or the cluster at RAY_ADDRESS), the papers' notebooks side by side as its drivers, so the instance's
    workers — not the number of papers — bound what computes at once."""
    from . import book

    papers = available_papers()
    for paper in papers:
        a.paper = paper
        _validate(a)
    workers = _int_option("WORKERS", a.workers)
    base = [sys.executable, "-m", "unlearnlib.cli", "reproduce", "--profile", a.profile, "--seeds", a.seeds,
            "--device", a.device, "--executor", a.executor, "--workers", str(workers), "--threads",
            str(_int_option("THREADS", a.threads)), "--no-book"]
    t0 = time.perf_counter()
    if a.executor == "local":
        for paper in papers:
            if subprocess.run([*base, "--paper", paper], cwd=REPO_ROOT).returncode != 0:
                _fail(f"paper {paper} failed (see above)")
    else:
        _reproduce_side_by_side(papers, base, workers)
    print(f"== {len(papers)} papers in {time.perf_counter() - t0:.0f} s ({a.executor} executor)", flush=True)
    if not a.no_book:
        index = book.build(book.BOOK_DIR, strict=True)
        print(f"== the book is at {index}")


def _reproduce_side_by_side(papers: list[str], base: list[str], workers: int) -> None:
    import threading

    from .harness.executors import ray_init
    from .threads import cpu_budget

    ray = None
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        ctx = ray_init(workers or cpu_budget())
        import ray

        address = ctx.address_info["gcs_address"]
        print(f"== a local Ray instance for all papers at {address} ({workers or cpu_budget()} workers)", flush=True)
    env = dict(os.environ, RAY_ADDRESS=address)  # after ray_init: with the loopback setting it made
    try:
        procs = {p: subprocess.Popen([*base, "--paper", p], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for p in papers}

        def relay(paper: str, proc: subprocess.Popen) -> None:
            for line in proc.stdout:
                print(f"[{paper}] {line}", end="", flush=True)

        relays = [threading.Thread(target=relay, args=item, daemon=True) for item in procs.items()]
        for t in relays:
            t.start()
        failed = [p for p, proc in procs.items() if proc.wait() != 0]
        for t in relays:
            t.join()
        if failed:
            _fail(f"paper(s) {', '.join(failed)} failed (see above)")
    finally:
        if ray is not None:
            ray.shutdown()


def cmd_book(a: argparse.Namespace) -> None:
    """Render every chapter from a stored run (your finished run, else our reference; ``--source``), training
    nothing, then build the book. A paper with neither gets a "no run yet" page."""
    from . import book

    if a.source not in ("auto", "local", "reference", "executed"):
        _fail(f"--source {a.source!r}: valid: auto, local, reference, executed (the chapters book/papers holds)")
    if a.source != "executed":
        render_chapters(book.BOOK_DIR, a.source)
    index = book.build(book.BOOK_DIR, strict=not a.no_strict)
    print(f"== the book is at {index}")


def render_chapters(book_dir: Path, source: str = "auto") -> dict[str, str]:
    """Execute every paper's notebook from its stored run (:func:`unlearnlib.results.reference.book_choice`) into
    ``book_dir/papers``; returns paper -> what it shows."""
    from .book import no_run_page, suite
    from .results.reference import book_choice

    shown_as = {}
    t0 = time.perf_counter()
    for pid, title in suite():
        choice = book_choice(pid, source)
        (book_dir / "papers").mkdir(parents=True, exist_ok=True)
        for stale in (book_dir / "papers" / f"{pid}.ipynb", book_dir / "papers" / f"{pid}.md"):
            stale.unlink(missing_ok=True)
        if choice is None:
            no_run_page(book_dir, pid, title)
            shown_as[pid] = "no run yet"
        else:
            profile, src = choice
            t = time.perf_counter()
            try:
                execute_notebook(pid, profile, book_dir / "papers", source=src)
            except SystemExit:  # your run could not be shown (an old or damaged folder): ours, saying so
                fallback = book_choice(pid, "reference") if src == "auto" else None
                if fallback is None:
                    raise
                print(f"warning: {pid}: your {profile} run could not be rendered (see above); the chapter shows our "
                      f"reference run instead. Run it again: make reproduce PAPER={pid} PROFILE={profile}", flush=True)
                profile, src = fallback
                execute_notebook(pid, profile, book_dir / "papers", source=src)
            shown_as[pid] = f"{profile} ({src})"
            print(f"   {pid}: rendered from the {profile} run ({src}) in {time.perf_counter() - t:.0f} s", flush=True)
    print(f"== {len(shown_as)} chapters rendered in {time.perf_counter() - t0:.0f} s, nothing trained", flush=True)
    return shown_as


def _execute_logged(paper: str, profile: str, out_dir: Path, log: Path, threads: str) -> Path:
    """execute_notebook with this process's output in ``log`` and ``UNLEARNLIB_THREADS`` = ``threads`` (which the
    kernel inherits): a book-test worker; the parent shows the log."""
    import contextlib

    os.environ["UNLEARNLIB_THREADS"] = threads
    with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return execute_notebook(paper, profile, out_dir)


def cmd_book_test(a: argparse.Namespace) -> None:
    """Execute every paper notebook in the smoke profile into a scratch copy of the book, build it strictly.

    ``--jobs N`` executes N notebooks at once, each kernel with its share of the cores (``UNLEARNLIB_THREADS``,
    unless already set); their output goes to ``<dir>-logs/<paper>.log`` and is shown when a notebook fails."""
    from . import book
    from .threads import cpu_budget

    jobs = _int_option("--jobs", a.jobs) or 1
    scratch = prepare_book_test_dir(Path(a.dir) if a.dir else None, book.BOOK_DIR)
    papers = available_papers()
    jobs = min(jobs, len(papers))
    t0 = time.perf_counter()
    if jobs == 1:
        for paper in papers:
            execute_notebook(paper, "smoke", scratch / "papers")
    else:
        _execute_side_by_side(papers, scratch, jobs, cpu_budget())
    print(f"== {len(papers)} notebooks executed in {time.perf_counter() - t0:.0f} s ({jobs} at once)", flush=True)
    index = book.build(scratch, strict=True)
    print(f"== strict book build passed: {index}")


BOOK_TEST_MARKER = ".book-test"  # written into every book-test folder: only such a folder is ever deleted


def prepare_book_test_dir(scratch: Path | None, book_dir: Path) -> Path:
    """A fresh copy of the book's sources (no executed chapters, no build) in ``scratch`` (default: a new folder
    under ``build/``), with the marker file ``.book-test``. An existing ``scratch`` is deleted first only when it is
    empty or holds that marker (a previous book-test wrote it): ``--dir .`` or ``--dir ~`` is refused."""
    if scratch is None:
        scratch = Path(tempfile.mkdtemp(prefix="book-test-", dir=REPO_ROOT / "build"
                                        if (REPO_ROOT / "build").exists() else None))
    if scratch.is_symlink() or (scratch.exists() and not scratch.is_dir()):
        _fail(f"--dir {scratch}: not a folder; give a new or empty folder (or one a previous book-test wrote)")
    if scratch.exists():
        if any(scratch.iterdir()) and not (scratch / BOOK_TEST_MARKER).is_file():
            _fail(f"--dir {scratch}: the folder is not empty and no book-test wrote it (it has no {BOOK_TEST_MARKER} "
                  f"file), so it is not deleted; give a new or empty folder (a folder an older book-test wrote, "
                  f"without the marker: remove it yourself)")
        shutil.rmtree(scratch)
    shutil.copytree(book_dir, scratch, ignore=shutil.ignore_patterns("_build", "papers", "_generated", "_toc.yml",
                                                                      BOOK_TEST_MARKER))
    (scratch / BOOK_TEST_MARKER).write_text("written by `python -m unlearnlib.cli book-test`: the next book-test "
                                            "with this --dir deletes this folder\n")
    return scratch


def _execute_side_by_side(papers: list[str], scratch: Path, jobs: int, cores: int) -> None:
    import concurrent.futures as cf
    import multiprocessing

    threads = os.environ.get("UNLEARNLIB_THREADS") or str(max(1, cores // jobs))
    logs = scratch.with_name(scratch.name + "-logs")  # beside the book's sources, not among them
    logs.mkdir(parents=True, exist_ok=True)
    print(f"== executing {len(papers)} notebooks, {jobs} at once, {threads} torch "
          f"thread(s) each (logs: {logs})", flush=True)
    failed = []
    with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_execute_logged, p, "smoke", scratch / "papers", logs / f"{p}.log", threads): p
                   for p in papers}
        for fut in cf.as_completed(futures):
            paper = futures[fut]
            try:
                fut.result()
                print(f"   {paper}: executed", flush=True)
            except BaseException as exc:  # SystemExit from _fail included: the log says why
                tail = (logs / f"{paper}.log").read_text().splitlines()[-40:]
                print(f"   {paper}: FAILED ({type(exc).__name__}: {exc})\n" + "\n".join(tail), flush=True)
                failed.append(paper)
    if failed:
        _fail(f"notebook(s) {', '.join(sorted(failed))} failed in the smoke profile (logs in {logs})")


def cmd_publish(a: argparse.Namespace) -> None:
    """Build the book from every executed chapter, write book.tar.gz, ghp-import it to the local gh-pages branch;
    push it only with --push (make publish PUSH=1)."""
    from . import book
    from .publish import PublishError, publish

    if a.source not in ("reference", "executed"):
        _fail(f"--source {a.source!r}: valid: reference (every chapter from reference/: what main publishes), "
              f"executed (book/papers as it is)")
    if a.source == "reference" and not a.no_build:  # the published book is ours, never a smoke or local run
        render_chapters(book.BOOK_DIR, "reference")
    try:
        done = publish(tarball=Path(a.tarball) if a.tarball else None, branch=a.branch, remote=a.remote,
                       build=not a.no_build, push=a.push)
    except PublishError as e:
        _fail(str(e))
    print(f"== {len(done['chapters'])} chapter(s): {', '.join(done['chapters'])}")
    print(f"== offline copy: {done['tarball']} (unpack it and open book/index.html)")
    if done["pushed"]:
        print(f"== committed {done['commit']} to {done['branch']} and pushed it to {done['remote']}")
    else:
        print(f"== committed {done['commit']} to the local branch {done['branch']}; not pushed (to push: "
              f"`make publish PUSH=1`, or `git push {done['remote']} {done['branch']}`)")


def _papers_arg(paper: str) -> list[str]:
    papers = available_papers()
    if paper == "all":
        return papers
    if paper not in papers:
        _fail(f"PAPER={paper!r}: expected one of: {', '.join(papers)}, or all")
    return [paper]


def cmd_reference(a: argparse.Namespace) -> None:
    """Copy finished local runs into reference/ (refusals: one error line, exit 2)."""
    from .config import resolve_profile
    from .harness.reference import make_reference

    profile = resolve_profile(a.profile)
    if a.paper == "benchmarks":  # the Performance page's CSVs (make benchmarks)
        from .harness.reference import copy_benchmarks

        try:
            copy_benchmarks()
        except ConfigError as e:
            _fail(str(e))
        return
    papers = _papers_arg(a.paper)
    if a.paper == "all":  # every paper with a finished run in this profile; the others are named
        from .paths import results_root
        from .results.reference import has_run

        if any((results_root() / "benchmarks").rglob("*.csv")):  # the Performance page's CSVs too
            from .harness.reference import copy_benchmarks

            copy_benchmarks()
        missing = [p for p in papers if not has_run(results_root() / p / profile)]
        papers = [p for p in papers if p not in missing]
        if missing:
            print(f"== no finished {profile} run of: {', '.join(missing)} (left as they are)")
        if not papers:
            _fail(f"no finished run in the {profile} profile under results/: make reproduce PAPER=<id> first")
    try:
        for paper in papers:
            make_reference(paper, profile, force=a.force)
    except ConfigError as e:
        _fail(str(e))


def cmd_check_reference(a: argparse.Namespace) -> None:
    from .harness.reference import check_references

    print("\n".join(check_references(_papers_arg(a.paper or "all"))))


def cmd_clean_cache(a: argparse.Namespace) -> None:
    from .paths import cache_root, clean_cache

    try:
        removed = clean_cache()
    except ValueError as e:
        _fail(str(e))
    print(f"== cell store at {cache_root()}: " + (f"removed {', '.join(p.name + '/' for p in removed)}" if removed
                                                  else "nothing to remove"))


def cmd_plan(a: argparse.Namespace) -> None:
    """The cells of a run by kind and its estimated time per device, from the config alone (nothing runs)."""
    from .harness.estimate import estimate, render

    if not a.paper:
        _fail(f"PAPER is required; valid papers: {', '.join(available_papers())}")
    try:
        print(render(estimate(a.paper, a.profile)))
    except ConfigError as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def cmd_list(a: argparse.Namespace) -> None:
    from .methods import METHODS

    print("papers:   " + ", ".join(available_papers()))
    print("profiles: auto, " + ", ".join(PROFILES))
    print("methods:  " + ", ".join(METHODS.names()))


class _Parser(argparse.ArgumentParser):
    """argparse with the suite's one-line errors (``error: ...``, exit 2) instead of a usage block."""

    def error(self, message: str) -> None:
        _fail(f"{self.prog}: {message} (see {self.prog} --help)")


def main(argv: list[str] | None = None) -> None:
    p = _Parser(prog="unlearnlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    r = sub.add_parser("reproduce", help="run a paper's notebook and build the book")
    ra = sub.add_parser("reproduce-all", help="every paper (side by side on Ray with --executor ray), then the book")
    for q in (r, ra):
        q.add_argument("--profile", default="auto")
        q.add_argument("--seeds", default="", help="comma-separated; empty: the profile's seeds")
        q.add_argument("--device", default="auto")
        q.add_argument("--executor", default="local", help="local (this process) | ray")
        q.add_argument("--workers", default="", help="ray: local workers (empty: one per core, or per GPU)")
        q.add_argument("--threads", default="", help="torch threads per cell (empty: the fair share of the cores)")
        q.add_argument("--no-book", action="store_true")
    r.add_argument("--paper", default="")
    r.set_defaults(fn=cmd_reproduce)
    ra.set_defaults(fn=cmd_reproduce_all)
    ld = sub.add_parser("ladder", help="the benchmark's scale ladder (its ladder-* profiles, smallest first)")
    ld.add_argument("--executor", default="local", help="local (this process) | ray")
    ld.add_argument("--workers", default="", help="ray: local workers (empty: one per core)")
    ld.add_argument("--threads", default="", help="torch threads per cell (empty: the fair share of the cores)")
    ld.set_defaults(fn=cmd_ladder)
    b = sub.add_parser("book", help="build the book from the executed notebooks in book/papers")
    b.add_argument("--no-strict", action="store_true")
    b.add_argument("--source", default="auto", help="auto (your finished runs, else the reference runs) | "
                   "reference | local | executed (build book/papers as it is)")
    b.set_defaults(fn=cmd_book)
    t = sub.add_parser("book-test", help="smoke-execute every notebook into a scratch book and build it strictly")
    t.add_argument("--dir", default="", help="scratch book folder (new, empty, or written by a previous book-test)")
    t.add_argument("--jobs", default="1", help="notebooks executed at once (each with its share of the cores)")
    t.set_defaults(fn=cmd_book_test)
    pb = sub.add_parser("publish", help="build the book, write book.tar.gz, ghp-import it to gh-pages (--push: push)")
    pb.add_argument("--branch", default="gh-pages")
    pb.add_argument("--remote", default="origin", help="the remote --push pushes to")
    pb.add_argument("--push", action="store_true", help="push the branch to the remote (default: a local commit only)")
    pb.add_argument("--tarball", default="", help="default: book.tar.gz in the repository root")
    pb.add_argument("--no-build", action="store_true", help="publish book/_build/html as it is")
    pb.add_argument("--source", default="reference", help="reference (render every chapter from reference/) | "
                    "executed (the chapters book/papers holds)")
    pb.set_defaults(fn=cmd_publish)
    rf = sub.add_parser("reference", help="copy a finished local run's tidy files into reference/<paper>/<profile>/")
    rf.add_argument("--paper", required=True, help="a paper id, all, or benchmarks (the Performance page's CSVs)")
    rf.add_argument("--profile", default="auto", help="the run's profile (auto: paper with CUDA, else cpu)")
    rf.add_argument("--force", action="store_true", help="accept a run from a work tree with uncommitted changes")
    rf.set_defaults(fn=cmd_reference)
    ck = sub.add_parser("check-reference", help="list per paper what changed since its reference run")
    ck.add_argument("--paper", default="all", help="a paper id, or all")
    ck.set_defaults(fn=cmd_check_reference)
    pl = sub.add_parser("plan", help="a run's cells by kind and its estimated time per device (runs nothing)")
    pl.add_argument("--paper", default="")
    pl.add_argument("--profile", default="auto")
    pl.set_defaults(fn=cmd_plan)
    sub.add_parser("list", help="list papers, profiles and methods").set_defaults(fn=cmd_list)
    sub.add_parser("clean-cache", help="remove the cell store ($UNLEARNLIB_CACHE, default .cache/unlearnlib)"
                   ).set_defaults(fn=cmd_clean_cache)
    a = p.parse_args(argv)
    if a.cmd == "reproduce" and not a.paper:
        _fail(f"PAPER is required; valid papers: {', '.join(available_papers())}")
    a.fn(a)


if __name__ == "__main__":
    main()
