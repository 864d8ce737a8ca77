"""Issue 22 parts 6-7: the smoke runs of benchmarks/cpu_costs.py, throughput.py and plan_projection.py, and the
Performance page's sections built from what they write (the figures themselves are not tested: smoke sizes measure
nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from unlearnlib.performance import page

REPO = Path(__file__).resolve().parent.parent


def _run(script: str, out: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), UNLEARNLIB_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke", "--out", str(out),
                           "--threads", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_cpu_costs_throughput_and_projection_smoke_and_their_page_sections(tmp_path):
    bench = tmp_path / "bench"
    for script in ("cpu_costs.py", "throughput.py", "plan_projection.py"):
        _run(script, bench)
    costs = pd.read_csv(bench / "cpu_costs.csv")
    assert {"svc_mia_fit", "stop_check_attack", "stop_check_forward"} <= set(costs.what)
    assert set(costs[costs.what == "svc_mia_fit"].case) == {"separated", "overlapping"} and (costs.seconds > 0).all()
    tp = pd.read_csv(bench / "throughputs.csv")
    assert (tp.images_per_s > 0).all() and (tp.train_flops_per_image > 0).all()
    proj = pd.read_csv(bench / "plan_projection.csv")
    assert set(proj.profile) == {"smoke"} and "total" in set(proj.kind) and (
        proj[proj.kind != "group"].h200_hours_assumed > 0).all()  # a group cell's training is its members'
    md, _ = page(bench, tmp_path / "out")
    assert "make plan`'s projection" in md and "assumption, not a measurement" in md
    assert "svc_mia_fit" in md and "No GPU was lent yet" in md


def test_the_page_names_the_commands_before_anything_was_measured(tmp_path):
    md, _ = page(tmp_path / "nothing", tmp_path / "out")
    assert "python benchmarks/plan_projection.py" in md and "python benchmarks/cpu_costs.py" in md
    assert "scripts/gpu_check.sh" in md
