"""The CPU numbers do not move (issue 22 part 1): the sync-free CUDA path (labels, permutation and augmentation
draws on the device, the loss sum and the non-finite flag kept there) must leave every CPU number bit for bit as
it was. The fixture ``tests/data/cpu_numbers.pt`` was recorded by running this file's ``compute()`` on main
0c76d5e's code (``UNLEARNLIB_RECORD_CPU=1``), before any of that change: a training run through ``fit`` with a
shuffled, augmented ``Loader`` and the plateau scheduler, its logits through ``predict_logits``, and four methods
whose per-step syncs were removed (random labels, SCRUB, bad teacher, UNSIR), their weights and their traces.

The comparison is exact (``torch.equal``) on one thread. The values depend on the machine's CPU kernels: on
another CPU type a mismatch of the last bits with no code change means the fixture must be recorded again there
(from main's code), not that the code is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import synthetic_images, synthetic_spec

from unlearnlib.data import Loader
from unlearnlib.methods import method_spec
from unlearnlib.trace import collecting
from unlearnlib.train import TrainConfig, fit, predict_logits

FIXTURE = Path(__file__).resolve().parent / "data" / "cpu_numbers.pt"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3))


def _method(name: str, model: nn.Module, images, labels, spec, opts: dict) -> tuple[dict, list]:
    is_f = labels.numpy() == 0
    retain = Loader(images, labels, np.flatnonzero(~is_f), spec, batch_size=16, seed=5, name="retain")
    forget = Loader(images, labels, np.flatnonzero(is_f), spec, batch_size=16, seed=6, name="forget")
    spec_m = method_spec(name)
    torch.manual_seed(3)
    with collecting() as rows:
        out = spec_m(model, retain=retain, forget=forget, cfg=spec_m.config(opts), device=torch.device("cpu"))
    return {k: v.clone() for k, v in out.state_dict().items()}, [(r["name"], r["step"], r["value"]) for r in rows]


METHODS = {"random_labels": {"epochs": 1, "batch_size": 16},
           "scrub": {"epochs": 1, "max_steps": 1, "batch_size": 16, "forget_batch_size": 16},
           "bad_teacher": {"epochs": 1, "batch_size": 16},
           "unsir": {"noise_batch": 8, "noise_steps": 3, "retain_per_class": 8, "impair_batch_size": 16,
                     "repair_batch_size": 16}}


def compute() -> dict:
    spec = synthetic_spec(3, 1, 8)
    images, labels = synthetic_images(90, 3, 1, 8)
    train = Loader(images, labels, np.arange(90), spec, batch_size=16, shuffle=True, augment=True, seed=7)
    model = _net()
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=16, scheduler="plateau", plateau_patience=0)
    hist = fit(model, train, cfg, progress=False)
    logits, ys = predict_logits(model, Loader(images, labels, np.arange(90), spec, batch_size=32))
    out = {"epoch_loss": torch.tensor(hist.epoch_loss, dtype=torch.float64), "steps": hist.steps,
           "weights": {k: v.clone() for k, v in model.state_dict().items()}, "logits": logits, "labels": ys}
    for name, opts in METHODS.items():
        m = _net()
        m.load_state_dict(out["weights"])
        w, rows = _method(name, m, images, labels, spec, opts)
        out[name] = {"weights": w, "trace": rows}
    return out


def test_cpu_numbers_are_the_recorded_ones():
    torch.set_num_threads(1)
    got = compute()
    if os.environ.get("UNLEARNLIB_RECORD_CPU") == "1":
        torch.save(got, FIXTURE)
        pytest.skip(f"recorded {FIXTURE.name}")
    want = torch.load(FIXTURE, weights_only=True)
    assert got["steps"] == want["steps"]
    assert torch.equal(got["epoch_loss"], want["epoch_loss"]), (got["epoch_loss"], want["epoch_loss"])
    for k, v in want["weights"].items():
        assert torch.equal(got["weights"][k], v), k
    assert torch.equal(got["logits"], want["logits"]) and torch.equal(got["labels"], want["labels"])
    for name in METHODS:
        for k, v in want[name]["weights"].items():
            assert torch.equal(got[name]["weights"][k], v), (name, k)
        assert got[name]["trace"] == want[name]["trace"], name
