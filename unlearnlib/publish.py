"""Publish the book the way Jupyter Book documents it: ``ghp-import`` of ``book/_build/html`` to a ``gh-pages``
branch, plus a self-contained ``book.tar.gz`` a reader opens offline.

``python -m unlearnlib.cli publish`` (``make publish``) builds every chapter that has been executed
(``book/papers/*.ipynb``, written by ``make reproduce``), checks that no page loads anything from the internet, then
commits the pages to the local branch. It pushes only when asked (``--push``, ``make publish PUSH=1``): a clone with
push rights to upstream must not overwrite upstream's pages by accident. Success is reported only when the branch
head really moved (locally, and on the remote after a push); a failed push is one :class:`PublishError` that says
what was committed and the command to push it by hand.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from .paths import REPO_ROOT


class PublishError(RuntimeError):
    """Publishing cannot go on: the message says what is missing and what to do."""


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=check)


def has_remote(repo: Path, remote: str) -> bool:
    return _git(repo, "remote", "get-url", remote, check=False).returncode == 0


def write_tarball(html_dir: Path, target: Path, root: str = "book") -> Path:
    """``target`` (a .tar.gz) holding ``html_dir`` as ``<root>/``: unpack it and open ``<root>/index.html``.
    Written to a temporary name and renamed, so a failure leaves no half-written archive."""
    html_dir, target = Path(html_dir), Path(target)
    if not (html_dir / "index.html").exists():
        raise PublishError(f"{html_dir} has no index.html: build the book first (`make book`)")
    tmp = target.with_name(target.name + ".tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(html_dir, arcname=root)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _rev(repo: Path, ref: str) -> str | None:
    """The commit ``ref`` names, or None when it does not exist."""
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return out.stdout.strip() if out.returncode == 0 else None


def commit_pages(html_dir: Path, repo: Path, branch: str = "gh-pages", remote: str = "origin",
                 message: str = "Publish the book", push: bool = False) -> dict:
    """ghp-import ``html_dir`` onto ``branch`` of the git repository ``repo`` (with a ``.nojekyll``, so Sphinx's
    ``_static`` folders are served); pushed to ``remote`` only with ``push=True``. Returns what was done."""
    import ghp_import

    repo = Path(repo)
    if _git(repo, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise PublishError(f"{repo} is not a git repository: gh-pages needs one (the tarball was still written)")
    if push and not has_remote(repo, remote):
        raise PublishError(f"--push: this repository has no remote {remote!r}; add one (`git remote add {remote} "
                           f"URL`), or publish without --push (a local commit on {branch} only)")
    if push:  # CI publishes the smoke book under smoke/ on the same branch: build on the remote's newest commit
        _git(repo, "fetch", "--quiet", remote, f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}", check=False)
    # ghp-import first moves the local branch to <remote>/<branch> when that exists, then commits on top of it
    base = _rev(repo, f"refs/remotes/{remote}/{branch}") or _rev(repo, f"refs/heads/{branch}")
    cwd = Path.cwd()
    try:
        os.chdir(repo)  # ghp-import works on the repository of the current directory
        ghp_import.ghp_import(str(Path(html_dir).resolve()), mesg=message, branch=branch, remote=remote,
                              nojekyll=True, push=False)
    except ghp_import.GhpError as e:
        raise PublishError(f"ghp-import failed: {e}") from None
    finally:
        os.chdir(cwd)
    head = _rev(repo, f"refs/heads/{branch}")
    if head is None or head == base:  # git fast-import failed: ghp-import only prints "Failed to process commit."
        raise PublishError(f"ghp-import made no commit on {branch} (git fast-import failed, see above): nothing was "
                           f"published")
    short = head[:7]
    if push:
        by_hand = f"push it yourself: git push {remote} {branch}"
        try:
            _git(repo, "push", remote, f"refs/heads/{branch}:refs/heads/{branch}")
        except subprocess.CalledProcessError as e:
            why = ((e.stderr or "").strip().splitlines() or [f"git push exited with {e.returncode}"])[-1]
            raise PublishError(f"committed {short} to the local branch {branch}; the push to {remote} failed "
                               f"({why}); {by_hand}") from None
        remote_head = _git(repo, "ls-remote", remote, f"refs/heads/{branch}", check=False).stdout.split()[:1]
        if remote_head != [head]:
            raise PublishError(f"committed {short} to the local branch {branch}; git push reported success but "
                               f"{remote}'s {branch} is at {(remote_head or ['nothing'])[0][:7]}; {by_hand}")
    return {"branch": branch, "commit": short, "pushed": push, "remote": remote}


def smoke_chapters(chapters: list[Path]) -> list[str]:
    """The executed chapters whose papermill parameters say ``profile: smoke``."""
    import json

    out = []
    for nb in chapters:
        try:
            params = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
        except (ValueError, AttributeError):
            continue
        if params.get("profile") == "smoke":
            out.append(nb.stem)
    return out


def publish(book_dir: Path | None = None, repo: Path = REPO_ROOT, tarball: Path | None = None,
            branch: str = "gh-pages", remote: str = "origin", build: bool = True, push: bool = False) -> dict:
    """Build the book from every executed chapter, write the tarball, commit the pages (and push them with
    ``push=True``)."""
    from . import book

    book_dir = Path(book_dir or book.BOOK_DIR)
    chapters = sorted((book_dir / "papers").glob("*.ipynb")) if (book_dir / "papers").exists() else []
    if not chapters:
        raise PublishError(f"no executed chapter in {book_dir / 'papers'}: run `make reproduce PAPER=<id>` first "
                           f"(or `make test`'s smoke book: `python -m unlearnlib.cli book-test`)")
    smoke = smoke_chapters(chapters)
    if smoke:
        raise PublishError(f"chapter(s) {', '.join(smoke)} come from the smoke profile, a pipeline check: the smoke "
                           f"book is never published over the reference book (CI publishes it under smoke/); "
                           f"`make publish` renders every chapter from reference/")
    if build:
        book.build(book_dir, strict=True)
    html = book_dir / "_build" / "html"
    out = write_tarball(html, Path(tarball or repo / "book.tar.gz"))
    pages = commit_pages(html, repo, branch=branch, remote=remote,
                         message=f"Publish the book: {', '.join(c.stem for c in chapters)}", push=push)
    return {"chapters": [c.stem for c in chapters], "tarball": str(out), **pages}


__all__ = ["PublishError", "publish", "smoke_chapters", "commit_pages", "write_tarball", "has_remote"]
