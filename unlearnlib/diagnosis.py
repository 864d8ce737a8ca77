"""What a method can say about its own call, beside the model it returns: how many weights its rule selected and,
when it changed nothing, why it could not.

A method calls ``diagnose(Diagnosis(selected=0, of=n, reason="..."))``; the harness collects it with the call's
budget and stores it with the cell's record (``diagnoses.csv`` in the run folder), and the chapters quote the
reason where they call the call a no-op. Outside a harness run it is a no-op. The method's signature and its one
code path do not change: it still returns the model. Imports nothing of the package.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import asdict, dataclass
from typing import Iterator


@dataclass(frozen=True)
class Diagnosis:
    """A method's own account of one call."""

    selected: int | None = None  # weight elements its selection rule picked to change (None: no such rule)
    of: int | None = None  # out of how many it could have picked
    reason: str = ""  # why nothing could change, in the method's words, from what the call computed ("" if none)

    def as_dict(self) -> dict:
        return asdict(self)


_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar("unlearnlib_diagnosis", default=None)


def diagnose(d: Diagnosis) -> None:
    """Report ``d`` for the running call (the last report of a call counts)."""
    if not isinstance(d, Diagnosis):
        raise TypeError(f"diagnose() takes a Diagnosis, got {type(d).__name__}")
    sink = _SINK.get()
    if sink is not None:
        sink.append(d)


@contextlib.contextmanager
def diagnosing() -> Iterator[list[Diagnosis]]:
    """``with diagnosing() as found:`` every ``diagnose`` call inside lands in ``found``."""
    found: list[Diagnosis] = []
    token = _SINK.set(found)
    try:
        yield found
    finally:
        _SINK.reset(token)


__all__ = ["Diagnosis", "diagnose", "diagnosing"]
