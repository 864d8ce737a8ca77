"""The run's speed switch (issue 22 part 2): ``speed: exact | fast`` in a profile reaches every cell kind (the
original's training, a method call, the evaluation), is written on every timing row and in env.json, enters the
cell keys only when it is not exact, and every registered method runs under it. And the sync-free step's deferred
reads (part 1): the same numbers as reading every step, a non-finite loss still stops training."""

from __future__ import annotations

import copy
import dataclasses
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from conftest import TinyProblem
from test_methods_contract import run_method

import unlearnlib.config as config_mod
import unlearnlib.train as train_mod
from unlearnlib.config import ConfigError, load_paper
from unlearnlib.data import Loader
from unlearnlib.methods import METHODS
from unlearnlib.models import build_model
from unlearnlib.train import TrainConfig, fit, plain_format, run_speed

torch.set_num_threads(1)

PAPER = "unsir"


@pytest.fixture
def papers(tmp_path, monkeypatch):
    """A copy of the paper YAMLs the loader reads; ``edit(fn)`` changes unsir.yaml's raw mapping."""
    d = tmp_path / "papers"
    shutil.copytree(config_mod.PAPERS_DIR, d)
    monkeypatch.setattr(config_mod, "PAPERS_DIR", d)

    def edit(fn) -> None:
        raw = yaml.safe_load((d / f"{PAPER}.yaml").read_text())
        fn(raw)
        (d / f"{PAPER}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))

    return edit


# ----------------------------------------------------------------------------------------------
# the schema


def test_speed_defaults_to_exact_everywhere_but_the_fast_profiles():
    from unlearnlib.config import available_papers

    for pid in available_papers():
        for profile in ("paper", "cpu", "smoke"):
            assert load_paper(pid, profile).settings.speed == "exact", (pid, profile)
        assert load_paper(pid, "fast").settings.speed == "fast", pid


def test_a_bad_speed_is_one_clear_error(papers):
    papers(lambda raw: raw["profiles"]["smoke"].update(speed="warp"))
    with pytest.raises(ConfigError, match=r"speed.*warp.*exact.*fast|speed.*exact.*fast.*warp"):
        load_paper(PAPER, "smoke")


def test_speed_cannot_differ_between_datasets(papers):
    papers(lambda raw: raw["profiles"]["smoke"]["more_datasets"]["digits"].update(speed="fast"))
    with pytest.raises(ConfigError, match="speed"):
        load_paper(PAPER, "smoke")


# ----------------------------------------------------------------------------------------------
# every cell kind, on the smoke plan


@pytest.mark.parametrize("speed", ["exact", "fast"])
def test_the_switch_reaches_every_cell_kind_and_the_timing_rows(speed, papers, fmnist_system_dir, monkeypatch):
    import unlearnlib.harness.cells as cells_mod
    import unlearnlib.harness.plan as plan_mod
    from unlearnlib.harness.cells import CellRunner
    from unlearnlib.harness.report import environment
    from unlearnlib.harness.store import Store

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    papers(lambda raw: raw["profiles"]["smoke"].update(speed=speed))
    seen: dict[str, list[tuple[bool, bool]]] = {"fit": [], "predict": [], "method": []}

    def state(model) -> tuple[bool, bool]:
        conv = next(m for m in model.modules()  # one whose layouts differ (1 channel or 1x1: the same strides)
                    if isinstance(m, nn.Conv2d) and m.in_channels > 1 and m.kernel_size[0] > 1)
        return torch.is_autocast_enabled("cpu"), conv.weight.is_contiguous(memory_format=torch.channels_last)

    def spy(kind, fn):
        def wrapped(model, *a, **kw):
            seen[kind].append(state(model))
            return fn(model, *a, **kw)
        return wrapped

    monkeypatch.setattr(cells_mod, "fit", spy("fit", cells_mod.fit))
    monkeypatch.setattr(cells_mod, "predict_logits", spy("predict", cells_mod.predict_logits))
    spec = METHODS.get("finetune")
    monkeypatch.setitem(METHODS._items, "finetune", dataclasses.replace(spec, fn=spy("method", spec.fn)))

    plan = plan_mod.build_plan(PAPER, "smoke", device="cpu", methods=["retrain", "finetune"], threads=1)
    assert plan.settings.speed == speed and environment(plan)["speed"] == speed
    runner = CellRunner(plan, Store(say=lambda m: None), progress=False, threads=1)
    first = [c for c in plan.cells if c.dataset == "fashion_mnist"][:4]
    assert [c.kind for c in first] == ["original", "evaluate", "method", "method"]
    records = [runner.run(c) for c in first]
    fast = speed == "fast"
    # the original's training, its evaluation, the method call: under bf16 autocast and channels_last iff fast
    assert seen["fit"] and seen["predict"] and seen["method"]
    for kind, states in seen.items():
        assert all(s == (fast, fast) for s in states), (kind, states)
    assert records[0]["meta"]["speed"] == speed
    for rec in records[2:]:
        assert [t["speed"] for t in rec["timings"]] == [speed]
    assert not torch.is_autocast_enabled("cpu")  # nothing left behind


def test_speed_enters_the_keys_only_when_not_exact(papers, fmnist_system_dir, monkeypatch):
    import unlearnlib.harness.plan as plan_mod

    monkeypatch.setenv("UNLEARNLIB_SYSTEM_DATA", str(fmnist_system_dir))
    exact = [c.key for c in plan_mod.build_plan(PAPER, "smoke", device="cpu", threads=1).cells]
    papers(lambda raw: raw["profiles"]["smoke"].update(speed="exact"))  # said out loud: the same keys
    assert [c.key for c in plan_mod.build_plan(PAPER, "smoke", device="cpu", threads=1).cells] == exact
    papers(lambda raw: raw["profiles"]["smoke"].update(speed="fast"))
    fast = [c.key for c in plan_mod.build_plan(PAPER, "smoke", device="cpu", threads=1).cells]
    assert len(fast) == len(exact) and not set(fast) & set(exact)


# ----------------------------------------------------------------------------------------------
# every method under fast


@pytest.mark.parametrize("name", sorted(METHODS.names()))
def test_every_method_runs_under_fast(name):
    """A method call inside ``run_speed(model, "fast")``: autocast on for its forward passes, it finishes, its
    weights are finite and float32, and the model it returns is in the ordinary format after ``plain_format``."""
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, in_channels=1, width=2)
    dtypes = []
    model.fc.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    m = copy.deepcopy(model)
    with run_speed(m, "fast"):
        out, _, _ = run_method(name, m, TinyProblem())
    out = plain_format(out)
    assert torch.bfloat16 in dtypes, name  # its forward passes ran in bf16
    for k, v in out.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32 and torch.isfinite(v).all(), (name, k)
            assert v.is_contiguous(), (name, k)
    assert not any(h is train_mod._to_channels_last for h in out._forward_pre_hooks.values())


