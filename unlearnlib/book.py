"""Build the comparison book: status table, table of contents, Jupyter Book 1.x, offline check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from .config import available_papers, load_paper
from .paths import REPO_ROOT

BOOK_DIR = REPO_ROOT / "book"


def suite() -> list[tuple[str, str]]:
    """(paper id, chapter title) of every paper YAML, in book order: the one list of the suite's papers."""
    cfgs = [load_paper(pid, "paper") for pid in available_papers()]
    return [(c.id, c.chapter or c.title) for c in sorted(cfgs, key=lambda c: (c.order, c.id))]


def status_markdown(book_dir: Path) -> str:
    from .results import paper_status

    lines = ["| paper | status | profile of the last run | claims (from that run) | run date |",
             "|---|---|---|---|---|"]
    for pid, title in suite():
        chapter = (book_dir / "papers" / f"{pid}.ipynb").exists()
        st = paper_status(pid)
        name = f"[{title}](papers/{pid}.ipynb)" if chapter else title
        status = "run" if st["status"] == "run" else "implemented, not run yet"
        lines.append(f"| {name} | {status} | {st['profile']} | {st['claims']} | {st['date']} |")
    lines.append("")
    lines.append("Numbers from the `cpu` and `smoke` profiles are not the papers' setting: `cpu` runs Fashion-MNIST "
                 "with narrow models and a short recipe; `smoke` only checks the pipeline.")
    return "\n".join(lines) + "\n"


def write_generated(book_dir: Path) -> list[str]:
    """_generated/status.md and _toc.yml (intro + every executed paper notebook, in suite order)."""
    gen = book_dir / "_generated"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "status.md").write_text(status_markdown(book_dir))
    chapters = [pid for pid, _ in suite() if (book_dir / "papers" / f"{pid}.ipynb").exists()]
    toc = ["format: jb-book", "root: intro"]
    if chapters:
        toc += ["chapters:"] + [f"- file: papers/{pid}" for pid in chapters]
    (book_dir / "_toc.yml").write_text("\n".join(toc) + "\n")
    return chapters


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


def build(book_dir: Path = BOOK_DIR, strict: bool = True) -> Path:
    book_dir = Path(book_dir).resolve()  # jupyter-book runs inside the book folder
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


_RESOURCE = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["'](https?:)?//([^"']+)""",
                       re.I)


def external_requests(html_dir: Path) -> list[str]:
    """Resources a page would fetch from another host (scripts, styles, images, frames).
    Plain hyperlinks (<a href>) are not requests and are allowed."""
    out = []
    for page in sorted(html_dir.rglob("*.html")):
        text = page.read_text(errors="replace")
        for m in _RESOURCE.finditer(text):
            tag = m.group(0)
            if tag.lower().startswith("<link") and re.search(r"""rel=["'](canonical|alternate)""", tag):
                continue
            out.append(f"{page.relative_to(html_dir)}: {m.group(2)[:80]}")
    return out
