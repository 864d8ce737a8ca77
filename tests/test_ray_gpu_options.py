"""Issue 22 part 5 without a GPU: a retrain's training half runs without its original and gives the same model,
record and traces as the cell run whole; the dataset stays on the CPU until a cell computes; ``cells_per_gpu``
is checked and becomes the tasks' GPU fraction; the physical device is on every timing row."""

from __future__ import annotations

import pytest
import torch
from conftest import env_vars

from unlearnlib.config import ConfigError
from unlearnlib.harness import build_plan, executors
from unlearnlib.harness.cells import CellRunner, physical_device
from unlearnlib.harness.store import Store

PAPER, PROFILE, METHODS = "unsir", "smoke", ["retrain"]


def _cells(plan):
    part = next(iter(plan.parts))
    cells = [c for c in plan.cells if (c.part or c.dataset) == part]
    orig = next(c for c in cells if c.kind == "original")
    ev = next(c for c in cells if c.kind == "evaluate")
    retrain = next(c for c in cells if c.method == "retrain" and c.scenario == ev.scenario)
    return orig, ev, retrain


def _rows(record):
    return [{**r, "value": repr(r["value"])} for r in record["rows"]  # repr: nan equals nan
            if r["metric"] not in ("unlearn_time_s", "speedup_vs_retrain")]


def test_a_retrains_training_half_needs_no_original_and_gives_the_same_cell(fmnist_system_dir, tmp_path):
    out = {}
    for way in ("whole", "split"):
        with env_vars(UNLEARNLIB_SYSTEM_DATA=fmnist_system_dir, UNLEARNLIB_CACHE=tmp_path / way):
            plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS, threads=1)
            store = Store(say=lambda m: None)
            runner = CellRunner(plan, store, progress=False, threads=1, say=lambda m: None)
            orig, ev, retrain = _cells(plan)
            if way == "split":  # first, with no original anywhere in the store
                assert not store.has_model(orig.model_key)
                runner.train_from_scratch(retrain)
                assert store.has_model(retrain.model_key) and not store.has_model(orig.model_key)
            for cell in (orig, ev, retrain):
                record = runner.run(cell)
            model = plan.part(retrain.part or retrain.dataset).new_model(retrain.model)
            store.load_model(retrain.model_key, model)
            out[way] = record, model.state_dict()
    (whole, w_state), (split, s_state) = out["whole"], out["split"]
    assert w_state.keys() == s_state.keys() and all(torch.equal(w_state[k], s_state[k]) for k in w_state)
    assert _rows(whole) == _rows(split)
    assert whole["traces"] == split["traces"]
    # the split cell's call was computed for it, not reused from another run
    assert [t["cached"] for t in whole["timings"]] == [t["cached"] for t in split["timings"]] == [False]
    assert split["timings"][0]["gpu"] == "cpu" and split["cell_seconds"]["call"] > 0


def test_training_half_refused_for_a_cell_that_does_not_train_from_scratch(fmnist_system_dir, tmp_path):
    with env_vars(UNLEARNLIB_SYSTEM_DATA=fmnist_system_dir, UNLEARNLIB_CACHE=tmp_path):
        plan = build_plan(PAPER, PROFILE, device="cpu", methods=["retrain", "finetune"], threads=1)
        runner = CellRunner(plan, Store(say=lambda m: None), progress=False, threads=1)
        cell = next(c for c in plan.cells if c.method == "finetune")
        assert not executors.from_scratch(cell) and executors.from_scratch(_cells(plan)[2])
        with pytest.raises(ValueError, match="does not train from scratch"):
            runner.train_from_scratch(cell)


def test_the_plan_leaves_the_dataset_on_the_cpu(fmnist_system_dir, monkeypatch):
    """A driver plans only: its images stay where they were loaded (a cell moves them to its own device)."""
    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    plan = build_plan(PAPER, PROFILE, device="cpu", methods=METHODS, threads=1)
    for part in plan.parts.values():
        assert part.data.train_x.device.type == "cpu" and part.data.test_x.device.type == "cpu"
        part.to_device(torch.device("cpu"))  # nothing to do on the CPU
        assert part.data.train_x.device.type == "cpu"


@pytest.mark.parametrize("value", [0, -1, 65, 1.5, "two", True])
def test_cells_per_gpu_is_checked(value):
    with pytest.raises(ConfigError, match="cells_per_gpu: expected an integer from 1 to 64"):
        executors.make_executor("ray", cells_per_gpu=value)


def test_cells_per_gpu_from_the_environment_is_checked_and_named(monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_CELLS_PER_GPU", "x")
    with pytest.raises(ConfigError, match="^UNLEARNLIB_CELLS_PER_GPU: expected"):
        executors.make_executor("ray")
    monkeypatch.setenv("UNLEARNLIB_CELLS_PER_GPU", "4")
    assert executors.make_executor("ray").cells_per_gpu == 4


def test_the_local_executor_refuses_to_share_a_gpu():
    with pytest.raises(ConfigError, match="local executor runs one cell at a time .* share a GPU among 3 cells"):
        executors.make_executor("local", cells_per_gpu=3)


def test_cells_per_gpu_sets_the_gpu_fraction_and_the_local_workers(monkeypatch):
    ex = executors.make_executor("ray", cells_per_gpu=4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert ex._workers(cuda=True) == 8 and "4 cells per GPU" in ex.describe()
    ex.workers = 9
    with pytest.raises(ConfigError, match="workers: 9 is more than the 8 cell"):
        ex.threads_for(torch.device("cuda"))
    # the fraction each task asks for: recorded from the options the executor gives Ray
    seen = {}

    class FakeRemote:
        def options(self, **kw):
            seen.update(kw)
            return self

    class FakeRay:
        exceptions = None

        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def remote(fn):
            return FakeRemote()

    monkeypatch.setattr(executors, "import_ray", lambda local: FakeRay)
    plan = type("P", (), {"device": torch.device("cuda"), "spec": {}, "threads": 1})()
    ex.workers = None
    ex.run(plan, Store(say=lambda m: None), [], on_done=lambda c: None)
    assert seen["num_gpus"] == pytest.approx(0.25) and seen["max_retries"] == 2


def test_the_physical_device_of_a_cpu_cell_is_cpu():
    assert physical_device(torch.device("cpu")) == "cpu"


def test_the_physical_gpu_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    assert physical_device(torch.device("cuda", 1)) == "5"
    assert physical_device(torch.device("cuda", 0)) == "3"
