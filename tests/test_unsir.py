"""UNSIR (Tarun et al., TNNLS 2023): the impair set's noise part (faithful default and upstream preset), the
zero-glance contract, the model mode during noise learning, impair-only = the impair phase of the full run,
and on real Fashion-MNIST a class is forgotten while the rest is kept (a no-op fails the same check).

Self-contained: builds its own synthetic problem and loads Fashion-MNIST itself (no conftest fixtures).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unlearnlib.methods.unsir as unsir
from unlearnlib.data import DatasetSpec, Loader
from unlearnlib.methods import METHODS
from unlearnlib.methods.unsir import UPSTREAM, Config, build_impair_set, learn_noise, upstream_config
from unlearnlib.models import build_model
from unlearnlib.trace import collecting
from unlearnlib.train import TrainConfig, fit, predict_logits

torch.set_num_threads(1)  # tiny tensors; other jobs share the 2 cores

# a small run of the method on the synthetic problem: few noise images, few retain images
SMALL = dict(noise_batch=8, noise_steps=5, noise_copies=4, retain_per_class=6)


# ----------------------------------------------------------------------------------------------
# a synthetic problem: 3x8x8 uint8 images, 4 classes, the class shifts the brightness


def _spec(num_classes: int = 4, channels: int = 3) -> DatasetSpec:
    return DatasetSpec(name="synthetic", num_classes=num_classes, channels=channels, size=8,
                       mean=(0.5,) * channels, std=(0.25,) * channels,
                       classes=tuple(str(i) for i in range(num_classes)), locate=lambda _p: None,
                       build=lambda _p, _d: (None, None), augment="crop_flip")


class Problem:
    def __init__(self, forget=(0,), n: int = 80, num_classes: int = 4, channels: int = 3):
        g = torch.Generator().manual_seed(0)
        self.spec = _spec(num_classes, channels)
        self.labels = (torch.arange(n) % num_classes).long()
        noise = torch.randint(0, 100, (n, channels, 8, 8), generator=g)
        self.images = (noise + 50 * self.labels.view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
        is_f = np.isin(self.labels.numpy(), forget)
        self.forget_idx, self.retain_idx = np.flatnonzero(is_f), np.flatnonzero(~is_f)

    def loaders(self):
        retain = Loader(self.images, self.labels, self.retain_idx, self.spec, batch_size=16, seed=0, name="retain")
        forget = Loader(self.images, self.labels, self.forget_idx, self.spec, batch_size=16, seed=1, name="forget")
        return retain, forget


def tiny_model(num_classes: int = 4, channels: int = 3, arch: str = "resnet18"):
    torch.manual_seed(0)
    return build_model(arch, num_classes=num_classes, in_channels=channels, width=2)


def run(name: str, problem: Problem, model=None, seed: int = 0, **overrides):
    retain, forget = problem.loaders()
    cfg = dataclasses.replace(Config(), **{**SMALL, **overrides})
    m = copy.deepcopy(model if model is not None else tiny_model(problem.spec.num_classes, problem.spec.channels))
    m.train()
    torch.manual_seed(seed)
    with collecting() as rows:
        out = METHODS.get(name)(m, retain=retain, forget=forget, cfg=cfg, device="cpu")
    return out, retain, forget, rows


class FitSpy:
    """Records every batch each ``fit`` call trains on (then trains on exactly those batches)."""

    def __init__(self, monkeypatch):
        self.calls: list[dict] = []
        self.real = unsir.fit
        monkeypatch.setattr(unsir, "fit", self)

    def __call__(self, model, data, cfg, **kw):
        epochs = [list(data()) for _ in range(cfg.epochs)]
        self.calls.append({"cfg": cfg, "batches": [b for e in epochs for b in e], "desc": kw.get("desc")})
        it = iter(epochs)
        out = self.real(model, lambda: next(it), cfg, **kw)
        self.calls[-1]["state"] = copy.deepcopy(model.state_dict())
        return out

    def labels(self, i: int) -> torch.Tensor:
        return torch.cat([y for _, y in self.calls[i]["batches"]])


# ----------------------------------------------------------------------------------------------
# registration and configuration


def test_registered_zero_glance():
    for name in ("unsir", "unsir_impair"):
        spec = METHODS.get(name)
        assert spec.Config is Config and spec.reads_forget is False and spec.reads_retain is True and spec.summary


def test_defaults_are_the_notebook_values_and_the_intent():
    c = Config()
    assert (c.noise_batch, c.noise_steps, c.noise_lr, c.noise_lambda) == (256, 40, 0.1, 0.1)
    assert (c.retain_per_class, c.retain_selection, c.noise_copies) == (1000, "first", 20)
    assert (c.impair_lr, c.impair_epochs, c.impair_batch_size) == (0.02, 1, 256)
    assert (c.repair_lr, c.repair_epochs, c.repair_batch_size) == (0.01, 1, 256)
    assert (c.noise_label, c.noise_count, c.noise_model_mode, c.augment) == ("own", "all", "eval", False)
    u = upstream_config()
    assert (u.noise_label, u.noise_count, u.noise_model_mode) == ("upstream", "upstream", "train")
    assert set(UPSTREAM) == {"noise_label", "noise_count", "noise_model_mode"}
    assert upstream_config(noise_batch=7).noise_batch == 7


@pytest.mark.parametrize("field, value", [("noise_label", "zero"), ("noise_count", "3"), ("noise_model_mode", "x"),
                                          ("retain_selection", "last"), ("noise_copies", 0)])
def test_invalid_options_are_errors(field, value):
    with pytest.raises(ValueError, match=field):
        run("unsir", Problem(), **{field: value})


def test_no_forget_class_is_an_error():
    # UNSIR forgets classes; when every class is in the retain set there is nothing it can target
    p = Problem(forget=())
    with pytest.raises(ValueError, match="no forget class"):
        run("unsir", p)


# ----------------------------------------------------------------------------------------------
# (a) the impair set


def _noises(batch: int = 256, channels: int = 3, classes=(2, 5)) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {c: torch.randn(batch, channels, 4, 4, generator=g) for c in classes}


def test_faithful_impair_set_has_every_noise_image_with_its_own_label():
    noises = _noises()
    x, y = build_impair_set(noises, Config())
    per_class = 256 * 20  # noise_batch x noise_copies
    assert x.shape == (2 * per_class, 3, 4, 4) and y.dtype == torch.long
    for i, c in enumerate(sorted(noises)):
        block = slice(i * per_class, (i + 1) * per_class)
        assert torch.all(y[block] == c), "every noise sample carries its own forget class"
        # 20 copies of all 256 images, copy after copy
        assert torch.equal(x[block], noises[c].repeat(20, 1, 1, 1))
    assert int((y == 2).sum()) == int((y == 5).sum()) == per_class


def test_upstream_impair_set_has_three_images_per_copy_all_labelled_zero():
    noises = _noises()
    x, y = build_impair_set(noises, upstream_config())
    assert x.shape[0] == 2 * 3 * 20 and torch.all(y == 0)  # 60 per class, label 0 (cell 26)
    for i, c in enumerate(sorted(noises)):
        assert torch.equal(x[i * 60:(i + 1) * 60], noises[c][:3].repeat(20, 1, 1, 1))
    # the two quirks are independent switches
    _, y_own = build_impair_set(noises, upstream_config(noise_label="own"))
    assert sorted(torch.unique(y_own).tolist()) == [2, 5] and len(y_own) == 120
    x_all, y0 = build_impair_set(noises, upstream_config(noise_count="all"))
    assert len(x_all) == 2 * 256 * 20 and torch.all(y0 == 0)


def test_upstream_count_is_the_channel_count():
    # upstream iterates over batch[0].size(0), the channels of one image: 3 on CIFAR, 1 on Fashion-MNIST
    x, _ = build_impair_set(_noises(batch=16, channels=1, classes=(4,)), upstream_config())
    assert len(x) == 1 * 20


def test_the_impair_phase_trains_on_noise_and_retain_subset(monkeypatch):
    # end to end: two forget classes in ONE impair pass; impair = all noise copies + k per retain class
    spy = FitSpy(monkeypatch)
    p = Problem(forget=(0, 2))
    run("unsir", p, impair_batch_size=16, repair_batch_size=5)
    assert [c["desc"] for c in spy.calls] == ["unsir impair", "unsir repair"]
    y_imp, y_rep = spy.labels(0), spy.labels(1)
    n_noise = SMALL["noise_batch"] * SMALL["noise_copies"]
    k = SMALL["retain_per_class"]
    for c in (0, 2):
        assert int((y_imp == c).sum()) == n_noise
        assert int((y_rep == c).sum()) == 0
    for c in (1, 3):
        assert int((y_imp == c).sum()) == k and int((y_rep == c).sum()) == k
    imp = spy.calls[0]["cfg"]
    assert (imp.optimizer, imp.lr, imp.weight_decay, imp.scheduler, imp.epochs) == ("adam", 0.02, 0.0, "none", 1)
    rep = spy.calls[1]["cfg"]
    assert (rep.optimizer, rep.lr, rep.weight_decay, rep.scheduler, rep.epochs) == ("adam", 0.01, 0.0, "none", 1)
    n_imp = 2 * n_noise + 2 * k  # 76 samples: batches of 16, the last one smaller
    assert [len(y) for _, y in spy.calls[0]["batches"]] == [16] * (n_imp // 16) + [n_imp % 16]
    assert [len(y) for _, y in spy.calls[1]["batches"]] == [5] * (2 * k // 5) + [2 * k % 5]
    # noise and retain samples are shuffled together (not all noise first)
    is_noise = torch.isin(y_imp, torch.tensor([0, 2]))
    assert not torch.equal(is_noise, torch.sort(is_noise, descending=True).values)


def test_upstream_preset_end_to_end(monkeypatch):
    spy = FitSpy(monkeypatch)
    run("unsir", Problem(forget=(1, 3)), **UPSTREAM)
    y = spy.labels(0)
    # 3 (channels) images x noise_copies per forget class, all labelled 0, plus k of each retain class (0 and 2)
    assert int((y == 0).sum()) == 2 * 3 * SMALL["noise_copies"] + SMALL["retain_per_class"]
    assert int((y == 1).sum()) == int((y == 3).sum()) == 0


def test_retain_subset_first_k_in_loader_order():
    labels = torch.tensor([1, 3, 1, 1, 3, 3, 1, 3])
    assert unsir.retain_subset(labels, [1, 3], 2, "first").tolist() == [0, 2, 1, 4]
    torch.manual_seed(0)
    r = unsir.retain_subset(labels, [1, 3], 2, "random")
    assert sorted(labels[r].tolist()) == [1, 1, 3, 3]


# ----------------------------------------------------------------------------------------------
# (b) zero-glance


@pytest.mark.parametrize("name", ["unsir", "unsir_impair"])
def test_forget_loader_is_never_read(name):
    _, retain, forget, _ = run(name, Problem())
    assert forget.reads == 0
    assert retain.reads > 0  # the counter is not blind


@pytest.mark.parametrize("name", ["unsir", "unsir_impair"])
def test_forget_loader_is_not_even_touched(name):
    class Untouchable:
        def __getattr__(self, attr):
            raise AssertionError(f"UNSIR touched forget.{attr}")

        def __iter__(self):
            raise AssertionError("UNSIR iterated over forget")

        def __len__(self):
            raise AssertionError("UNSIR asked len(forget)")

    retain, _ = Problem().loaders()
    METHODS.get(name)(tiny_model(), retain=retain, forget=Untouchable(),
                      cfg=dataclasses.replace(Config(), **SMALL), device="cpu")


def test_forget_classes_come_from_the_retain_labels():
    assert unsir.forget_classes_from_retain(torch.tensor([1, 3, 3, 1]), 5) == [0, 2, 4]
    assert unsir.forget_classes_from_retain(torch.tensor([0, 1, 2]), 3) == []


# ----------------------------------------------------------------------------------------------
# (c) the model during noise learning


def _bn_buffers(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_noise_learning_in_eval_mode_leaves_bn_statistics_alone(arch):
    model = tiny_model(arch=arch)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    bn = _bn_buffers(model)
    assert bn
    torch.manual_seed(0)
    learn_noise(model, 0, (8, 3, 8, 8), dataclasses.replace(Config(), noise_steps=5), "cpu")
    after = _bn_buffers(model)
    assert all(torch.equal(after[k], bn[k]) for k in bn)
    for k, p in model.named_parameters():
        assert torch.equal(p, weights[k]), f"{k}: the model is frozen while the noise is learned"
        assert p.grad is None, f"{k}: no gradient accumulates on the weights"


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn"])
def test_noise_learning_in_train_mode_contaminates_bn_statistics(arch):
    model = tiny_model(arch=arch)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    bn = _bn_buffers(model)
    torch.manual_seed(0)
    learn_noise(model, 0, (8, 3, 8, 8), dataclasses.replace(Config(), noise_steps=5, noise_model_mode="train"), "cpu")
    after = _bn_buffers(model)
    moved = [k for k in bn if "running_mean" in k and not torch.equal(after[k], bn[k])]
    assert moved, "upstream's train mode updates the running statistics with noise batches"
    assert all(int(after[k]) == int(bn[k]) + 5 for k in bn if "num_batches" in k)
    for k, p in model.named_parameters():  # the weights themselves stay frozen in both modes
        assert torch.equal(p, weights[k]), k


def test_noise_maximises_the_forget_class_loss():
    # a linear classifier (an untrained BN network's outputs barely depend on its input)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    torch.manual_seed(0)
    start = torch.randn(32, 3, 8, 8)
    torch.manual_seed(0)  # learn_noise draws the same start
    with collecting() as rows:
        noise = learn_noise(model, 1, (32, 3, 8, 8), dataclasses.replace(Config(), noise_steps=40), "cpu")
    losses = [r["value"] for r in rows if r["name"] == "noise_loss_class1"]
    assert len(losses) == 40 and losses[-1] < losses[0]
    y = torch.full((32,), 1)
    with torch.no_grad():
        assert F.cross_entropy(model(noise), y) > F.cross_entropy(model(start), y)
        # lambda keeps the noise bounded: its squared norm per image shrinks from that of the N(0, 1) start
        assert noise.pow(2).flatten(1).sum(1).mean() < start.pow(2).flatten(1).sum(1).mean()


# ----------------------------------------------------------------------------------------------
# impair only = the impair phase of the full run, with the same seed


def test_impair_only_equals_the_impair_phase_of_the_full_run(monkeypatch):
    p = Problem(forget=(0, 2))
    impair_only, *_ = run("unsir_impair", p, seed=3)
    spy = FitSpy(monkeypatch)
    full, *_ = run("unsir", p, seed=3)
    after_impair = spy.calls[0]["state"]
    for k, v in impair_only.state_dict().items():
        assert torch.equal(v, after_impair[k]), k
    assert any(not torch.equal(v, full.state_dict()[k]) for k, v in after_impair.items()), "repair changed nothing"


def test_deterministic_under_seed_and_traced():
    p = Problem()
    a, _, _, rows = run("unsir", p, seed=1)
    b, *_ = run("unsir", p, seed=1)
    c, *_ = run("unsir", p, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    names = {r["name"] for r in rows}
    assert {"noise_loss_class0", "impair_loss", "repair_loss"} <= names
    assert not a.training


# ----------------------------------------------------------------------------------------------
# (d) behaviour on real Fashion-MNIST (skipped when the Debian copy is missing)
#
# Setting: VGG-11-BN width 8, 5000 class-stratified training images, 5 epochs Adam lr 1e-3, no augmentation,
# seed 0; forget class 7 (Sneaker); test on 2000 stratified test images. UNSIR with k = 300 per retain class
# (the retain pool has 500 per class), noise_batch 64 (x 20 copies), and impair/repair learning rates 2e-3 /
# 1e-3: upstream's ratio to the original's training rate (the notebook trains with Adam 0.01 and impairs /
# repairs at 0.02 / 0.01; ours trains at 1e-3). With the notebook's absolute rates 0.02 / 0.01 this narrow
# network collapses (retain test acc 0.11 / 0.22 / 0.11 for seeds 0 / 1 / 2, forget 0.0).
#
# Measured (2 shared CPU cores, 1 thread; forget / retain test accuracy):
#   training seed         0               1               2
#   original        0.955 / 0.776   0.905 / 0.788   0.950 / 0.790
#   after impair    0.135 / 0.635   0.070 / 0.766   0.045 / 0.710
#   after repair    0.010 / 0.771   0.000 / 0.813   0.000 / 0.773
#   upstream preset 0.000 / 0.822   0.000 / 0.837   0.000 / 0.832   (after repair)
#   identity        0.955 / 0.776   (fails the forgetting check, as it must)
# Times (seed 0, loaded machine): training 12-19 s; noise learning 64 images x 40 steps ~0.5 s; UNSIR
# ~3.5-4.7 s in all; impair only ~2.2-3.5 s.
# Thresholds with margin: original forget >= 0.7; after repair forget <= 0.15 and >= 0.5 below the original;
# retain >= original - 0.08 (measured drop <= 0.017); repair must raise retain accuracy above "after impair".

SYSTEM = Path("/usr/share/datasets")
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")
FORGET_CLASS = 7
FMNIST_UNSIR = dict(retain_per_class=300, noise_batch=64, impair_lr=2e-3, repair_lr=1e-3)


# the real Fashion-MNIST: the session fixture `fmnist` of conftest.py (skips when not installed)


@pytest.fixture(scope="module")
def fmnist_setup(fmnist):
    from unlearnlib.data import stratified_subset

    train_idx = stratified_subset(fmnist.train_y, 5000, seed=0)
    test_idx = stratified_subset(fmnist.test_y, 2000, seed=0)
    torch.manual_seed(0)
    model = build_model("vgg11_bn", num_classes=10, in_channels=1, width=8)
    t0 = time.perf_counter()
    fit(model, Loader(fmnist.train_x, fmnist.train_y, train_idx, fmnist.spec, batch_size=64, shuffle=True, seed=0),
        TrainConfig(epochs=5, optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, scheduler="none",
                    augment=False), progress=False)
    model.eval()
    orig = _class_accuracies(model, fmnist, test_idx)
    return model, train_idx, test_idx, orig, time.perf_counter() - t0


def _class_accuracies(model, data, test_idx) -> tuple[float, float]:
    logits, y = predict_logits(model, Loader(data.test_x, data.test_y, test_idx, data.spec, batch_size=500))
    right = logits.argmax(1) == y
    f = y == FORGET_CLASS
    return float(right[f].float().mean()), float(right[~f].float().mean())


def _unlearn(fmnist, fmnist_setup, method: str):
    model, train_idx, test_idx, _, _ = fmnist_setup
    ytr = fmnist.train_y[train_idx].numpy()
    retain = Loader(fmnist.train_x, fmnist.train_y, train_idx[ytr != FORGET_CLASS], fmnist.spec, batch_size=64,
                    seed=0, name="retain")
    forget = Loader(fmnist.train_x, fmnist.train_y, train_idx[ytr == FORGET_CLASS], fmnist.spec, batch_size=64,
                    seed=1, name="forget")
    m = copy.deepcopy(model)
    m.train()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with collecting() as rows:
        if method != "identity":  # control: a method that does nothing
            m = METHODS.get(method)(m, retain=retain, forget=forget,
                                    cfg=dataclasses.replace(Config(), **FMNIST_UNSIR), device="cpu")
    seconds = time.perf_counter() - t0
    m.eval()
    assert forget.reads == 0
    return _class_accuracies(m, fmnist, test_idx), seconds, rows


def check_forgotten(orig: tuple[float, float], after: tuple[float, float]) -> None:
    (f0, r0), (f1, r1) = orig, after
    assert f1 <= 0.15 and f1 <= f0 - 0.5, f"forget accuracy {f1:.3f} (original {f0:.3f})"
    assert r1 >= r0 - 0.08, f"retain accuracy {r1:.3f} (original {r0:.3f})"


def test_fashion_mnist_original_knows_the_class(fmnist_setup):
    f0, r0 = fmnist_setup[3]
    assert f0 >= 0.7 and r0 >= 0.6, (f0, r0)


def test_fashion_mnist_unsir_forgets_one_class_and_keeps_the_rest(fmnist, fmnist_setup):
    orig, train_s = fmnist_setup[3], fmnist_setup[4]
    after, seconds, rows = _unlearn(fmnist, fmnist_setup, "unsir")
    impair, impair_s, _ = _unlearn(fmnist, fmnist_setup, "unsir_impair")
    print(f"\n[unsir] original forget/retain test acc {orig[0]:.3f}/{orig[1]:.3f}; after impair "
          f"{impair[0]:.3f}/{impair[1]:.3f} ({impair_s:.2f}s); after repair {after[0]:.3f}/{after[1]:.3f} "
          f"({seconds:.2f}s); training {train_s:.1f}s")
    check_forgotten(orig, after)
    assert impair[0] <= orig[0] - 0.5, "the impair step alone already damages the forget class"
    assert after[1] > impair[1], "repair restores retain accuracy"
    noise = [r["value"] for r in rows if r["name"] == f"noise_loss_class{FORGET_CLASS}"]
    assert len(noise) == 40 and noise[-1] < noise[0]


def test_fashion_mnist_identity_fails_the_check(fmnist, fmnist_setup):
    orig = fmnist_setup[3]
    after, _, _ = _unlearn(fmnist, fmnist_setup, "identity")
    assert after == orig
    with pytest.raises(AssertionError, match="forget accuracy"):
        check_forgotten(orig, after)
