"""Command line: ``python -m unlearnlib.cli {list,reproduce,book,book-test}`` (used by the Makefile)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .config import PROFILES, ConfigError, available_papers, load_paper, parse_seeds
from .paths import REPO_ROOT


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def execute_notebook(paper: str, profile: str, out_dir: Path, seeds: str = "", device: str = "auto") -> Path:
    """papermill: notebooks/<paper>.ipynb -> <out_dir>/<paper>.ipynb with the parameters injected."""
    import papermill as pm

    src = REPO_ROOT / "notebooks" / f"{paper}.ipynb"
    if not src.exists():
        _fail(f"no notebook {src.relative_to(REPO_ROOT)} for paper {paper!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{paper}.ipynb"
    tmp = out_dir / f".{paper}.partial.ipynb"
    try:
        pm.execute_notebook(str(src), str(tmp), parameters={"paper": paper, "profile": profile, "seeds": seeds,
                                                              "device": device},
                            log_output=False, stdout_file=sys.stdout, stderr_file=sys.stderr, progress_bar=False,
                            cwd=str(REPO_ROOT), kernel_name="python3")
    except pm.PapermillExecutionError as exc:
        tmp.unlink(missing_ok=True)
        _fail(f"notebook {paper} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}")
    tmp.replace(out)  # only a fully executed notebook reaches the book
    return out


def _validate(paper: str, profile: str, seeds: str, device: str) -> str:
    try:
        cfg = load_paper(paper, profile)
        parse_seeds(seeds, cfg.settings.seeds)
        from .harness import resolve_device

        resolve_device(device)
    except ConfigError as e:
        _fail(str(e))
    return cfg.profile


def cmd_reproduce(a: argparse.Namespace) -> None:
    from . import book

    profile = _validate(a.paper, a.profile, a.seeds, a.device)
    print(f"== reproducing {a.paper} in the {profile} profile (notebook -> book/papers/{a.paper}.ipynb)", flush=True)
    execute_notebook(a.paper, profile, book.BOOK_DIR / "papers", a.seeds, a.device)
    if not a.no_book:
        index = book.build(book.BOOK_DIR, strict=True)
        print(f"== the book is at {index}\n   open it in a browser (works offline): file://{index}")


def cmd_book(a: argparse.Namespace) -> None:
    from . import book

    index = book.build(book.BOOK_DIR, strict=not a.no_strict)
    print(f"== the book is at {index}")


def cmd_book_test(a: argparse.Namespace) -> None:
    """Execute every paper notebook in the smoke profile into a scratch copy of the book, build it strictly."""
    from . import book

    scratch = Path(a.dir) if a.dir else Path(tempfile.mkdtemp(prefix="book-test-", dir=REPO_ROOT / "build"
                                                               if (REPO_ROOT / "build").exists() else None))
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(book.BOOK_DIR, scratch, ignore=shutil.ignore_patterns("_build", "papers", "_generated",
                                                                           "_toc.yml"))
    for paper in available_papers():
        execute_notebook(paper, "smoke", scratch / "papers")
    index = book.build(scratch, strict=True)
    print(f"== strict book build passed: {index}")


def cmd_list(a: argparse.Namespace) -> None:
    from .methods import METHODS

    print("papers:   " + ", ".join(available_papers()))
    print("profiles: auto, " + ", ".join(PROFILES))
    print("methods:  " + ", ".join(METHODS.names()))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="unlearnlib", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run a paper's notebook and build the book")
    r.add_argument("--paper", default="")
    r.add_argument("--profile", default="auto")
    r.add_argument("--seeds", default="", help="comma-separated; empty: the profile's seeds")
    r.add_argument("--device", default="auto")
    r.add_argument("--no-book", action="store_true")
    r.set_defaults(fn=cmd_reproduce)
    b = sub.add_parser("book", help="build the book from the executed notebooks in book/papers")
    b.add_argument("--no-strict", action="store_true")
    b.set_defaults(fn=cmd_book)
    t = sub.add_parser("book-test", help="smoke-execute every notebook into a scratch book and build it strictly")
    t.add_argument("--dir", default="")
    t.set_defaults(fn=cmd_book_test)
    sub.add_parser("list", help="list papers, profiles and methods").set_defaults(fn=cmd_list)
    a = p.parse_args(argv)
    if a.cmd == "reproduce" and not a.paper:
        _fail(f"PAPER is required; valid papers: {', '.join(available_papers())}")
    a.fn(a)


if __name__ == "__main__":
    main()
