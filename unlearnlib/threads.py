"""CPU threads for torch, divided among everything of the suite that computes on this machine at once.

Two torch processes that each use every core slow each other down badly (measured on 2 cores: two
2-thread processes took 3.3-3.6x longer per step than one alone; two 1-thread processes 1.45x). So every
process that runs cells registers itself here while it computes, and takes ``cores // (processes
computing)`` threads, counted when its run starts. Ray workers are told their share by the executor.

``UNLEARNLIB_THREADS`` (or ``run_paper(threads=N)``) fixes the number. On the CPU the floating-point result of
training depends on the thread count (reductions are split per thread), so a run resolves its count once
(:func:`run_share`) and the keys of its CPU cells include it: cells computed with another count are never
reused, and a run reproduces byte for byte with the same count.

The registry is ``$TMPDIR/unlearnlib-<uid>/computing``: folders of this user only (mode 0700, no symlinks),
one regular file per computing process, named by its pid. Where that cannot be had safely (another user
planted the folder or a symlink), the registry is skipped with one warning: this process then counts as alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Iterator


def cpu_budget() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_WARNED: set[str] = set()


def _unsafe(path: Path, why: str) -> None:
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        warnings.warn(f"{path}: {why}; not used to divide the cores (this process counts itself alone). Remove it, "
                      f"or set TMPDIR to a folder of your own", RuntimeWarning, stacklevel=3)


def _private_dir(path: Path, uid: int) -> bool:
    """Create ``path`` (mode 0700) or accept it if it is a real folder of ``uid``, closed to others."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        _unsafe(path, f"cannot be created ({e.strerror})")
        return False
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        _unsafe(path, "is a symlink or not a folder")
        return False
    if st.st_uid != uid:
        _unsafe(path, f"belongs to another user (uid {st.st_uid})")
        return False
    if st.st_mode & 0o077:  # ours, made by an older version with the umask's mode: close it
        os.chmod(path, 0o700, follow_symlinks=False)
    return True


def _registry() -> Path | None:
    """The folder of computing processes, or None when it cannot be used safely (warned once)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"unlearnlib-{uid}"
    d = base / "computing"
    return d if _private_dir(base, uid) and _private_dir(d, uid) else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _computing_pids() -> set[int]:
    """Pids of the suite's processes computing on this machine now (entries of dead ones are removed; only
    regular files count, and only regular files are ever removed)."""
    d = _registry()
    if d is None:
        return {os.getpid()} if _MINE else set()
    pids = set()
    for f in d.iterdir():
        try:
            pid = int(f.name)
            regular = stat.S_ISREG(os.lstat(f).st_mode)
        except (ValueError, OSError):
            continue
        if not regular:
            continue
        if pid_alive(pid):
            pids.add(pid)
        else:
            with contextlib.suppress(OSError):
                f.unlink()
    return pids


def computing_processes() -> int:
    """Processes of the suite computing on this machine now (stale entries of killed ones are removed)."""
    return len(_computing_pids())


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


_MINE: list[int] = []  # this process's registrations (nested ``computing`` blocks)
_CLAIM: list[Path] = []  # an entry made by :func:`claim`, taken over by the next ``computing`` block


def _register(d: Path) -> Path | None:
    """This process's entry in ``d``, created now (None: it was there already, or cannot be made)."""
    entry = d / str(os.getpid())
    try:
        os.close(os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except FileExistsError:  # registered already (an outer block, or a claim)
        return None
    except OSError as e:
        _unsafe(entry, f"cannot be created ({e.strerror})")
        return None
    return entry


def _unregister(entry: Path | None) -> None:
    with contextlib.suppress(OSError):
        if entry is not None and stat.S_ISREG(os.lstat(entry).st_mode):
            entry.unlink()


def claim() -> bool:
    """Count this process as computing from now until the end of its next ``computing`` block: a run registers
    before it counts the others (:func:`run_share`), so that two runs started together see each other. True if a
    claim was made."""
    d = _registry()
    if d is not None and not _CLAIM and (entry := _register(d)) is not None:
        _CLAIM.append(entry)
        return True
    return False


def release_claim() -> None:
    """Drop a claim that no ``computing`` block took over (its run failed before computing)."""
    while _CLAIM:
        _unregister(_CLAIM.pop())


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """While inside, this process counts as one that computes (for :func:`fair_share`)."""
    d = _registry()
    entry = None if d is None else _register(d)
    if entry is None and _CLAIM:
        entry = _CLAIM.pop()  # the claim of this run: it ends with this block
    _MINE.append(1)
    try:
        yield
    finally:
        _MINE.pop()
        _unregister(entry)


def fair_share() -> int:
    """This process's share of the cores: the cores divided by the processes computing now (at least 1)."""
    return max(1, cpu_budget() // max(1, computing_processes()))


def run_share(requested: int | None = None) -> int:
    """A run's thread count, resolved once at its start: ``requested``, else ``UNLEARNLIB_THREADS``, else the
    cores divided by the processes computing now, this one included."""
    return requested or fixed_threads() or max(1, cpu_budget() // len(_computing_pids() | {os.getpid()}))


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
