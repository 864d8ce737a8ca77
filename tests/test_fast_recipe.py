"""The fast recipe (issue 22 part 3): the one-cycle schedule and label smoothing in the training loop (known
answers), and every paper's ``fast`` profile (config loading only: nothing trains at paper size here)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
import torch.nn as nn

from unlearnlib.config import ConfigError, available_papers, load_paper
from unlearnlib.schema import config_hash, from_dict, to_dict
from unlearnlib.train import TrainConfig, fit, smoothed_cross_entropy

# ----------------------------------------------------------------------------------------------
# one-cycle


def _one_weight() -> nn.Module:
    m = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(m.weight)
    return m


def _plain_sgd(**kw) -> TrainConfig:
    return TrainConfig(**{**dict(optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0, augment=False),
                          **kw})


def test_onecycle_known_answer():
    """loss = w (gradient 1), plain SGD: each step moves w by exactly the step's learning rate. lr 1, 8 steps (2
    epochs of 4 batches), pct_start 0.25, div 10, final_div 100: linear from 0.1 up to 1.0 at step 1, then linear
    down to 0.1 / 100 = 0.001 at step 7 (torch's OneCycleLR, anneal linear). By hand:
    0.1, 1, 1 - 0.999/6, 1 - 2(0.999)/6, ..., 0.001; stepped per optimiser step, not per epoch."""
    model = _one_weight()
    seen = []
    cfg = _plain_sgd(epochs=2, lr=1.0, scheduler="onecycle", onecycle_pct_start=0.25, onecycle_div=10,
                     onecycle_final_div=100)
    fit(model, [None] * 4, cfg, loss_fn=lambda m, _b: m.weight.sum(), progress=False,
        after_step=lambda m, _o, _s: seen.append(-float(m.weight)))
    lrs = [b - a for a, b in zip([0.0, *seen[:-1]], seen, strict=True)]
    want = [0.1, 1.0] + [1 - k * 0.999 / 6 for k in range(1, 7)]
    assert lrs == pytest.approx(want, abs=1e-6)
    assert want[-1] == pytest.approx(0.001)


def test_onecycle_respects_max_steps_and_needs_a_length():
    model = _one_weight()
    h = fit(model, [None] * 4, _plain_sgd(epochs=5, lr=1.0, scheduler="onecycle", max_steps=6),
            loss_fn=lambda m, _b: m.weight.sum(), progress=False)
    assert h.steps == 6  # the cycle spans the 6 steps that run (no error for stepping past its end)
    with pytest.raises(ConfigError, match="onecycle"):
        fit(_one_weight(), lambda: iter([None] * 4), _plain_sgd(epochs=1, scheduler="onecycle"),
            loss_fn=lambda m, _b: m.weight.sum(), progress=False)


# ----------------------------------------------------------------------------------------------
# label smoothing


class _Fixed(nn.Module):
    """Returns the same logits [2, 0, -1] for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([2.0, 0.0, -1.0]))

    def forward(self, x):
        return self.logits.expand(len(x), 3)


# by hand: logsumexp(2, 0, -1) = log(e^2 + 1 + e^-1) = 2.169846; log p = [-0.169846, -2.169846, -3.169846];
# smoothing 0.3 over 3 classes: target weights [0.8, 0.1, 0.1] -> 0.8 * 0.169846 + 0.1 * (2.169846 + 3.169846)
SMOOTHED = 0.8 * 0.169846 + 0.1 * (2.169846 + 3.169846)  # 0.669846


def test_label_smoothing_known_answer():
    batch = (torch.zeros(2, 1), torch.tensor([0, 0]))
    assert float(smoothed_cross_entropy(0.3)(_Fixed(), batch).detach()) == pytest.approx(SMOOTHED, abs=1e-5)
    assert float(smoothed_cross_entropy(0.0)(_Fixed(), batch).detach()) == pytest.approx(0.169846, abs=1e-5)


def test_fit_uses_label_smoothing_in_its_default_loss():
    batch = (torch.zeros(2, 1), torch.tensor([0, 0]))
    for eps, want in ((0.3, SMOOTHED), (0.0, 0.169846)):
        h = fit(_Fixed(), [batch], _plain_sgd(epochs=1, lr=1e-9, scheduler="none", label_smoothing=eps),
                progress=False)
        assert h.epoch_loss[0] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("field,value", [("label_smoothing", 1.0), ("label_smoothing", -0.1),
                                         ("onecycle_pct_start", 0.0), ("onecycle_div", 0.5),
                                         ("scheduler", "triangle")])
