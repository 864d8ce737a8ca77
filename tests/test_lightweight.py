"""Lightweight unlearning (arXiv 2111.05528, a reconstruction): helpers, contract, and behaviour on real data.

Behaviour (Fashion-MNIST from the Debian package; skipped when it is missing): a narrow VGG-11-BN (width 8)
is trained on 3000 class-stratified training images for 14 epochs (Adam 2e-3, cosine, no augmentation) so
that it memorises a little; 1000 other training images are held out as the "unseen" third-party data.
300 random training images are forgotten. The trained model is built once per process
(:func:`fmnist_problem`, also used by ``test_versatile.py``).

Measured on the development machine (torch CPU, 1 thread, seed 0), accuracies in %:

    original                     forget 96.7   retain 97.0   unseen 85.2   (loss-LR MIA forget/unseen 0.585)
    retrained on retain (2 seeds) forget 81.0-81.3   retain 95.6-96.9   unseen 82.3-83.7   (MIA 0.48-0.49)
    lightweight H1 (defaults, no augmentation, stat_samples 500)
                                 forget 83.0   retain 93.3   unseen 82.6   stopped at step 344 of at most 430,
                                 |acc_f - acc_u| 0.063 after the perturbation -> 0.014; 16 s
                                 (stat_samples 1000: forget 83.7, retain 94.7, unseen 83.6, step 340)
    identity                     forget 96.7 (fails the checks, as it must)

Other settings measured with the same model (not tested, recorded for the paper YAML): H1 with sigma 0.05
and lr 1e-3 re-memorises (forget back to 95.0); H1 with sigma 0 (plain fine-tuning at lr 0.01) also
reaches forget 84.7 because SGD at that rate perturbs the Adam-trained weights by itself; H2 (reference on
50 % of retain, alpha 0.003) ends at forget 83.3 / retain 89.6 / unseen 81.1 at the maximum; H3 stops at
forget 87.3 / retain 96.1 / unseen 84.9.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnlib.data import DatasetSpec, Loader, stratified_subset
from unlearnlib.methods import METHODS
from unlearnlib.methods import lightweight as lw
from unlearnlib.models import build_model
from unlearnlib.trace import collecting
from unlearnlib.train import TrainConfig, fit, predict_logits

torch.set_num_threads(1)

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")

# ---------------------------------------------------------------------------------------------------------
# a tiny synthetic problem (own copy: these tests do not use conftest's fixtures)


def tiny_spec() -> DatasetSpec:
    return DatasetSpec(name="synthetic", num_classes=3, channels=1, size=8, mean=(0.5,), std=(0.25,),
                       classes=("0", "1", "2"), locate=lambda _p: None, build=lambda _p, _d: (None, None),
                       augment="crop_flip")


class Tiny:
    """90 uint8 1x8x8 images, 3 classes (brightness shifts with the class); forget = 12 random images of
    the first 60, retain = the rest of them, unseen = the last 30 (never trained on)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.spec = tiny_spec()
        self.labels = (torch.arange(90) % 3).long()
        noise = torch.randint(0, 120, (90, 1, 8, 8), generator=g)
        self.images = (noise + 60 * self.labels.view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
        rng = np.random.default_rng(0)
        self.forget_idx = np.sort(rng.choice(60, 12, replace=False))
        self.retain_idx = np.setdiff1d(np.arange(60), self.forget_idx)
        self.unseen_idx = np.arange(60, 90)

    def loaders(self):
        def mk(idx, seed, name):
            return Loader(self.images, self.labels, idx, self.spec, batch_size=16, seed=seed, name=name)

        return mk(self.retain_idx, 0, "retain"), mk(self.forget_idx, 1, "forget"), mk(self.unseen_idx, 2, "unseen")


TINY_OPTIONS = dict(epochs=2, max_steps=6, batch_size=16, check_every=2, augment=False, stat_samples=50,
                    ref_epochs=1, h3_batches=2)


def tiny_run(method: str = "lightweight", seed: int = 0, arch: str = "vgg11_bn", **overrides):
    """(model before, model after, trace rows) for one run on the tiny problem."""
    tiny = Tiny()
    torch.manual_seed(123)
    model = build_model(arch, num_classes=3, in_channels=1, width=2)
    before = copy.deepcopy(model)
    spec = METHODS.get(method)
    fields = {f.name for f in dataclasses.fields(spec.Config)}
    opts = {k: v for k, v in {**TINY_OPTIONS, **overrides}.items() if k in fields}
    cfg = dataclasses.replace(spec.Config(), **opts)
    retain, forget, unseen = tiny.loaders()
    torch.manual_seed(seed)
    model.train()
    with collecting() as rows:
        out = spec(model, retain=retain, forget=forget, unseen=unseen, cfg=cfg, device="cpu")
    return before, out, rows


def changed(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(not torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())


def same_layout(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype, k
        if sb[k].is_floating_point():
            assert torch.isfinite(sb[k]).all(), k


# ---------------------------------------------------------------------------------------------------------
# helpers


def test_relative_perturbation_scales_with_each_tensor_and_masks_restrict_it():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(50, 40), torch.nn.Linear(40, 30))
    with torch.no_grad():
        m[1].weight.mul_(100.0)
    before = copy.deepcopy(m)
    lw.perturb(m, kind="relative", sigma=0.1, which="weights")
    for i in (0, 1):
        w0, w1 = before[i].weight.detach(), m[i].weight.detach()
        ratio = float((w1 - w0).pow(2).mean().sqrt() / w0.pow(2).mean().sqrt())
        assert 0.08 < ratio < 0.12, (i, ratio)  # sigma x RMS of *that* tensor
        assert torch.equal(before[i].bias, m[i].bias)  # which="weights": biases untouched
    mask = torch.zeros_like(m[0].weight)
    mask[:5] = 1.0
    before = copy.deepcopy(m)
    lw.perturb(m, kind="gaussian", sigma=1.0, which="all", masks={"0.weight": mask})
    assert torch.equal(m[0].weight[5:], before[0].weight[5:]) and not torch.equal(m[0].weight[:5],
                                                                                   before[0].weight[:5])
    assert torch.equal(m[1].weight, before[1].weight)  # not in the masks: not perturbed


def test_fisher_masks_keep_the_requested_share_of_each_tensor():
    tiny = Tiny()
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    retain, forget, _ = tiny.loaders()
    cfg = lw.Config(h3_fraction=0.25, batch_size=8)
    masks = lw.fisher_masks(model, forget, retain, cfg)
    assert set(masks) == {n for n, p in model.named_parameters()}
    for name, mk in masks.items():  # exactly round(25 %) of each tensor, even with tied (zero) scores
        assert mk.sum() == max(1, round(0.25 * mk.numel())) and set(mk.unique().tolist()) <= {0.0, 1.0}, name
    g = lw.fisher_masks(model, forget, retain, dataclasses.replace(cfg, h3_scope="global", h3_score="ratio"))
    total = sum(float(mk.sum()) for mk in g.values()) / sum(mk.numel() for mk in g.values())
    assert abs(total - 0.25) < 1e-3


def test_interpolation_moves_toward_the_reference():
    torch.manual_seed(0)
    a = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    w0 = [p.clone() for p in a.parameters()]
    lw.interpolate_(a, b, 0.25)  # theta + 0.25 (theta_ref - theta) = theta + 0.25
    assert all(torch.allclose(p, q + 0.25) for p, q in zip(a.parameters(), w0, strict=True))
    lw.interpolate_(a, b, 1.0)
    assert not changed(a, b)


# ---------------------------------------------------------------------------------------------------------
# contract


def test_registered_with_unseen_and_refuses_to_run_without_it():
    spec = METHODS.get("lightweight")
    assert spec.needs_unseen and spec.reads_retain and spec.reads_forget
    retain, forget, _ = Tiny().loaders()
    model = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    with pytest.raises(ValueError, match="unseen"):
        spec(model, retain=retain, forget=forget, cfg=spec.Config(), device="cpu")


@pytest.mark.parametrize("interpretation", ["H1", "H2", "H3"])
def test_each_interpretation_runs_changes_weights_keeps_layout_and_traces(interpretation):
    before, after, rows = tiny_run(interpretation=interpretation, recover=None)
    same_layout(before, after)
    assert changed(before, after)
    names = {r["name"] for r in rows}
    assert {"stop_statistic", "forget_acc", "unseen_acc", "forget_loss", "unseen_loss"} <= names
    assert "mia_acc" not in names  # acc_gap, the default rule, does not read the attack: it is not fitted
    steps = sorted({r["step"] for r in rows if r["name"] == "stop_statistic"})
    assert steps[0] == 0 and len(steps) >= 2  # after the perturbation, then at least one later check


@pytest.mark.parametrize("overrides", [dict(interpretation="H1"), dict(interpretation="H2", ref_init="perturbed"),
                                       dict(interpretation="H3", h3_scope="global", perturbation="gaussian")])
def test_deterministic_under_manual_seed(overrides):
    _, a, ra = tiny_run(seed=7, **overrides)
    _, b, rb = tiny_run(seed=7, **overrides)
    assert not changed(a, b)
    assert ra == rb
    _, c, _ = tiny_run(seed=8, **overrides)
    assert changed(a, c)  # the seed matters (the perturbation is drawn from it)


def test_h3_perturbs_only_the_selected_parameters():
    tiny = Tiny()
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=3, in_channels=1, width=2)
    retain, forget, _ = tiny.loaders()
    masks = lw.fisher_masks(model, forget, retain, lw.Config(h3_fraction=0.1, batch_size=8))
    before = copy.deepcopy(model)
    lw.perturb(model, kind="relative", sigma=0.5, which="all", masks=masks)
    for (name, p), (_, q) in zip(model.named_parameters(), before.named_parameters(), strict=True):
        moved = (p != q)
        assert not moved[masks[name] == 0].any(), name


def test_stop_rule_ends_training_and_the_maximum_bounds_it():
    # tolerance 1 with patience 1: the check right after the perturbation passes, no training at all;
    # with sigma 0 the model is then unchanged
    before, after, rows = tiny_run(sigma=0.0, acc_gap_tol=1.0, patience=1, recover=None)
    assert not changed(before, after)
    assert [r["step"] for r in rows if r["name"] == "stop_statistic"] == [0]
    # tolerance 0 never passes: training runs to max_steps, and the end is logged
    _, _, rows = tiny_run(acc_gap_tol=0.0, recover=None, max_steps=5, check_every=2)
    assert max(r["step"] for r in rows if r["name"] == "stop_statistic") == 5


def test_recovery_guard_is_traced_and_blocks_the_stop():
    # recover > 1 can never be met: the run goes to the maximum although the gap rule passes
    _, _, rows = tiny_run(acc_gap_tol=1.0, patience=1, recover=1.5, max_steps=4, check_every=2)
    assert "retain_acc" in {r["name"] for r in rows}
    assert max(r["step"] for r in rows if r["name"] == "stop_statistic") == 4


@pytest.mark.parametrize("bad", [dict(interpretation="H4"), dict(perturbation="uniform"), dict(stop_rule="x"),
                                 dict(h3_fraction=0.0), dict(alpha=2.0), dict(patience=0)])
def test_invalid_config_is_rejected(bad):
    with pytest.raises(ValueError):
        tiny_run(**bad)


def test_class_forgetting_is_recognised_from_the_labels():
    tiny = Tiny()
    retain, forget, _ = tiny.loaders()
    assert not lw.is_class_forgetting(retain, forget)  # random forgetting: every class keeps retain images
    y = tiny.labels.numpy()
    mk = functools.partial(Loader, tiny.images, tiny.labels, spec=tiny.spec, batch_size=16)
    first = np.arange(60)
    assert lw.is_class_forgetting(mk(indices=first[y[first] != 2], seed=0), mk(indices=first[y[first] == 2], seed=1))
    # a forget set that also holds a retained class is not class forgetting
    mixed = first[(y[first] == 2) | (first == 0)]
    assert not lw.is_class_forgetting(mk(indices=first[y[first] != 2], seed=0), mk(indices=mixed, seed=1))


class NeverClass2(torch.nn.Module):
    """Predicts the brightness class, except that class 2 is never predicted (as if never learned)."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        logits = -(m - torch.tensor([[-1.0, 0.0, 1.0]])).abs()
        logits[:, 2] = -1e9
        return logits


def test_class_level_gap_is_measured_against_zero_not_the_unseen_accuracy():
    tiny = Tiny()
    y = tiny.labels.numpy()
    mk = functools.partial(Loader, tiny.images, tiny.labels, spec=tiny.spec, batch_size=16)
    forget = mk(indices=np.flatnonzero(y[:60] == 2), seed=1)
    unseen = mk(indices=np.arange(60, 90), seed=2)
    model = NeverClass2().eval()
    sample = lw.GapMonitor(forget, unseen, samples=50, seed=0)(model)
    klass = lw.GapMonitor(forget, unseen, samples=50, seed=0, class_level=True)(model)
    assert sample["forget_acc"] == klass["forget_acc"] == 0.0
    assert sample["unseen_acc"] > 0.3  # the other classes are recognised
    assert sample["acc_gap"] == pytest.approx(sample["unseen_acc"])  # never closes in class forgetting
    assert klass["reference_acc"] == 0.0 and klass["acc_gap"] == 0.0  # closed: the class is gone


@pytest.mark.parametrize("rule", ["mia", "loss_gap"])
def test_other_stop_rules_run(rule):
    before, after, rows = tiny_run(stop_rule=rule, recover=None)
    assert changed(before, after)
    assert all(np.isfinite(r["value"]) for r in rows if r["name"] == "stop_statistic")


# ---------------------------------------------------------------------------------------------------------
# behaviour on Fashion-MNIST (shared with test_versatile.py)

FORGET_CLASS = 7  # Sneaker, for the class scenario in test_versatile.py


@functools.lru_cache(maxsize=1)
def fmnist_problem() -> dict:
    """The trained original and its splits; built once per process (about 20 s on one CPU thread)."""
    from unlearnlib.data import load_dataset

    roots = {"UNLEARNLIB_SYSTEM_DATA": str(FMNIST_DIR.parent)}
    old = {k: os.environ.get(k) for k in ("UNLEARNLIB_SYSTEM_DATA", "UNLEARNLIB_CACHE", "UNLEARNLIB_DATA")}
    with tempfile.TemporaryDirectory() as tmp:
        roots.update(UNLEARNLIB_CACHE=str(Path(tmp) / "cache"), UNLEARNLIB_DATA=str(Path(tmp) / "data"))
        try:
            os.environ.update(roots)
            data = load_dataset("fashion_mnist", download=False)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    base = stratified_subset(data.train_y, 4000, seed=0)
    unseen = stratified_subset(data.train_y, 1000, seed=1, among=base)
    train = np.setdiff1d(base, unseen)
    test_pool = stratified_subset(data.test_y, 2000, seed=0)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=10, in_channels=1, width=8)
    cfg = TrainConfig(epochs=14, optimizer="adam", lr=2e-3, weight_decay=0.0, batch_size=64, scheduler="cosine",
                      augment=False)
    fit(model, Loader(data.train_x, data.train_y, train, data.spec, batch_size=64, shuffle=True, seed=0), cfg,
        progress=False)
    model.eval()
    rng = np.random.default_rng(0)
    forget = np.sort(rng.choice(train, 300, replace=False))
    y = data.train_y.numpy()
    return {"data": data, "model": model, "train": train, "unseen": unseen, "test": test_pool,
            "random": (forget, np.setdiff1d(train, forget)),
            "class": (train[y[train] == FORGET_CLASS], train[y[train] != FORGET_CLASS])}


def require_fmnist() -> dict:
    if not all((FMNIST_DIR / f).exists() for f in FMNIST_FILES):
        pytest.skip(f"real Fashion-MNIST not installed at {FMNIST_DIR} (apt-get install dataset-fashion-mnist)")
    return fmnist_problem()


def accuracy(model, data, idx, test: bool = False) -> float:
    x, y = (data.test_x, data.test_y) if test else (data.train_x, data.train_y)
    logits, labels = predict_logits(model, Loader(x, y, np.asarray(idx), data.spec, batch_size=1000))
    return 100.0 * float((logits.argmax(1) == labels).float().mean()) if len(labels) else float("nan")


def accuracies(model, problem, scenario: str) -> dict[str, float]:
    forget, retain = problem[scenario]
    d = problem["data"]
    return {"forget": accuracy(model, d, forget), "retain": accuracy(model, d, retain),
            "unseen": accuracy(model, d, problem["unseen"])}


def unlearn_fmnist(problem, method: str, scenario: str, **options):
    """(unlearned model, trace rows); ``method='identity'`` returns an untouched copy."""
    d = problem["data"]
    forget, retain = problem[scenario]
    model = copy.deepcopy(problem["model"])
    if method == "identity":
        return model, []
    spec = METHODS.get(method)
    cfg = dataclasses.replace(spec.Config(), **options)
    mk = functools.partial(Loader, d.train_x, d.train_y, spec=d.spec, batch_size=64)
    torch.manual_seed(0)
    model.train()
    with collecting() as rows:
        out = spec(model, retain=mk(indices=retain, seed=0), forget=mk(indices=forget, seed=1),
                   unseen=mk(indices=problem["unseen"], seed=2), cfg=cfg, device="cpu")
    return out.eval(), rows


# thresholds for random forgetting (see the measured values in the module docstring)
ORIGINAL_GAP_MIN = 8.0  # the original memorises: forget accuracy >= unseen + 8 (measured 96.7 vs 85.2)
FORGET_DROP_MIN = 5.0  # forget accuracy falls by at least 5 points (measured 13.7 lightweight, 12.0 versatile;
#                        retrain is 15.4 lower)
BELOW_UNSEEN_MAX = 8.0  # ... but not more than 8 points below unseen accuracy (measured 0.4 and 1.0 above)
RETAIN_DROP_MAX = 8.0  # retain accuracy keeps within 8 points (measured 3.7 lower, 1.2 higher)


def check_random_forgetting(before: dict, after: dict) -> None:
    """Forget accuracy moves from the memorised level toward the unseen level, not below it."""
    assert after["forget"] <= before["forget"] - FORGET_DROP_MIN, \
        f"forget accuracy {after['forget']:.1f} % (original {before['forget']:.1f} %)"
    assert after["forget"] >= after["unseen"] - BELOW_UNSEEN_MAX, \
        f"forget accuracy {after['forget']:.1f} % far below unseen {after['unseen']:.1f} %"
    assert after["retain"] >= before["retain"] - RETAIN_DROP_MAX, \
        f"retain accuracy {after['retain']:.1f} % (original {before['retain']:.1f} %)"


@pytest.fixture(scope="module")
def problem():
    return require_fmnist()


@pytest.fixture(scope="module")
def original_random(problem):
    acc = accuracies(problem["model"], problem, "random")
    assert acc["forget"] >= acc["unseen"] + ORIGINAL_GAP_MIN, acc  # there is something to forget
    return acc


def test_lightweight_random_forgetting_reaches_the_unseen_level(problem, original_random):
    model, rows = unlearn_fmnist(problem, "lightweight", "random", augment=False, stat_samples=500)
    after = accuracies(model, problem, "random")
    stat = [r for r in rows if r["name"] == "stop_statistic"]
    print(f"lightweight H1: original {original_random}, after {after}, checks {len(stat)}, "
          f"last step {stat[-1]['step']}, statistic {stat[0]['value']:.3f} -> {stat[-1]['value']:.3f}")
    check_random_forgetting(original_random, after)
    assert stat[0]["value"] > lw.Config().acc_gap_tol  # after the perturbation the gap is still open
    assert stat[-1]["value"] < stat[0]["value"]


def test_identity_fails_the_random_forgetting_checks(problem, original_random):
    model, _ = unlearn_fmnist(problem, "identity", "random")
    with pytest.raises(AssertionError, match="forget accuracy"):
        check_random_forgetting(original_random, accuracies(model, problem, "random"))


def test_forgetting_far_below_unseen_fails_the_checks(original_random):
    # "more forgotten than retrain" is caught too (forget 40 %, unseen 85 %)
    with pytest.raises(AssertionError, match="far below unseen"):
        check_random_forgetting(original_random, {**original_random, "forget": 40.0})


def test_lightweight_class_forgetting_stops_once_the_class_is_gone(problem):
    before = accuracies(problem["model"], problem, "class")
    # recover 0.9: this original has memorised its retain set (97 %), and at the constant lr 0.01 the retain
    # accuracy of the monitor's sample swings between 0.86 and 0.95 from check to check, so the default 0.97
    # guard (not the class-level gap, which is 0 from step 86 on) holds the run to its maximum (measured)
    model, rows = unlearn_fmnist(problem, "lightweight", "class", augment=False, stat_samples=500, recover=0.9)
    after = accuracies(model, problem, "class")
    steps = [r["step"] for r in rows if r["name"] == "stop_statistic"]
    retain_n = len(problem["class"][1])
    maximum = lw.Config().epochs * -(-retain_n // 64)
    print(f"lightweight class: before {before}, after {after}, stopped at step {steps[-1]} of at most {maximum}")
    assert before["forget"] > 80.0
    assert after["forget"] < 2.0, after
    assert after["retain"] >= before["retain"] - RETAIN_DROP_MAX, after
    assert steps[-1] < maximum // 2  # the class-level rule ends it long before the maximum
    assert {r["value"] for r in rows if r["name"] == "reference_acc"} == {0.0}


@pytest.mark.parametrize("method", ["lightweight", "versatile"])
def test_skipping_the_attack_the_rule_does_not_read_leaves_the_model_unchanged(method, monkeypatch):
    """Issue 22 part 6: with the default rule (acc_gap for lightweight, the discriminator for versatile) the stop
    checks fit no scikit-learn attack; the model equals the one of a run that fits it at every check (before)."""
    import unlearnlib.methods.lightweight as lw
    import unlearnlib.methods.versatile as vs

    module = lw if method == "lightweight" else vs
    fits = []
    real = module.loss_lr_cv_mia
    monkeypatch.setattr(module, "loss_lr_cv_mia", lambda *a, **k: fits.append(1) or real(*a, **k))
    _, skipped, rows = tiny_run(method) if method == "lightweight" else _versatile_run()
    assert fits == [] and "mia_acc" not in {r["name"] for r in rows}
    monkeypatch.setattr(module, "TRACE_ATTACK", True)
    _, fitted, rows = tiny_run(method) if method == "lightweight" else _versatile_run()
    assert len(fits) >= 2 and "mia_acc" in {r["name"] for r in rows}
    a, b = skipped.state_dict(), fitted.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _versatile_run():
    from tests.test_versatile import tiny_run as versatile_run

    return versatile_run()
