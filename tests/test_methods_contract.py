"""The contract every registered method keeps, on a tiny synthetic problem (1x8x8 uint8, 3 classes)."""

from __future__ import annotations

import copy
import dataclasses
import inspect

import numpy as np
import pytest
import torch

from unlearnlib.data import Loader
from unlearnlib.methods import METHODS, MethodSpec
from unlearnlib.models import build_model

# small enough for seconds on 2 cores; applied where a method's Config has the field
TINY = dict(epochs=1, max_steps=3, batch_size=16, check_every=1, n_samples=6, max_patches=200, augment=True)


def tiny_config(spec: MethodSpec):
    cfg = spec.Config()
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in TINY.items() if k in names})


# the ViT: 2x2 patches of 4 px (5 tokens), width 8, one block of 2 heads; its head starts at zero (torchvision's
# init), so it is drawn at random here (std 1: at 0.3 no parameter passes SSD's I_f > 10 I_D on this problem, a
# no-op); a zero head gives the backbone no gradient and the methods nothing to do
TINY_VIT = dict(width=8, depth=1, heads=2, patch=4, image_size=8)


@pytest.fixture(params=["resnet18", "vgg11_bn", "vit"])
def tiny_model(request):
    torch.manual_seed(0)
    if request.param == "vit":
        model = build_model("vit", num_classes=3, in_channels=1, **TINY_VIT)
        torch.nn.init.normal_(model.head.weight, std=1.0)
        return model
    return build_model(request.param, num_classes=3, in_channels=1, width=2)


def run_method(name: str, model, problem, seed: int = 0):
    spec = METHODS.get(name)
    retain, forget = problem.loaders()
    unseen = None
    if spec.needs_unseen:
        unseen = Loader(problem.images, problem.labels, problem.retain_idx[::2], problem.spec, batch_size=16,
                        seed=2, name="unseen")
    torch.manual_seed(seed)
    m = copy.deepcopy(model)
    m.train()
    out = spec(m, retain=retain, forget=forget, unseen=unseen, cfg=tiny_config(spec), device="cpu")
    return out, retain, forget


def test_registry_is_not_empty():
    assert {"retrain", "finetune", "neggrad", "neggrad_plus", "deep_unlearning"} <= set(METHODS.names())


@pytest.mark.parametrize("name", METHODS.names())
def test_signature_and_config_defaults(name):
    spec = METHODS.get(name)
    assert spec.name == name
    assert dataclasses.is_dataclass(spec.Config)
    spec.Config()  # every field has a default (the method's paper's values)
    params = inspect.signature(spec.fn).parameters
    for kw in ("retain", "forget", "cfg", "device"):  # keyword-only: retain/forget can never be swapped
        assert params[kw].kind is inspect.Parameter.KEYWORD_ONLY, kw
    assert spec.summary


@pytest.mark.parametrize("name", METHODS.names())
def test_same_keys_shapes_finite_and_changed(name, tiny_model, tiny_problem):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    out, _, _ = run_method(name, tiny_model, tiny_problem)
    after = out.state_dict()
    assert list(after) == list(before)
    for k, v in after.items():
        assert v.shape == before[k].shape and v.dtype == before[k].dtype, k
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    assert any(not torch.equal(after[k], before[k]) for k in after if after[k].is_floating_point())
    with torch.no_grad():
        out.eval()
        y = out(torch.randn(2, 1, 8, 8))
    assert y.shape == (2, 3) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", METHODS.names())
def test_deterministic_under_seed(name, tiny_model, tiny_problem):
    a, _, _ = run_method(name, tiny_model, tiny_problem, seed=0)
    b, _, _ = run_method(name, tiny_model, tiny_problem, seed=0)
    sa, sb = a.state_dict(), b.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", METHODS.names())
def test_declared_reads(name, tiny_model, tiny_problem):
    spec = METHODS.get(name)
    _, retain, forget = run_method(name, tiny_model, tiny_problem)
    if spec.reads_retain:
        assert retain.reads > 0, "declares it reads retain data but never did (is the counter blind?)"
    else:
        assert retain.reads == 0, "declared reads_retain=False but read the retain loader"
    if spec.reads_forget:
        assert forget.reads > 0
    else:
        assert forget.reads == 0, "declared reads_forget=False but read the forget loader"


def test_a_retain_reading_method_would_be_caught(tiny_model, tiny_problem):
    # the reads check can fail: a zero-retain method that peeks at retain through a derived loader
    retain, forget = tiny_problem.loaders()
    next(iter(retain.with_options(batch_size=4, shuffle=True)))
    assert retain.reads > 0 and forget.reads == 0


def test_retrain_reinitialises_before_training(tiny_problem):
    # retrain's result must not depend on the weights it was handed
    torch.manual_seed(0)
    m1 = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    m2 = copy.deepcopy(m1)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(1.0)
    a, _, _ = run_method("retrain", m1, tiny_problem)
    b, _, _ = run_method("retrain", m2, tiny_problem)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_neggrad_stops_once_forget_accuracy_is_reached(tiny_problem, monkeypatch):
    # with a stop threshold of 100 % the ascent ends at the first check (check_every=1): one step
    import unlearnlib.methods.baselines as bl

    histories = []
    real_fit = bl.fit

    def spy(*a, **kw):
        histories.append(real_fit(*a, **kw))
        return histories[-1]

    monkeypatch.setattr(bl, "fit", spy)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    spec = METHODS.get("neggrad")
    cfg = dataclasses.replace(tiny_config(spec), max_steps=50, stop_at_forget_acc=1.0)
    retain, forget = tiny_problem.loaders()
    spec(model, retain=retain, forget=forget, cfg=cfg, device="cpu")
    assert len(histories) == 1 and histories[0].stopped_early and histories[0].steps == 1


def test_loader_indices_are_in_dataset_order(tiny_problem):
    retain, forget = tiny_problem.loaders()
    assert np.all(np.diff(retain.indices) > 0) and np.all(np.diff(forget.indices) > 0)
    assert set(tiny_problem.labels[forget.indices].tolist()) == {0}
