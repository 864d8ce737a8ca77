"""CPU threads for torch, divided among everything of the suite that computes on this machine at once.

Two torch processes that each use every core slow each other down badly (measured on 2 cores: two
2-thread processes took 3.3-3.6x longer per step than one alone; two 1-thread processes 1.45x). So every
process that runs cells registers itself here while it computes, and takes ``cores // (processes
computing)`` threads, re-read at the start of each cell. Ray workers are told their share by the executor.

``UNLEARNLIB_THREADS`` (or ``run_paper(threads=N)``) fixes the number. On the CPU the floating-point result of
training depends on the thread count (reductions are split per thread): a run reproduces byte for byte with
the same count, and every timing row records the count it ran with.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def cpu_budget() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _registry() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    d = Path(tempfile.gettempdir()) / f"unlearnlib-{uid}" / "computing"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def computing_processes() -> int:
    """Processes of the suite computing on this machine now (stale entries of killed ones are removed)."""
    n = 0
    for f in _registry().glob("*"):
        try:
            pid = int(f.name)
        except ValueError:
            continue
        if pid_alive(pid):
            n += 1
        else:
            f.unlink(missing_ok=True)
    return n


def fixed_threads() -> int | None:
    value = os.environ.get("UNLEARNLIB_THREADS", "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"UNLEARNLIB_THREADS={value!r}: expected a positive integer") from None
    if n < 1:
        raise ValueError(f"UNLEARNLIB_THREADS={value!r}: expected a positive integer")
    return n


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """While inside, this process counts as one that computes (for :func:`fair_share`)."""
    entry = _registry() / str(os.getpid())
    mine = not entry.exists()
    entry.touch()
    try:
        yield
    finally:
        if mine:
            entry.unlink(missing_ok=True)


def fair_share() -> int:
    """This process's share of the cores: the cores divided by the processes computing now (at least 1)."""
    return max(1, cpu_budget() // max(1, computing_processes()))


def use(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads``, else ``UNLEARNLIB_THREADS``, else the fair share."""
    import torch

    n = threads or fixed_threads() or fair_share()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def using(threads: int | None = None) -> Iterator[int]:
    """:func:`use` for the duration of a block; the previous count is restored after it."""
    import torch

    before = torch.get_num_threads()
    try:
        yield use(threads)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
