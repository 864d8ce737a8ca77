"""Build the comparison book: status table, table of contents, Jupyter Book 1.x, offline check."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .config import available_papers, load_paper
from .paths import REPO_ROOT, shown

BOOK_DIR = REPO_ROOT / "book"


def suite() -> list[tuple[str, str]]:
    """(paper id, chapter title) of every paper YAML, in book order: the one list of the suite's papers."""
    cfgs = [load_paper(pid, "paper") for pid in available_papers()]
    return [(c.id, c.chapter or c.title) for c in sorted(cfgs, key=lambda c: (c.order, c.id))]


def _chapter_file(book_dir: Path, pid: str) -> Path | None:
    """The chapter of ``pid`` in the book: its executed notebook, or its "no run yet" page."""
    return next((f for f in (book_dir / "papers" / f"{pid}.ipynb", book_dir / "papers" / f"{pid}.md")
                 if f.exists()), None)


def _shown_source(book_dir: Path, pid: str) -> str:
    """What the chapter shows: the ``source``/``profile`` papermill injected into its notebook, resolved as the
    notebook resolves it (your run or our reference)."""
    import json

    from .results.reference import choose_source

    nb = book_dir / "papers" / f"{pid}.ipynb"
    if not nb.exists():
        return "no run yet" if (book_dir / "papers" / f"{pid}.md").exists() else "–"
    params = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    try:
        src = choose_source(pid, params.get("profile", "?"), params.get("source", "local"))
    except ValueError:
        return "–"
    return {"reference": "our reference run", "local": "your run", "compute": "your run"}[src.kind] + \
        f" ({params.get('profile')})"


def status_markdown(book_dir: Path) -> str:
    from .results import paper_status
    from .results.reference import load_reference, reference_profiles

    lines = ["| paper | chapter shows | your last run | claims (your run) | our reference run | claims (reference) |",
             "|---|---|---|---|---|---|"]
    for pid, title in suite():
        chapter = _chapter_file(book_dir, pid)
        cfg = load_paper(pid, "paper")
        st = paper_status(cfg)
        refs = reference_profiles(pid)
        ref = paper_status(cfg, runs=[load_reference(pid, refs[0])]) if refs else None
        name = f"[{title}](papers/{chapter.name})" if chapter is not None else title
        mine = f"{st['profile']}, {st['date']}" if st["status"] == "run" else "not run yet"
        theirs = f"{ref['profile']}, {ref['date']}" if ref else "none"
        lines.append(f"| {name} | {_shown_source(book_dir, pid)} | {mine} | {st['claims']} | {theirs} | "
                     f"{ref['claims'] if ref else '–'} |")
    lines.append("")
    lines.append("*Chapter shows*: where the chapter's numbers come from: your own run (`results/`, from `make "
                 "reproduce`) when one exists, else our reference run (`reference/`, committed with the code).")
    lines.append("")
    if (book_dir / "papers" / "benchmark.ipynb").exists():
        lines.append("Every method of the five papers and their baselines side by side, under one protocol (the same "
                     "originals, forget requests and metrics): **[the benchmark chapter](papers/benchmark.ipynb)**.")
        lines.append("")
    lines.append("Numbers from the `cpu` and `smoke` profiles are not the papers' setting: `cpu` runs Fashion-MNIST "
                 "with narrow models and a short recipe; `smoke` only checks the pipeline.")
    return "\n".join(lines) + "\n"


def write_generated(book_dir: Path) -> list[str]:
    """_generated/status.md, the figure of the metrics page, the Performance page (from ``results/benchmarks/``;
    it says how to make the numbers when none were measured) and _toc.yml (intro, the metrics page, every executed
    paper notebook in book order, Performance)."""
    from .performance import write_page

    gen = book_dir / "_generated"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "status.md").write_text(status_markdown(book_dir))
    judging_figure(gen / "judging.png")
    write_page(gen)
    chapters = [pid for pid, _ in suite() if _chapter_file(book_dir, pid) is not None]
    toc = ["format: jb-book", "root: intro", "chapters:", "- file: judging"]
    toc += [f"- file: papers/{pid}" for pid in chapters]
    toc += ["- file: _generated/performance"]
    (book_dir / "_toc.yml").write_text("\n".join(toc) + "\n")
    return chapters


def no_run_page(book_dir: Path, pid: str, title: str) -> Path:
    """``papers/<pid>.md``: the chapter of a paper with neither a local nor a reference run."""
    page = book_dir / "papers" / f"{pid}.md"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"# {title}\n\n**No run yet.** Neither your run (`results/{pid}/`) nor a reference run "
                    f"(`reference/{pid}/`) of this paper exists, so this chapter has no numbers. Compute them:\n\n"
                    f"```bash\nmake reproduce PAPER={pid}\n```\n")
    return page


