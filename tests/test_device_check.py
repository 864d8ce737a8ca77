"""The device script (issue 22 part 8) at its tiny size on the CPU: every part writes its CSV, the smoke profile
runs through run_paper, and the run stops itself at its budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def _script(out: Path, fmnist: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), UNLEARNLIB_THREADS="1", UNLEARNLIB_SYSTEM_DATA=str(fmnist),
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--tiny", "--device", "cpu",
                           "--threads", "1", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_the_device_script_tiny_on_the_cpu_writes_every_part(tmp_path, fmnist_system_dir):
    _script(tmp_path, fmnist_system_dir)
    smoke = pd.read_csv(tmp_path / "gpu_smoke.csv")
    assert list(smoke.status) == ["ok"] and smoke.cells.iloc[0] > 0 and smoke.gpus.iloc[0] == "cpu"
    assert len(pd.read_csv(tmp_path / "gpu_smoke_cells.csv")) == smoke.cells.iloc[0]
    tp = pd.read_csv(tmp_path / "gpu_throughput.csv")
    assert {"resnet18", "vgg11_bn", "allcnn", "mobilenetv2", "vit"} <= set(tp.model)
    assert set(tp.variant) == {"harness", "+cudnn.benchmark", "+bf16+channels_last", "ceiling"}
    assert (tp.status == "ok").all() and (tp.images_per_s > 0).all()
    share = pd.read_csv(tmp_path / "gpu_sharing.csv")
    assert list(share.processes) == [1, 2] and (share.status == "ok").all() and (share.images_per_s > 0).all()
    units = pd.read_csv(tmp_path / "gpu_units.csv")
    assert len(units) == 5 and (units.status == "ok").all() and (units.seconds > 0).all()
    assert (tmp_path / "gpu_check.log").exists() and (tmp_path / "nvidia-smi.txt").exists()


def test_the_device_script_stops_at_its_budget(tmp_path, fmnist_system_dir):
    proc = _script(tmp_path, fmnist_system_dir, "--budget", "1", "--parts", "b,d")
    tp, units = pd.read_csv(tmp_path / "gpu_throughput.csv"), pd.read_csv(tmp_path / "gpu_units.csv")
    assert (tp.status == "skipped (time budget)").all() and (units.status == "skipped (time budget)").all()
    assert not (tmp_path / "gpu_smoke.csv").exists() and "== done in" in proc.stdout
