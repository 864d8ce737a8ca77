"""Roots for data, cache and results: environment variables first, repository-relative defaults."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _root(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else default


def data_root() -> Path:
    """Where downloaded datasets go (``$UNLEARNLIB_DATA``, default ``./data``)."""
    return _root("UNLEARNLIB_DATA", REPO_ROOT / "data")


def cache_root() -> Path:
    """Checkpoints and prepared data (``$UNLEARNLIB_CACHE``, default ``./.cache/unlearnlib``)."""
    return _root("UNLEARNLIB_CACHE", REPO_ROOT / ".cache" / "unlearnlib")


def results_root() -> Path:
    """Run outputs (``$UNLEARNLIB_RESULTS``, default ``./results``)."""
    return _root("UNLEARNLIB_RESULTS", REPO_ROOT / "results")


def reference_root() -> Path:
    """Committed reference runs (``$UNLEARNLIB_REFERENCE``, default ``./reference``): the tidy files of our finished
    runs, ``reference/<paper>/<profile>/``, from which the book renders without training."""
    return _root("UNLEARNLIB_REFERENCE", REPO_ROOT / "reference")


def system_data_dirs() -> list[Path]:
    """Read-only places where an OS package may have put datasets (Debian: /usr/share/datasets)."""
    extra = os.environ.get("UNLEARNLIB_SYSTEM_DATA")
    return [Path(extra)] if extra else [Path("/usr/share/datasets")]


CACHE_PARTS = ("checkpoints", "cells", "logits", "locks", "datasets")  # what the suite writes below cache_root()


def clean_cache(root: Path | None = None) -> list[Path]:
    """Remove the cell store below ``root`` (default: :func:`cache_root`, so ``$UNLEARNLIB_CACHE`` is honoured):
    only the folders the suite writes there (:data:`CACHE_PARTS`), never the root itself. Refuses a root that is
    the file-system root, the home folder or the repository (a mistyped ``UNLEARNLIB_CACHE``). Returns what it
    removed."""
    import shutil

    root = (root or cache_root()).expanduser().resolve()
    if root in (Path(root.anchor), Path.home().resolve(), REPO_ROOT):
        raise ValueError(f"refusing to clean the cache at {root}: it is the file-system root, the home folder or "
                         f"the repository; set UNLEARNLIB_CACHE to the cache folder itself")
    removed = [root / part for part in CACHE_PARTS if (root / part).exists()]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


_SHOWN_ROOTS = (("UNLEARNLIB_RESULTS", results_root), ("UNLEARNLIB_REFERENCE", reference_root),
                ("UNLEARNLIB_DATA", data_root), ("UNLEARNLIB_CACHE", cache_root))


def shown(path: Path | str) -> str:
    """``path`` as it may be printed into a notebook (and so into the published book): relative to the root it lies
    under, written ``$UNLEARNLIB_RESULTS/...`` (``$UNLEARNLIB_DATA``, ``$UNLEARNLIB_CACHE``,
    ``$UNLEARNLIB_SYSTEM_DATA``) when that variable is set, else relative to the repository (``results/unsir/cpu``);
    a system dataset folder as it is (``/usr/share/datasets/...``); anything else by its last component only. Never
    an absolute path of this machine (user names, directory layout)."""
    p = Path(path).expanduser().resolve()
    roots = [(f"${var}", fn()) for var, fn in _SHOWN_ROOTS if os.environ.get(var)]
    if os.environ.get("UNLEARNLIB_SYSTEM_DATA"):
        roots.append(("$UNLEARNLIB_SYSTEM_DATA", system_data_dirs()[0].expanduser().resolve()))
    roots.append(("", REPO_ROOT))
    for label, root in roots:
        if p == root or root in p.parents:
            rel = p.relative_to(root).as_posix()
            if not label:
                return rel
            return label if rel == "." else f"{label}/{rel}"
    if not os.environ.get("UNLEARNLIB_SYSTEM_DATA") and any(d in p.parents or d == p for d in system_data_dirs()):
        return str(p)
    return f".../{p.name}"