def test_bad_fast_recipe_options_are_refused(field, value):
    with pytest.raises(ConfigError, match=field if field != "scheduler" else "scheduler|triangle"):
        from_dict(TrainConfig, {field: value}, "train")


def test_the_new_options_leave_existing_keys_alone():
    """label_smoothing and the one-cycle fields enter a key only when set: every cached recipe keeps its key."""
    new = ("label_smoothing", "onecycle_pct_start", "onecycle_div", "onecycle_final_div")
    before = {k: v for k, v in to_dict(TrainConfig()).items() if k not in new}
    old_hash = hashlib.sha256(json.dumps([before], sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert config_hash(TrainConfig()) == old_hash
    assert config_hash(dataclasses.replace(TrainConfig(), label_smoothing=0.1)) != old_hash


# ----------------------------------------------------------------------------------------------
# the fast profiles (config loading only)


@pytest.mark.parametrize("paper", available_papers())
def test_every_paper_has_a_fast_profile_on_the_papers_data_and_models(paper):
    fast, ref = load_paper(paper, "fast"), load_paper(paper, "paper")
    s, p = fast.settings, ref.settings
    # the paper's datasets, models and widths, scenarios, seeds and method options; Deep Unlearning's fast profile
    # (sized to the <= 45 min goal) gives its ViT 8-px patches and forgets three of the ten classes, declared
    if paper == "deep_unlearning":
        widths = {m: (v.width, v.depth, v.heads) for m, v in s.models.items()}
        assert widths == {m: (v.width, v.depth, v.heads) for m, v in p.models.items()}
        assert s.models["vit"].patch == 8 and p.models["vit"].patch == 4
        assert [f for f in s.split.forget] == [[0], [3], [7]] and all(f in p.split.forget for f in s.split.forget)
        assert any("ViT's patches and the forget classes" in d.what for d in fast.deviations)
        assert (s.dataset, s.seeds, s.methods) == (p.dataset, p.seeds, p.methods)
    else:
        assert (s.dataset, s.models, s.split, s.seeds, s.methods) == (p.dataset, p.models, p.split, p.seeds,
                                                                      p.methods)
    assert (s.train_subset, s.test_subset, s.more_datasets) == (p.train_subset, p.test_subset, p.more_datasets)
    # the fast recipe: one cycle, large batch, label smoothing, fewer epochs, bf16 + channels_last for every cell
    t = s.train
    assert t.scheduler == "onecycle" and t.batch_size >= 512 and t.label_smoothing > 0 and t.epochs < p.train.epochs
    assert s.speed == "fast" and p.speed == "exact"
    # stated as a declared deviation, its accuracy unmeasured
    assert any("fast profile" in d.what and "UNMEASURED" in d.ours for d in fast.deviations), paper
    assert "UNMEASURED" in fast.profile_label and "deviation" in fast.profile_label


def test_retrain_in_the_fast_profile_trains_with_the_fast_recipe():
    from unlearnlib.config import method_config

    s = load_paper("versatile_unlearning", "fast").settings
    cfg = method_config("retrain", s.methods["retrain"], s.train)
    assert (cfg.scheduler, cfg.batch_size, cfg.label_smoothing, cfg.epochs) == ("onecycle", 512, 0.1, 30)


# ----------------------------------------------------------------------------------------------
# the benchmark of fit against a bare loop (its smoke run: checks the script, measures nothing)


def test_fit_overhead_benchmark_smoke(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    repo = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(repo), UNLEARNLIB_THREADS="1")
    proc = subprocess.run([sys.executable, str(repo / "benchmarks" / "fit_overhead.py"), "--smoke", "--out",
                           str(tmp_path), "--threads", "1", "--device", "cpu"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    df = pd.read_csv(tmp_path / "fit_overhead.csv")
    assert list(df.variant) == ["bare", "fit"] and (df.seconds > 0).all()
    assert df.ratio_to_bare.iloc[0] == 1.0