def test_fit_under_an_enclosing_autocast_runs_backward_outside_it():
    """The harness wraps a whole method call in autocast; fit's backward passes run with autocast off."""
    states = []
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    net[0].weight.register_hook(lambda g: states.append((torch.is_autocast_enabled("cpu"), g.dtype)))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    with run_speed(net, "fast"):
        fit(net, lambda: iter(data), TrainConfig(epochs=1, lr=0.1, scheduler="none"), progress=False)
    assert states == [(False, torch.float32)] * 3


# ----------------------------------------------------------------------------------------------
# the deferred reads of the sync-free step, exercised on the CPU


def _train(defer: bool, monkeypatch, lr: float = 0.05, stop=None):
    monkeypatch.setattr(train_mod, "defer_reads", lambda device: defer)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(5)]
    cfg = TrainConfig(epochs=3, lr=lr, batch_size=8, scheduler="plateau", plateau_patience=0)
    hist = fit(net, lambda: iter(data), cfg, progress=False, stop=stop, check_every=2)
    return hist, net


def test_deferred_reads_give_the_numbers_of_per_step_reads(monkeypatch):
    h1, n1 = _train(False, monkeypatch)
    h2, n2 = _train(True, monkeypatch)
    assert h1.epoch_loss == h2.epoch_loss and h1.steps == h2.steps == 15
    for a, b in zip(n1.state_dict().values(), n2.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("defer", [False, True])
def test_a_non_finite_loss_still_stops_training(defer, monkeypatch):
    with pytest.raises(FloatingPointError, match="non-finite|became"):
        _train(defer, monkeypatch, lr=1e30)


def test_deferred_reads_check_the_flag_before_a_stop_rule_sees_the_model(monkeypatch):
    checked = []
    with pytest.raises(FloatingPointError, match="between steps"):
        _train(True, monkeypatch, lr=1e30, stop=lambda m, step: checked.append(step) or False)
    assert not checked  # the rule never ran on a model whose loss had gone non-finite


# ----------------------------------------------------------------------------------------------
# the harness's warm-up shapes and the loader's device copies (device-agnostic code, checked on the CPU)


def test_warm_up_covers_every_batch_shape_of_a_call_on_cuda_and_one_on_the_cpu():
    from unlearnlib.harness.cells import batch_shapes

    p = TinyProblem()  # 40 retain and 20 forget images
    retain, forget = p.loaders(batch_size=16)
    cfg = dataclasses.replace(METHODS.get("scrub").Config(), batch_size=16, forget_batch_size=32)
    # 16 and 32 (the options), and the last batches: 40 % 16 = 8, 40 % 32 = 8, 20 % 16 = 4, 20 % 32 = 20
    assert batch_shapes((retain, forget, None), cfg, torch.device("cuda")) == [4, 8, 16, 20, 32]
    assert batch_shapes((retain, forget, None), cfg, torch.device("cpu")) == [16]


def test_labels_are_copied_to_a_device_once_per_tensor():
    import gc

    from unlearnlib.data.loaders import _ON_DEVICE, on_device

    labels = torch.arange(10)
    assert on_device(labels, torch.device("cpu")) is labels  # already there: no copy
    meta = torch.device("meta")  # a second device without a GPU
    first = on_device(labels, meta)
    assert first.device.type == "meta" and on_device(labels, meta) is first
    n = len(_ON_DEVICE)
    del labels, first
    gc.collect()
    assert len(_ON_DEVICE) == n - 1  # dropped with the tensor it copies


def test_a_loader_reads_the_same_batches_from_tensor_positions():
    p = TinyProblem()
    a = Loader(p.images, p.labels, p.retain_idx, p.spec, batch_size=16, shuffle=True, augment=True, seed=3)
    b = Loader(p.images, p.labels, p.retain_idx, p.spec, batch_size=16, shuffle=True, augment=True, seed=3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    pos = np.array([3, 0, 7])
    xa, ya = a.with_options(augment=False).batch(pos)
    xb, yb = a.with_options(augment=False).batch(torch.as_tensor(pos))
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ya, p.labels[p.retain_idx[pos]])
