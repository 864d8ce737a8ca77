"""Shared by the benchmark scripts: the output folder, CSV rows with the machine's description, timing, peak memory.

Imported first by every script: it puts this checkout's repository root first on ``sys.path``, so the scripts
measure the ``unlearnlib`` next to them (not another checkout's editable install).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark has: ``--smoke`` (a few seconds, tiny inputs: checks the script, measures
    nothing worth keeping) and ``--out`` (the folder its CSV goes to)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds: checks the script runs")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the CSV (default: results/benchmarks/; required with --smoke)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: every core of this process)")
    return p


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or ``$UNLEARNLIB_RESULTS/benchmarks`` (default ``results/benchmarks``). A smoke run must name its
    folder: it never writes into the repository's results."""
    if args.out is None:
        if args.smoke:
            raise SystemExit("--smoke needs --out DIR (a smoke run never writes into results/)")
        from unlearnlib.paths import results_root

        d = results_root() / "benchmarks"
    else:
        d = Path(args.out)
    d.mkdir(parents=True, exist_ok=True)
    return d


def set_threads(n: int) -> int:
    import torch

    from unlearnlib.threads import cpu_budget

    n = n or cpu_budget()
    torch.set_num_threads(n)
    return n


def machine() -> dict[str, Any]:
    """What every CSV row records about where it was measured."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else (platform.processor() or platform.machine()),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_csv(path: Path, rows: list[dict], columns: Iterable[str] | None = None) -> Path:
    """Rows to ``path`` (every key of every row becomes a column, in first-seen order); returns the path."""
    cols: list[str] = list(columns or [])
    for r in rows:
        cols += [k for k in r if k not in cols]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in cols})
    tmp.replace(path)
    return path


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(fn(*args, **kwargs), seconds), CUDA-synchronised."""
    sync()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t0


class PeakMemory:
    """Peak memory of a block above its start, in MB: the process's resident set on the CPU (Linux: the
    high-water mark is reset through /proc/self/clear_refs), allocated device memory on CUDA."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda, self.mb = cuda, float("nan")

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            _reset_hwm()
            self._start = _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            import torch

            self.mb = (torch.cuda.max_memory_allocated() - self._start) / 2**20
        else:
            hwm = _status_kb("VmHWM") * 1024
            self.mb = max(0.0, (hwm - self._start) / 2**20) if hwm > 0 else float("nan")


def _status_kb(field: str) -> int:
    try:
        m = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
        return int(m.group(1)) if m else -1
    except OSError:
        return -1


def _reset_hwm() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def say(msg: str) -> None:
    print(msg, flush=True)
