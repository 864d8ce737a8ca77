"""Wall time of the unlearning call only (CUDA-synchronised; evaluation is timed separately)."""

from __future__ import annotations

import time

import torch


class Timer:
    """``with Timer(device) as t: ...``; then ``t.seconds``. Synchronises CUDA before and after."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.seconds = float("nan")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self) -> "Timer":
        self._sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds = time.perf_counter() - self._start


def speedup(retrain_seconds: float, method_seconds: float) -> float:
    """How many times faster than retraining (retrain time / method time)."""
    if not method_seconds > 0:
        return float("nan")
    return float(retrain_seconds) / float(method_seconds)
