"""``make plan`` (issue 22 part 7): every paper and profile planned from its config alone, the cell counts equal to
the real plan's, a known FLOP count, a measured CPU rate read from a CSV, and one-line errors."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from unlearnlib.config import available_papers, load_paper
from unlearnlib.harness.estimate import GPU_ASSUMPTIONS, cpu_rates, estimate, render, rows, train_flops
from unlearnlib.harness.plan import PACKAGE

CASES = [(p, prof) for p in available_papers() for prof in load_paper(p, "paper").profiles]


@pytest.mark.parametrize("paper,profile", CASES)
def test_every_paper_and_profile_is_planned(paper, profile):
    est = estimate(paper, profile)
    text = render(est)
    assert f"== plan of {paper} ({profile}" in text and "ASSUMED" in text and "nothing was run" in text
    assert est.cells > 0 and {"original", "evaluate", "method"} <= set(est.kinds)
    assert est.flops > 0 and math.isfinite(est.hours("h200")) and est.hours("h200") > 0
    total = rows(est)[-1]
    assert total["kind"] == "total" and total["cells"] == est.cells


def test_the_cli_plans_a_paper_and_refuses_bad_input_in_one_line():
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "unlearnlib.cli", "plan", *args], capture_output=True,
                              text=True, cwd=PACKAGE.parent, timeout=300)

    ok = cli("--paper", "unsir", "--profile", "paper")
    assert ok.returncode == 0 and "225 cells" in ok.stdout, ok.stderr
    for args, what in ((("--paper", "nope", "--profile", "cpu"), "unknown paper 'nope'"),
                       (("--paper", "unsir", "--profile", "nope"), "unknown profile 'nope'"),
                       ((), "PAPER is required")):
        bad = cli(*args)
        assert bad.returncode == 2 and what in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("paper", available_papers())
def test_the_estimate_counts_the_cells_the_real_plan_has(paper, fmnist_system_dir, monkeypatch):
    from unlearnlib.harness import build_plan
    from unlearnlib.methods import method_spec

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    plan = build_plan(paper, "smoke", device="cpu", threads=1)
    kinds = {}
    for c in plan.cells:
        kind = "retrain" if c.kind == "method" and method_spec(c.method).trains_from_scratch else c.kind
        kinds[kind] = kinds.get(kind, 0) + 1
    est = estimate(paper, "smoke")
    # the trials and the tuned rows (kind "tuning") are added by the tuning driver round by round, not planned up front
    assert {k: v.cells for k, v in est.kinds.items() if k != "tuning"} == kinds
    t = plan.settings.tuning
    if t.trials:  # the benchmark's smoke tuning: finetune and ssd, every scenario kind, each tuning seed
        kinds_n = len({sc.kind for sc in plan.settings.split.all_scenarios()})
        tuned = len(t.methods)
        assert est.kinds["tuning"].cells == tuned * kinds_n * (t.trials * len(t.seeds) + len(plan.seeds))
    else:
        assert "tuning" not in est.kinds


def test_resnet18_at_cifar_shape_costs_3_33_gflop_a_training_image():
    """The GPU review's figure (3x the forward's 0.556 G multiply-adds, x2 FLOPs each)."""
    assert train_flops("resnet18", 64, None, None, None, 3, 32, 10) == pytest.approx(3.33e9, rel=0.01)


def test_a_measured_cpu_rate_gives_cpu_hours(tmp_path):
    csv = tmp_path / "throughputs.csv"
    csv.write_text("device,model,width,images_per_s,train_flops_per_image,cores\n"
                   "cpu,resnet18,8,100,1e9,2\ncpu,vgg11_bn,8,300,1e9,2\ncpu,allcnn,8,200,1e9,2\n"
                   "cuda,resnet18,64,9999,1e9,16\n")
    rates, source = cpu_rates(csv)
    assert rates["*"] == pytest.approx(0.2) and "3 rows" in source  # TFLOP/s: 200 img/s x 1 GFLOP, the median
    assert rates["resnet18@8"] == pytest.approx(0.1) and "resnet18@64" not in rates  # a cuda row is not the CPU's
    est = estimate("unsir", "smoke", throughputs=csv)  # resnet18 at width 4: not measured, the median rate
    assert est.hours("cpu") == pytest.approx(est.flops / 2e11 / 3600)
    assert est.hours("h200") == pytest.approx(est.flops / (GPU_ASSUMPTIONS["exact"].tflops * 1e12) / 3600)
    missing = estimate("unsir", "smoke", throughputs=tmp_path / "none.csv")
    assert math.isnan(missing.hours("cpu")) and "not measured" in render(missing)
