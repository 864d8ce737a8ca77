"""Per-iteration statistics a method wants shown (a stopping rule's statistic, a phase's loss).

A method calls ``trace("gap", value, step)``; the harness collects the values of the running method
and writes them to ``traces.csv`` (methods never write files). Outside a harness run it is a no-op.

``value`` may be a tensor (a loss on the GPU): it is kept as it is and converted to a float when the
``collecting`` block ends, so tracing a per-step loss makes no host-device synchronisation per step.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar("unlearnlib_trace", default=None)


def trace(name: str, value, step: int) -> None:
    sink = _SINK.get()
    if sink is not None:
        if hasattr(value, "detach"):  # a tensor: read at the end of the collecting block (see above)
            value = value.detach().clone()
        else:
            value = float(value)
        sink.append({"name": str(name), "step": int(step), "value": value})


@contextlib.contextmanager
def collecting() -> Iterator[list[dict]]:
    """``with collecting() as rows:`` every ``trace`` call inside lands in ``rows``."""
    rows: list[dict] = []
    token = _SINK.set(rows)
    try:
        yield rows
    finally:
        _SINK.reset(token)
        for r in rows:
            if not isinstance(r["value"], float):
                r["value"] = float(r["value"])
