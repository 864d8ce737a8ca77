"""The cell keys of every paper's smoke plan, pinned (issue 23: the config split, the metric specs and the reader's
data model move code, they do not change what the suite computes).

A cell's key hashes its config (``to_dict``/``config_hash`` of the resolved settings and the method's options), its
index arrays and a fingerprint of the source that computes it. The fingerprint changes with every edit of
``metrics/``, ``methods/``, ``data/``, ... by design, so here it is held fixed: the pin says "the same configs, the
same splits, the same cells", not "the same source text". Record again (only after a deliberate change of what
is computed) with ``UNLEARNLIB_RECORD_KEYS=1``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unlearnlib.config import available_papers

FIXTURE = Path(__file__).resolve().parent / "data" / "cell_keys_smoke.json"


def smoke_keys(monkeypatch) -> dict[str, list[str]]:
    import unlearnlib.harness.plan as plan_mod

    monkeypatch.setattr(plan_mod, "code_fingerprint", lambda *paths: "code")
    monkeypatch.setattr(plan_mod, "method_code", lambda method: "code")
    monkeypatch.setattr(plan_mod, "resolve_device", lambda device: plan_mod.torch.device("cpu"))
    return {p: [c.key for c in plan_mod.build_plan(p, "smoke", threads=1).cells] for p in available_papers()}


def test_the_smoke_plans_cell_keys_are_unchanged(monkeypatch, fmnist_system_dir):
    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    keys = smoke_keys(monkeypatch)
    if os.environ.get("UNLEARNLIB_RECORD_KEYS") == "1":
        FIXTURE.write_text(json.dumps(keys, indent=1) + "\n")
        pytest.skip(f"recorded {FIXTURE.name}")
    pinned = json.loads(FIXTURE.read_text())
    assert sorted(keys) == sorted(pinned)
    for paper, want in pinned.items():
        assert keys[paper] == want, f"{paper}: the smoke plan's cells changed"
