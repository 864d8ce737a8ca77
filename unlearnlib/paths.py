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


def system_data_dirs() -> list[Path]:
    """Read-only places where an OS package may have put datasets (Debian: /usr/share/datasets)."""
    extra = os.environ.get("UNLEARNLIB_SYSTEM_DATA")
    return [Path(extra)] if extra else [Path("/usr/share/datasets")]