def judging_figure(path: Path) -> None:
    """The metrics page's figure, drawn from fixed, seeded illustrative numbers (not from a run): verdicts from
    intervals, and one example's per-example test between retrained and unlearned models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .claims import t_interval, verdict

    rng = np.random.default_rng(0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    colours = {"holds": "#2e7d32", "fails": "#c62828", "inconclusive": "#b8860b"}
    for i, (centre, spread) in enumerate(((0.3, 0.15), (0.9, 0.5), (2.2, 0.2))):
        seeds = centre + spread * rng.standard_normal(3)
        mean, lo, hi = t_interval(seeds)
        v = verdict(lo, hi, "<", 1.0)
        a.errorbar(mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o", color=colours[v], capsize=5)
        a.scatter(seeds, [i] * 3, s=12, color="grey", zorder=3)
        a.text(max(hi, 1.2) + 0.1, i, v, va="center", color=colours[v])
    a.axvline(1.0, ls="--", color="black")
    a.set(yticks=[0, 1, 2], yticklabels=["method A", "method B", "method C"], xlim=(-0.5, 4.2),
          xlabel="forget accuracy (%): seeds (grey), mean and 95% interval", title="claim: forget accuracy < 1 %")
    retrained = rng.normal(-1.5, 0.8, 16)
    unlearned = rng.normal(1.0, 0.5, 16)
    bins = np.linspace(-4, 3, 29)
    b.hist(retrained, bins=bins, alpha=0.6, label="16 retrained models", color="#1565c0")
    b.hist(unlearned, bins=bins, alpha=0.6, label="16 unlearned models", color="#ef6c00")
    b.axvline(0.0, ls=":", color="black", label="a threshold test")
    b.set(xlabel="logit-scaled confidence of one forget image, ln p_y - ln(1 - p_y)", ylabel="models",
          title="one example: separable distributions give a large ε")
    b.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ensure_mathjax(book_dir: Path) -> None:
    target = book_dir / "_assets" / "mathjax" / "tex-chtml.js"
    if target.exists():
        return
    src = REPO_ROOT / "book" / "_assets" / "mathjax"
    if (src / "tex-chtml.js").exists() and src != target.parent:
        shutil.copytree(src, target.parent, dirs_exist_ok=True)
        return
    raise SystemExit("MathJax is not installed locally (book/_assets/mathjax/tex-chtml.js is missing): "
                     "run `make setup` (it unpacks the npm package mathjax@3 there), so math renders offline.")


@contextlib.contextmanager
def build_lock(book_dir: Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<book>/_build/.build.lock``: two builds of one book folder (two
    ``make reproduce`` of different papers finishing together) would write ``_generated/``, ``_toc.yml`` and
    ``_build/`` at once. The second waits, saying so in one line. The lock goes with the process (``kill -9``
    included); the file stays, empty."""
    lock = Path(book_dir) / "_build" / ".build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another build of this book to finish (lock: {shown(lock)})", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield lock
    finally:
        os.close(fd)  # releases the lock


def build(book_dir: Path = BOOK_DIR, strict: bool = True) -> Path:
    book_dir = Path(book_dir).resolve()  # jupyter-book runs inside the book folder
    with build_lock(book_dir):
        ensure_mathjax(book_dir)
        chapters = write_generated(book_dir)
        cmd = [sys.executable, "-m", "jupyter_book", "build", str(book_dir), "--builder", "html"]
        if strict:
            cmd += ["-W", "-n", "--keep-going"]
        jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent))
        if jb:
            cmd = [jb, *cmd[3:]]
        print(f"building the book ({len(chapters)} chapter(s): {', '.join(chapters) or 'none'})", flush=True)
        proc = subprocess.run(cmd, cwd=book_dir)
        if proc.returncode != 0:
            raise SystemExit(f"book build failed (exit {proc.returncode})")
        html = book_dir / "_build" / "html"
        problems = external_requests(html)
        if problems:
            raise SystemExit("the book would load resources from the internet:\n  " + "\n  ".join(problems[:20]))
    return html / "index.html"


# What a browser fetches by itself when it opens a page (plain hyperlinks, <a href>, are not requests).
_EXTERNAL = re.compile(r"\s*(?:https?:)?//", re.I)  # another host: http://, https:// or protocol-relative //
_TAG = re.compile(r"<(script|link|img|iframe|source|embed|track|object|video|audio|input)\b[^>]*>", re.I)
_ATTR = re.compile(r"""(?<![\w-])(src|href|data|poster|srcset)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_STYLE = re.compile(r"""<style\b[^>]*>(.*?)</style>|(?<![\w-])style\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I | re.S)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')]*)|@import\s+["']([^"']*)""", re.I)


def _css_requests(css: str) -> list[str]:
    """``url(...)`` and ``@import "..."`` targets in CSS that point at another host (comments ignored)."""
    found = (a or b for a, b in _CSS_URL.findall(_CSS_COMMENT.sub("", css)))
    return [u.strip() for u in found if _EXTERNAL.match(u)]


def _html_requests(html: str) -> list[str]:
    out = []
    for tag in _TAG.finditer(html):
        text = tag.group(0)
        if tag.group(1).lower() == "link" and re.search(r"""rel\s*=\s*["']?(canonical|alternate)""", text, re.I):
            continue
        for attr in _ATTR.finditer(text):
            value = attr.group(2) or attr.group(3) or attr.group(4) or ""
            # srcset: "a.png 1x, https://cdn/b.png 2x": every candidate's URL
            urls = [c.split()[0] for c in value.split(",") if c.split()] if attr.group(1).lower() == "srcset" \
                else [value]
            out += [u.strip() for u in urls if _EXTERNAL.match(u)]
    for block in _STYLE.finditer(html):  # <style> blocks and style="..." attributes
        out += _css_requests(next(g for g in block.groups() if g is not None))
    return out


def external_requests(html_dir: Path) -> list[str]:
    """Resources a page would fetch from another host: the src/href/data/poster/srcset of scripts, styles, images,
    frames, media and objects; ``url(...)`` and ``@import`` in stylesheets (``*.css``), ``<style>`` blocks and
    ``style`` attributes. Plain hyperlinks (<a href>) and <link rel=canonical|alternate> are not requests.
    Requests made by scripts at run time are not seen (the MathJax copy is served locally and makes none)."""
    out = []
    for page in sorted([*html_dir.rglob("*.html"), *html_dir.rglob("*.css")]):
        text = page.read_text(errors="replace")
        found = _css_requests(text) if page.suffix == ".css" else _html_requests(text)
        out += [f"{page.relative_to(html_dir)}: {url[:80]}" for url in found]
    return out
